#!/usr/bin/env bash
# up-all.sh - install and start everything the jobbridge test suite needs:
# Slurm (+ slurmdbd/MariaDB), Grid Engine (+ DRMAA), Slurm's Torque wrappers in
# a private prefix, Open MPI + mpi4py, OpenPBS (built once from $OPENPBS_SRC,
# see openpbs-up.sh), an SSH "cluster" account on 127.0.0.1 (a login node's and a
# jump host's sshd) for the remote resources. Idempotent (a warm re-run takes a
# few seconds), quiet on success; the first failing step prints
# "NAME: ERROR: ..." and up-all.sh exits 1. Knobs: see each script.
# Order: Slurm before the Torque wrappers (they need a running slurmctld and
# slurmd for their smoke test); Grid Engine, MPI, OpenPBS and SSH are independent
# (the cluster account submits to this Slurm only when a test asks).
# Then: `source scripts/clusters/env.sh` for the client environment.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/slurm-up.sh"
"$here/sge-up.sh"
"$here/torque-wrappers-up.sh"
"$here/mpi-up.sh"
"$here/openpbs-up.sh"
"$here/sshd-up.sh"
