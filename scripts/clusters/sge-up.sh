#!/usr/bin/env bash
# sge-up.sh - install, configure and start a one-host (Son of) Grid Engine 8.1.9
# cell from Debian 12 packages for the jobbridge test suite, without systemd,
# plus the DRMAA 1.0 library.
# Idempotent: a second run changes nothing. Quiet on success; on failure prints
# "sge-up: ERROR: ..." with log tails and exits 1.
#
# Host naming: the whole cell uses the name "localhost". A GE host_aliases file
# maps the machine's real hostname(s) onto it, so odd or unresolvable container
# hostnames work (an /etc/hosts line is added only if the hostname does not
# resolve at all).
#
# Environment knobs:
#   SGE_CI_SLOTS=N     slots in all.q (default: nproc)
#   SGE_CI_STATE=DIR   spool/state directory (default /var/tmp/jobbridge-sge)
#   SGE_CI_FORCE=1     let apt remove a dpkg-installed slurm-wlm-torque (it conflicts
#                      with gridengine-client; torque-wrappers-up.sh avoids that by
#                      unpacking the wrappers into a private prefix instead)
#   SGE_CI_SMOKE=0     skip the final qsub -sync y smoke test
#   VERBOSE=1          show what is being done
#
# Client side: qsub/qstat/qacct/qdel work with no environment (defaults
# SGE_ROOT=/var/lib/gridengine SGE_CELL=default). For Python DRMAA:
#   export DRMAA_LIBRARY_PATH=/usr/lib/gridengine-drmaa/lib/libdrmaa.so.1.0
#   export GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384   # needed by pyenv/venv Pythons
# (env.sh beside this script exports all of that).
set -euo pipefail

export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
STATE=${SGE_CI_STATE:-/var/tmp/jobbridge-sge}
SLOTS=${SGE_CI_SLOTS:-$(nproc)}
H=localhost
COMMON=$SGE_ROOT/$SGE_CELL/common

