#!/usr/bin/env bash
# sge-down.sh - stop the one-host Grid Engine cell started by sge-up.sh (jobbridge).
# Deletes all jobs, stops sge_execd and sge_qmaster. Idempotent and quiet.
#   --purge   also delete the spool/state (job ids restart, config re-created)
#   --remove  also apt-get remove the gridengine packages (only needed before
#             a dpkg install of slurm-wlm-torque, which conflicts with
#             gridengine-client; torque-wrappers-up.sh does not need that)
set -uo pipefail
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
STATE=${SGE_CI_STATE:-/var/tmp/jobbridge-sge}
[ "$(id -u)" = 0 ] || { echo "sge-down: ERROR: must run as root" >&2; exit 1; }

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QPID=$STATE/qmaster/qmaster.pid
if alive "$QPID" && command -v qdel >/dev/null; then
  timeout 10 qdel -f -u '*' >/dev/null 2>&1 || true
fi
# execd spool subdirectory = host name as the execd resolved it: stop them all
for f in "$STATE"/execd/*/execd.pid; do [ -e "$f" ] && stop "$f" 20; done
stop "$QPID" 30

for a in "$@"; do
  case "$a" in
    --purge) rm -rf "$STATE"; rm -f "$SGE_ROOT/$SGE_CELL/common/accounting" ;;
    --remove)
      DEBIAN_FRONTEND=noninteractive apt-get remove -y -q gridengine-master gridengine-exec \
        gridengine-client gridengine-common gridengine-drmaa1.0 python3-drmaa >/dev/null 2>&1 \
        || { echo "sge-down: ERROR: apt-get remove gridengine-* failed" >&2; exit 1; } ;;
  esac
done
exit 0
