#!/usr/bin/env bash
# openpbs-down.sh - stop the OpenPBS that openpbs-up.sh runs inside network
# namespace $OPENPBS_CI_NETNS (default jbpbs), then remove the namespace.
# Idempotent and quiet; on failure prints "openpbs-down: ERROR: ..." and exits 1.
#   1. `pbs_init.d stop` inside the namespace (qterm, datastore, mom, sched, comm);
#   2. whatever still lives in the namespace (jobs, the datastore, stray
#      clients) gets SIGTERM, then SIGKILL;
#   3. `ip netns del`, and /etc/netns/NAME goes.
# `openpbs-down.sh --purge` also deletes /var/spool/pbs (jobs, history, the
# datastore: job ids restart at 0) and /etc/pbs.conf; /opt/pbs stays built.
set -uo pipefail
SYS_PATH=/usr/bin:/bin:/usr/sbin:/sbin
export PATH=$SYS_PATH LC_ALL=C.UTF-8
NS=${OPENPBS_CI_NETNS:-jbpbs}
STATE=${OPENPBS_CI_STATE:-/var/tmp/jobbridge-openpbs}
EXEC=/opt/pbs
PBS_HOME=/var/spool/pbs
LOG=$STATE/log/down.log

die() { echo "openpbs-down: ERROR: $*" >&2; [ -s "$LOG" ] && tail -n 15 "$LOG" >&2; exit 1; }
case "${1:-}" in "" | --purge) ;; *) die "usage: $0 [--purge]" ;; esac
[ "$(id -u)" = 0 ] || die "must run as root"
mkdir -p "$STATE/log" /run/lock
exec 9>/run/lock/jobbridge-openpbs.lock
flock -w 900 9 || die "another openpbs-up/down is still running"
: >"$LOG"

ns_alive() { ip -n "$NS" link show lo >/dev/null 2>&1; }
live() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
ns_pids() { if ns_alive; then ip netns pids "$NS" 2>/dev/null | while read -r p; do live "$p" && echo "$p"; done; fi; }

if ns_alive && [ -x "$EXEC/libexec/pbs_init.d" ] && [ -f /etc/pbs.conf ]; then
  timeout 200 env -i PATH="$SYS_PATH" LANG=C.UTF-8 HOME=/root ip netns exec "$NS" \
    "$EXEC/libexec/pbs_init.d" stop </dev/null >>"$LOG" 2>&1 9>&- || echo "pbs_init.d stop: rc=$?" >>"$LOG"
fi
pids=$(ns_pids)
if [ -n "$pids" ]; then
  echo "SIGTERM $pids" >>"$LOG"
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null
  for _ in $(seq 60); do [ -z "$(ns_pids)" ] && break; sleep 0.25; done
  pids=$(ns_pids)
  # shellcheck disable=SC2086
  [ -z "$pids" ] || { echo "SIGKILL $pids" >>"$LOG"; kill -KILL $pids 2>/dev/null; sleep 0.5; }
fi
[ -z "$(ns_pids)" ] || die "processes still alive in namespace $NS: $(ns_pids | tr '\n' ' ')"
if [ -e "/run/netns/$NS" ]; then
  ip netns del "$NS" >>"$LOG" 2>&1 || die "ip netns del $NS failed"
fi
rm -rf "/etc/netns/$NS"
if [ "${1:-}" = --purge ]; then
  rm -rf "$PBS_HOME" /etc/pbs.conf
fi
exit 0