say() { [ "${VERBOSE:-0}" = 1 ] && echo "sge-up: [$(date +%T.%3N)] $*" >&2 || true; }
die() {
  echo "sge-up: ERROR: $*" >&2
  for f in "$STATE/qmaster/messages" "$STATE"/execd/*/messages "$STATE/log/apt.log" "$STATE/log/init.log"; do
    [ -s "$f" ] && { echo "--- tail $f" >&2; tail -n 15 "$f" >&2; }
  done
  exit 1
}
[ "$(id -u)" = 0 ] || die "must run as root"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$STATE/log"

# ---------------------------------------------------------------- packages
PKGS=(gridengine-master gridengine-exec gridengine-client gridengine-drmaa1.0)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if dpkg-query -W -f='${Status}' slurm-wlm-torque 2>/dev/null | grep -q 'install ok installed' \
     && [ "${SGE_CI_FORCE:-0}" != 1 ]; then
    die "slurm-wlm-torque is installed and conflicts with gridengine-client (apt-get remove slurm-wlm-torque, or set SGE_CI_FORCE=1)"
  fi
  say "installing ${missing[*]}"
  printf '%s\n' \
    "gridengine-common shared/gridengineconfig boolean true" \
    "gridengine-common shared/gridenginecell string default" \
    "gridengine-common shared/gridenginemaster string $H" | debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$STATE/log/apt.log" 2>&1; then
    apt-get update -q >>"$STATE/log/apt.log" 2>&1 || true
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$STATE/log/apt.log" 2>&1 \
      || die "apt-get install ${missing[*]} failed"
  fi
fi
id sgeadmin >/dev/null 2>&1 || die "user sgeadmin missing (gridengine-common postinst failed?)"

# ---------------------------------------------------------------- host names
# GE resolves both the full and (ignore_fqdn) the short hostname: both must resolve.
hn=$(hostname)
for n in "$hn" "${hn%%.*}"; do
  if ! getent hosts "$n" >/dev/null 2>&1; then
    say "adding $n to /etc/hosts"
    echo "127.0.0.1 $n" >>/etc/hosts || die "hostname $n does not resolve and /etc/hosts is not writable"
  fi
done
# every name in host_aliases must itself resolve, or all GE commands fail with
# "reresolve hostname failed: can't resolve host name"
aliases=
for n in $( { echo "$hn"; hostname -s 2>/dev/null; hostname -f 2>/dev/null;
              getent hosts "$hn" | awk '{for(i=2;i<=NF;i++)print $i}'; } | sort -u); do
  [ "$n" != "$H" ] && getent hosts "$n" >/dev/null 2>&1 && aliases="$aliases $n"
done
mkdir -p "$COMMON"
want_alias="$H$aliases"
changed=0
[ "$(cat "$COMMON/host_aliases" 2>/dev/null)" = "$want_alias" ] || { echo "$want_alias" >"$COMMON/host_aliases"; changed=1; }
[ "$(cat "$COMMON/act_qmaster" 2>/dev/null)" = "$H" ] || { echo "$H" >"$COMMON/act_qmaster"; changed=1; }
want_boot="Version: 6.2
admin_user              sgeadmin
default_domain          none
ignore_fqdn             true
spooling_method         berkeleydb
spooling_lib            libspoolb
spooling_params         $STATE/spooldb
binary_path             /usr/sbin
qmaster_spool_dir       $STATE/qmaster
security_mode           none
listener_threads        2
worker_threads          2
scheduler_threads       1"
[ "$(cat "$COMMON/bootstrap" 2>/dev/null)" = "$want_boot" ] || { echo "$want_boot" >"$COMMON/bootstrap"; changed=1; }
chown -R sgeadmin:sgeadmin "$COMMON"
if [ "$changed" = 1 ]; then   # host names or spool paths changed: restart running daemons
  if alive "$STATE/qmaster/qmaster.pid" || ls "$STATE"/execd/*/execd.pid >/dev/null 2>&1; then
    say "host names or spool paths changed: restarting daemons"
    "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/sge-down.sh" || die "sge-down.sh failed"
  fi
fi

# ---------------------------------------------------------------- spool init
mkdir -p "$STATE/spooldb" "$STATE/qmaster/job_scripts" "$STATE/execd"
chown sgeadmin:sgeadmin "$STATE" "$STATE/spooldb" "$STATE/qmaster" "$STATE/qmaster/job_scripts" "$STATE/execd"
chmod 755 "$STATE"
if [ ! -e "$STATE/spooldb/sge" ]; then
  say "initialising spool in $STATE/spooldb"
  runuser -u sgeadmin -- /usr/share/gridengine/scripts/init_cluster \
    "$SGE_ROOT" "$SGE_CELL" "$STATE/spooldb" sgeadmin >"$STATE/log/init.log" 2>&1 \
    || die "init_cluster failed"
fi

# ---------------------------------------------------------------- qmaster
QPID=$STATE/qmaster/qmaster.pid
if ! alive "$QPID"; then
  say "starting sge_qmaster"
  spawn /usr/sbin/sge_qmaster
  waitfor 30 qconf -sh || die "sge_qmaster did not come up"
fi

# ---------------------------------------------------------------- configuration (idempotent)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
qconf -sconf global >"$tmp/cur" 2>/dev/null || die "qconf -sconf failed"
sed -e 's/^min_uid .*/min_uid                      0/' \
    -e 's/^min_gid .*/min_gid                      0/' \
    -e 's/^load_report_time .*/load_report_time             00:00:05/' \
    -e 's/^max_unheard .*/max_unheard                  00:00:30/' \
    -e "s#^execd_spool_dir .*#execd_spool_dir              $STATE/execd#" \
    -e 's/flush_time=[0-9:]*/flush_time=00:00:01/' \
    -e 's/accounting=false/accounting=true/' \
    -e '/^#/d' "$tmp/cur" >"$tmp/global"
if ! diff -q <(grep -v '^#' "$tmp/cur") "$tmp/global" >/dev/null; then
  qconf -Mconf "$tmp/global" >/dev/null 2>"$tmp/err" || die "qconf -Mconf: $(cat "$tmp/err")"
fi
qconf -ssconf >"$tmp/cur"
sed -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
    -e 's/^flush_submit_sec .*/flush_submit_sec                  1/' \
    -e 's/^flush_finish_sec .*/flush_finish_sec                  1/' "$tmp/cur" >"$tmp/sched"
if ! diff -q "$tmp/cur" "$tmp/sched" >/dev/null; then
  qconf -Msconf "$tmp/sched" >/dev/null 2>"$tmp/err" || die "qconf -Msconf: $(cat "$tmp/err")"
fi
qconf -sh 2>/dev/null | grep -qx "$H" || qconf -ah "$H" >/dev/null 2>&1 || die "qconf -ah $H failed"
qconf -ss 2>/dev/null | grep -qx "$H" || qconf -as "$H" >/dev/null 2>&1 || die "qconf -as $H failed"
if ! qconf -sel 2>/dev/null | grep -qx "$H"; then
  printf 'hostname %s\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' "$H" >"$tmp/exechost"
  qconf -Ae "$tmp/exechost" >/dev/null 2>"$tmp/err" || die "qconf -Ae: $(cat "$tmp/err")"
fi
if ! qconf -sp smp >/dev/null 2>&1; then
  printf 'pe_name smp\nslots 9999\nuser_lists NONE\nxuser_lists NONE\nstart_proc_args NONE\nstop_proc_args NONE\nallocation_rule $pe_slots\ncontrol_slaves FALSE\njob_is_first_task TRUE\nurgency_slots min\naccounting_summary FALSE\nqsort_args NONE\n' >"$tmp/smp"
  qconf -Ap "$tmp/smp" >/dev/null 2>"$tmp/err" || die "qconf -Ap smp: $(cat "$tmp/err")"
fi
# shellcheck disable=SC2209
{ EDITOR=cat qconf -aq all.q 2>/dev/null || true; } | sed \
  -e 's/^qname .*/qname                 all.q/' \
  -e "s/^hostlist .*/hostlist              $H/" \
  -e 's/^load_thresholds .*/load_thresholds       NONE/' \
  -e 's/^pe_list .*/pe_list               smp/' \
  -e "s/^slots .*/slots                 $SLOTS/" \
  -e 's#^shell .*#shell                 /bin/bash#' >"$tmp/allq"
grep -q '^qname *all.q' "$tmp/allq" || die "could not get a queue template from qconf"
if ! qconf -sq all.q >"$tmp/cur" 2>/dev/null; then
  qconf -Aq "$tmp/allq" >/dev/null 2>"$tmp/err" || die "qconf -Aq all.q: $(cat "$tmp/err")"
elif ! diff -q <(awk '{print $1, $2}' "$tmp/cur") <(awk '{print $1, $2}' "$tmp/allq") >/dev/null; then
  qconf -Mq "$tmp/allq" >/dev/null 2>"$tmp/err" || die "qconf -Mq all.q: $(cat "$tmp/err")"
fi

# ---------------------------------------------------------------- execd
# the execd spool subdirectory is named after the host as the execd resolves it
# (usually "localhost", but e.g. the short hostname in other setups): check all
execd_alive() { local f; for f in "$STATE"/execd/*/execd.pid; do alive "$f" && return 0; done; return 1; }
if ! execd_alive; then
  say "starting sge_execd"
  spawn /usr/sbin/sge_execd
fi
# queue instance is usable once its state column no longer shows u(nknown)
qready() {
  local line; line=$(qstat -f -q "all.q@$H" 2>/dev/null | grep "^all.q@$H") || return 1
  [ "$(echo "$line" | awk '{print NF}')" -eq 5 ]   # 6th column = states; absent when OK
}
if ! waitfor 30 qready; then
  qmod -c "all.q@$H" >/dev/null 2>&1 || true; qmod -e "all.q@$H" >/dev/null 2>&1 || true
  waitfor 10 qready || die "queue all.q@$H not ready: $(qstat -f -q all.q 2>&1 | tail -n 2)"
fi

# ---------------------------------------------------------------- smoke test
if [ "${SGE_CI_SMOKE:-1}" = 1 ]; then
  out=$(cd /tmp && timeout 60 qsub -sync y -b y -o /dev/null -j y /bin/true 2>&1) \
    || die "smoke test qsub -sync y failed: $out"
fi
exit 0
