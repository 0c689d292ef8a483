#!/usr/bin/env bash
# slurm-down.sh - stop the one-node Slurm cluster started by slurm-up.sh (jobbridge).
# Cancels all jobs, then stops slurmd, slurmctld, slurmdbd, MariaDB and munged.
# Idempotent and quiet. `slurm-down.sh --purge` also deletes all state (job ids
# restart at 1, accounting DB is recreated on the next slurm-up.sh).
set -uo pipefail
STATE=${SLURM_CI_STATE:-/var/tmp/jobbridge-slurm}
[ "$(id -u)" = 0 ] || { echo "slurm-down: ERROR: must run as root" >&2; exit 1; }

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if alive "$STATE/run/slurmctld.pid" && command -v squeue >/dev/null; then
  jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u)
  if [ -n "$jobs" ]; then
    # shellcheck disable=SC2086
    timeout 10 scancel $jobs >/dev/null 2>&1 || true
    for _ in $(seq 50); do   # up to 10 s for running steps to finish
      [ -z "$(timeout 5 squeue -h -t R,CG -o %A 2>/dev/null)" ] && break; sleep 0.2
    done
  fi
fi
stop "$STATE/run/slurmd.pid"
stop "$STATE/run/slurmctld.pid"
stop "$STATE/run/slurmdbd.pid"
stop "$STATE/db/run/mysqld.pid"
stop /run/munge/munged.pid

if [ "${1:-}" = --purge ]; then
  rm -rf "$STATE"
fi
exit 0
