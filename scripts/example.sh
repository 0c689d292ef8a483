#!/usr/bin/env bash
# scripts/example.sh - on a fresh Debian machine: install jobbridge into a venv
# and run the example workflow on the embedded default (local scheduler, SQLite).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh '.'
"$VENV/bin/jobbridge" run examples/wordcount/pipeline.json
echo "--- examples/wordcount/result.txt"
cat examples/wordcount/result.txt
