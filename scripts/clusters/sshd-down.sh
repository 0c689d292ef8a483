#!/usr/bin/env bash
# sshd-down.sh - stop the two sshd started by sshd-up.sh (jobbridge remote tests).
# Open connections and the cluster account's jobbridge engines keep running
# (like a login node's). Idempotent and quiet.
# `sshd-down.sh --purge` also deletes the keys and configs ($SSH_CI_STATE) and the
# user jbcluster with its home (its workflows are lost).
set -uo pipefail
STATE=${SSH_CI_STATE:-/var/tmp/jobbridge-ssh}
CUSER=${SSH_CI_USER:-jbcluster}
[ "$(id -u)" = 0 ] || { echo "sshd-down: ERROR: must run as root" >&2; exit 1; }

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop "$STATE/jump/sshd.pid" 5
stop "$STATE/cluster/sshd.pid" 5
if [ "${1:-}" = --purge ]; then
  rm -rf "$STATE"
  getent passwd "$CUSER" >/dev/null && { userdel --remove "$CUSER" 2>/dev/null \
    || echo "sshd-down: $CUSER still runs processes: not removed" >&2; }
fi
exit 0
