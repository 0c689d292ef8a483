#!/usr/bin/env bash
# mpi-up.sh - install Open MPI (Debian 12: 4.1.4) and mpi4py into a Python, then
# check `mpirun -n 2` with mpi4py (jobbridge test suite). Idempotent, quiet on success.
#   PYTHON=/path/to/python  interpreter (venv) to install mpi4py into (default: python3)
# mpi4py >= 4 ships manylinux wheels on PyPI (no compiler, no libopenmpi-dev);
# a source build (--no-binary) takes ~160 s on 2 cores and needs libopenmpi-dev.
# For root in CI, export these so plain `mpirun -n N` works:
#   OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# (env.sh beside this script exports them).
set -euo pipefail
PY=${PYTHON:-python3}
LOG=/var/tmp/jobbridge-mpi.log
die() { echo "mpi-up: ERROR: $*" >&2; [ -s "$LOG" ] && tail -n 15 "$LOG" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (apt-get)"

if ! command -v mpirun >/dev/null || ! dpkg-query -W -f='${Status}' openmpi-bin 2>/dev/null | grep -q 'install ok installed'; then
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends openmpi-bin >"$LOG" 2>&1; then
    apt-get update -q >>"$LOG" 2>&1 || true
    apt-get install -y -q --no-install-recommends openmpi-bin >>"$LOG" 2>&1 || die "apt-get install openmpi-bin failed"
  fi
fi
if ! "$PY" -c 'import mpi4py' >/dev/null 2>&1; then
  "$PY" -m pip install -q mpi4py >"$LOG" 2>&1 || die "pip install mpi4py failed"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$(cd /tmp && timeout 60 mpirun -n 2 "$PY" -c \
  'from mpi4py import MPI; c=MPI.COMM_WORLD; s=c.allreduce(1); c.rank or print(c.size, s)' 2>&1) \
  || die "mpirun failed: $out"
[ "$out" = "2 2" ] || die "unexpected mpirun output: $out"
exit 0
