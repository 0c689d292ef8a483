#!/usr/bin/env bash
# scripts/example.sh - on a fresh Debian machine: install jobbridge into a venv
# and run the example workflow on the embedded default (local scheduler, SQLite).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=$(realpath -m "${JOBBRIDGE_VENV:-.venv}")
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q python3-venv >/dev/null
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e . 2>&1 \
  | grep -v '^WARNING: Location' || true
"$VENV/bin/jobbridge" run examples/wordcount/pipeline.json
echo "--- examples/wordcount/result.txt"
cat examples/wordcount/result.txt
