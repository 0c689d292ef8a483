#!/usr/bin/env bash
# scripts/test.sh - the whole test suite on a fresh Debian machine, as root:
# installs jobbridge and its test tools into a venv, a C compiler (the native job
# wrapper's), installs and starts the
# real Slurm, Grid Engine (+DRMAA), Slurm's Torque wrappers and Open MPI
# (scripts/clusters/up-all.sh), installs Debian's chromium for the dashboard's
# browser tests (scripts/browser-up.sh), then runs ruff, mypy and pytest
# (in parallel workers, one per system at most).
# A system that cannot start is named (up-all.sh, browser-up.sh). Under CI
# (CI=true) that ends the run, exit status 1: CI cannot pass without one.
# Elsewhere the tests run: those of a missing system are skipped saying why, and
# the line above pytest's count names the systems used and missing (tests/systems.py).
# Extra arguments go to pytest (e.g. `scripts/test.sh -k local`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh '.[test,drmaa,mpi,soma,ui,inotify]'

# the C compiler that builds the native job wrapper (jobbridge's jobwrap.c)
if ! command -v cc >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get install -y -q --no-install-recommends gcc libc6-dev >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1; apt-get install -y -q --no-install-recommends gcc libc6-dev >/dev/null; }
fi

started=yes
PYTHON="$VENV/bin/python" bash scripts/clusters/up-all.sh || started=no
bash scripts/browser-up.sh || started=no
if [ "$started" = no ]; then
  case "$(echo "${CI:-}" | tr '[:upper:]' '[:lower:]')" in
    "" | 0 | false | no)
      echo "test.sh: some systems did not start (see above): their tests are skipped" >&2 ;;
    *) echo "test.sh: ERROR: under CI every system must start (see above)" >&2; exit 1 ;;
  esac
fi
# shellcheck source=scripts/clusters/env.sh
source scripts/clusters/env.sh

echo "== ruff"; "$VENV/bin/ruff" check src tests bench examples
echo "== mypy"; "$VENV/bin/mypy"
echo "== pytest"
export PATH="$VENV/bin:$PATH"
# Tests mostly wait on jobs: 4 workers; one system's tests stay in one worker
# (tests/systems.py's groups). JOBBRIDGE_TEST_WORKERS=0 runs them in this process.
exec "$VENV/bin/pytest" -n "${JOBBRIDGE_TEST_WORKERS:-4}" --dist loadgroup "$@"
