#!/usr/bin/env bash
# scripts/test.sh - the whole test suite on a fresh Debian machine, as root:
# installs jobbridge and its test tools into a venv, installs and starts the
# real Slurm, Grid Engine (+DRMAA), Slurm's Torque wrappers and Open MPI
# (scripts/clusters/up-all.sh), then runs ruff, mypy and pytest.
# Extra arguments go to pytest (e.g. `scripts/test.sh -k local`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=$(realpath -m "${JOBBRIDGE_VENV:-.venv}")

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q python3-venv >/dev/null
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,drmaa,mpi]' 2>&1 \
  | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -c 'import jobbridge, pytest' || { echo "test.sh: ERROR: install failed" >&2; exit 1; }

PYTHON="$VENV/bin/python" bash scripts/clusters/up-all.sh
# shellcheck source=scripts/clusters/env.sh
source scripts/clusters/env.sh

echo "== ruff"; "$VENV/bin/ruff" check src tests bench examples
echo "== mypy"; "$VENV/bin/mypy"
echo "== pytest"
export PATH="$VENV/bin:$PATH"
exec "$VENV/bin/pytest" "$@"
