#!/usr/bin/env bash
# up-all.sh - install and start everything the jobbridge test suite needs:
# Slurm (+ slurmdbd/MariaDB), Grid Engine (+ DRMAA), Slurm's Torque wrappers in
# a private prefix, Open MPI + mpi4py, OpenPBS (built once from $OPENPBS_SRC,
# see openpbs-up.sh), an SSH "cluster" account on 127.0.0.1 (a login node's and a
# jump host's sshd) for the remote resources. Idempotent (a warm re-run takes a
# few seconds), quiet on success. A step that fails says so itself ("NAME: ERROR:
# ...") where it can; up-all.sh then names it in any case (a step may stop on an
# unforeseen error without a word), goes on with the steps that do not need it,
# and ends with "up-all: ERROR: not started: STEP..." and exit status 1, so that
# the systems that did start can still be used (their tests run; the others'
# are skipped, or fail under CI, naming their system). Knobs: see each script.
# Order: Slurm before the Torque wrappers (they need a running slurmctld and
# slurmd for their smoke test); Grid Engine, MPI, OpenPBS and SSH are independent
# (the cluster account submits to this Slurm only when a test asks).
# Then: `source scripts/clusters/env.sh` for the client environment.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
failed=()
# step NAME [NEEDED]: run NAME-up.sh, unless the step NEEDED failed.
step() {
  if [ -n "${2:-}" ] && [[ " ${failed[*]} " == *" $2 "* ]]; then
    echo "up-all: ERROR: $1-up.sh not run: it needs $2, which did not start" >&2
    failed+=("$1"); return
  fi
  "$here/$1-up.sh" && return
  echo "up-all: ERROR: $1-up.sh failed (exit status $?): $1 is not started" >&2
  failed+=("$1")
}
step slurm
step sge
step torque-wrappers slurm
step mpi
step openpbs
step sshd
if [ ${#failed[@]} -gt 0 ]; then
  echo "up-all: ERROR: not started: ${failed[*]}" >&2
  exit 1
fi
