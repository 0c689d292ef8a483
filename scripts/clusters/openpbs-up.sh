#!/usr/bin/env bash
# openpbs-up.sh - build (once), configure and start a real one-node OpenPBS
# (pbs_server, pbs_sched, pbs_comm, pbs_mom and its PostgreSQL datastore) for
# the jobbridge test suite, as root on Debian 12, without systemd.
# Idempotent: a warm run (all up) takes about a second. Quiet on success; on
# failure prints "openpbs-up: ERROR: ..." plus log tails and exits 1.
#
# Source: OpenPBS is built from a source tarball only when /opt/pbs is not
# installed yet (about 2.5 minutes on 2 cores, plus the apt packages). The
# tarball is $OPENPBS_SRC, by default ../shared/openpbs/openpbs-src.tar.gz beside
# the repository. Elsewhere, make one from OpenPBS's own repository:
#   git clone https://github.com/openpbs/openpbs && cd openpbs &&
#   git archive --format=tar.gz -o /path/to/openpbs-src.tar.gz HEAD
# (a release tarball with one top folder works too). The build tree is deleted
# after `make install`; nothing of OpenPBS is kept in this repository.
#
# The trap: PBS refuses a host name that resolves to a loopback address, and
# the host's own address must not be used. So every daemon (and every job) runs
# inside a private network namespace $OPENPBS_CI_NETNS holding only `lo` and a
# documentation address (TEST-NET-2) named $OPENPBS_CI_HOST there: no veth, no
# route, nothing can leave it. /etc/hosts is not touched. Clients reach the
# server through `ip netns exec jbpbs` (root only); env.sh exports the prefixes
# for root (JOBBRIDGE_PBS_HOST_COMMAND) and for the ordinary user
# $OPENPBS_CI_USER, created here (JOBBRIDGE_PBS_USER_HOST_COMMAND, through one
# sudo rule). Submit as that user for true Exit_status values: pbs_mom does not
# reap root's jobs (a qdel'd root job shows Exit_status 0).
#
# Environment knobs:
#   OPENPBS_SRC=FILE       source tarball (.tar.gz) or source folder (autogen.sh)
#   OPENPBS_CI_CPUS=N      ncpus the node advertises (default 8, more than the 2
#                          cores of CI, so many test jobs run at once)
#   OPENPBS_CI_USER=NAME   ordinary user for submissions (default pbsuser)
#   OPENPBS_CI_NETNS=NAME  network namespace (default jbpbs)
#   OPENPBS_CI_HOST=NAME   PBS host name inside it (default pbshost)
#   OPENPBS_CI_ADDR=IP     its address (default 198.51.100.2)
#   OPENPBS_CI_STATE=DIR   logs and build folder (default /var/tmp/jobbridge-openpbs)
#   OPENPBS_CI_SMOKE=0     skip the final qsub smoke test
#   VERBOSE=1              show what is being done
set -euo pipefail

SYS_PATH=/usr/bin:/bin:/usr/sbin:/sbin
export PATH=$SYS_PATH LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive
umask 022
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=${OPENPBS_SRC:-$here/../../../shared/openpbs/openpbs-src.tar.gz}
CPUS=${OPENPBS_CI_CPUS:-8}
SUBMIT_USER=${OPENPBS_CI_USER:-pbsuser}
NS=${OPENPBS_CI_NETNS:-jbpbs}
HOST=${OPENPBS_CI_HOST:-pbshost}
ADDR=${OPENPBS_CI_ADDR:-198.51.100.2}
STATE=${OPENPBS_CI_STATE:-/var/tmp/jobbridge-openpbs}
LOG=$STATE/log
EXEC=/opt/pbs
PBS_HOME=/var/spool/pbs
CONF=/etc/pbs.conf
SUDOERS=/etc/sudoers.d/jobbridge-openpbs

say() { [ "${VERBOSE:-0}" = 1 ] && echo "openpbs-up: [$(date +%T.%3N)] $*" >&2 || true; }
die() { # die MESSAGE [LOG...]: the named logs' tails, else the daemons'
  local message=$1 f; shift
  trap - ERR
  echo "openpbs-up: ERROR: $message" >&2
  [ $# -gt 0 ] || set -- "$PBS_HOME/server_logs/$(date +%Y%m%d)" "$PBS_HOME/mom_logs/$(date +%Y%m%d)"
  for f in "$@"; do
    [ -s "$f" ] && { echo "--- tail $f" >&2; tail -n 15 "$f" >&2; }
  done
  exit 1
}
trap 'die "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR
[ "$(id -u)" = 0 ] || die "must run as root"
source "$here/lib.sh"
[[ "$CPUS" =~ ^[1-9][0-9]*$ ]] || die "OPENPBS_CI_CPUS must be a number, got '$CPUS'"
mkdir -p "$LOG" /run/lock
# one up or down at a time; fd 9 is closed for everything that outlives us
exec 9>/run/lock/jobbridge-openpbs.lock
flock -w 900 9 || die "another openpbs-up/down is still running"

# run a command inside the namespace with a clean environment
in_ns() { env -i PATH="$SYS_PATH" LANG=C.UTF-8 HOME=/root ip netns exec "$NS" "$@" 9>&-; }
q() { in_ns "$EXEC/bin/$1" "${@:2}"; }

# ---------------------------------------------------------------- packages
# build and run dependencies (OpenPBS's INSTALL, Debian section) without
# sendmail (the server's mailer is /bin/true), plus sudo for the user's prefix
# and python3-psutil: the user's tests run jobbridge with Debian's python3
PKGS=(gcc g++ make libtool autoconf automake pkg-config perl swig
  libhwloc-dev libx11-dev libxt-dev libedit-dev libical-dev libncurses-dev
  postgresql-server-dev-all postgresql-contrib python3-dev tcl-dev tk-dev
  libexpat1-dev libssl-dev libxext-dev libxft-dev libcjson-dev
  expat libedit2 postgresql python3 sudo tcl tk libical3 libcjson1 iproute2 procps
  python3-psutil)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$LOG/apt.log" 2>&1; then
    apt-get update -q >>"$LOG/apt.log" 2>&1 || true
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$LOG/apt.log" 2>&1 \
      || die "apt-get install ${missing[*]} failed" "$LOG/apt.log"
  fi
fi

# ---------------------------------------------------------------- build once
installed() {
  [ -x "$EXEC/sbin/pbs_server.bin" ] && [ -x "$EXEC/sbin/pbs_mom" ] && [ -x "$EXEC/bin/qstat" ] &&
    [ -x "$EXEC/libexec/pbs_postinstall" ] && [ -x "$EXEC/libexec/pbs_init.d" ]
}
build() {
  local build=$STATE/build src
  if [ -f "$SRC" ]; then
    rm -rf "$build"; mkdir -p "$build"
    tar -xf "$SRC" -C "$build" >"$LOG/extract.log" 2>&1 || die "cannot extract $SRC" "$LOG/extract.log"
    src=$build
    [ -f "$src/autogen.sh" ] || src=$(dirname "$(find "$build" -mindepth 2 -maxdepth 2 -name autogen.sh -print -quit)")
  elif [ -f "$SRC/autogen.sh" ]; then
    src=$(cd "$SRC" && pwd)
  else
    die "$EXEC is not installed and there is no OpenPBS source at '$SRC': set OPENPBS_SRC to a
tarball made with 'git clone https://github.com/openpbs/openpbs && git archive --format=tar.gz HEAD'"
  fi
  [ -f "$src/autogen.sh" ] || die "no autogen.sh in $SRC"
  say "building OpenPBS from $SRC (about 2.5 minutes)"
  # -fdebug-prefix-map keeps the temporary build path out of the installed debug info
  local flags="-g -O2 -fdebug-prefix-map=$src=/usr/src/openpbs"
  (cd "$src" && { [ -x configure ] || ./autogen.sh; }) >"$LOG/autogen.log" 2>&1 \
    || die "autogen.sh failed" "$LOG/autogen.log"
  (cd "$src" && ./configure --prefix="$EXEC" CFLAGS="$flags" CXXFLAGS="$flags") \
    >"$LOG/configure.log" 2>&1 || die "configure failed" "$LOG/configure.log"
  make -C "$src" -j"$(nproc)" >"$LOG/make.log" 2>&1 || die "make failed" "$LOG/make.log"
  if ! make -C "$src" install >"$LOG/make-install.log" 2>&1; then
    rm -f "$EXEC/sbin/pbs_server.bin"   # so that the next run builds again
    die "make install failed" "$LOG/make-install.log"
  fi
  [ "$src" = "$(cd "$SRC" 2>/dev/null && pwd)" ] || rm -rf "$build"
  installed || die "make install left $EXEC incomplete" "$LOG/make-install.log"
}
installed || build
for f in pbs_iff pbs_rcp; do   # clients authenticate through the setuid pbs_iff
  [ -u "$EXEC/sbin/$f" ] || chmod 4755 "$EXEC/sbin/$f"
done

# ---------------------------------------------------------------- configuration
if [ ! -f "$CONF" ] || [ ! -f "$PBS_HOME/pbs_environment" ] || [ ! -d "$PBS_HOME/mom_priv" ]; then
  say "pbs_postinstall"
  env -i PATH="$SYS_PATH" LANG=C.UTF-8 HOME=/root "$EXEC/libexec/pbs_postinstall" \
    </dev/null >"$LOG/postinstall.log" 2>&1 9>&- || die "pbs_postinstall failed" "$LOG/postinstall.log"
fi
# pbs_postinstall registers PBS for boot, which would start it in the root namespace
if [ -e /etc/systemd/system/multi-user.target.wants/pbs.service ] || compgen -G '/etc/rc[2-5].d/S*pbs' >/dev/null; then
  { systemctl disable pbs || true; update-rc.d pbs disable || true; } </dev/null >>"$LOG/postinstall.log" 2>&1 9>&-
fi
new_conf="PBS_EXEC=$EXEC
PBS_HOME=$PBS_HOME
PBS_SERVER=$HOST
PBS_SERVER_HOST_NAME=$HOST
PBS_LEAF_NAME=$HOST
PBS_MOM_NODE_NAME=$HOST
PBS_START_SERVER=1
PBS_START_SCHED=1
PBS_START_COMM=1
PBS_START_MOM=1"
# job files are copied locally ($usecp); resource use, walltime included, is
# checked every 1-4 s instead of 10-120 s, so a walltime kill comes on time
new_mom="\$clienthost $HOST
\$usecp *:/ /
\$min_check_poll 1
\$max_check_poll 4
\$restrict_user_maxsysid 999"
changed=0
if [ "$(cat "$CONF")" != "$new_conf" ]; then printf '%s\n' "$new_conf" >"$CONF"; changed=1; fi
if [ "$(cat "$PBS_HOME/mom_priv/config" 2>/dev/null)" != "$new_mom" ]; then
  printf '%s\n' "$new_mom" >"$PBS_HOME/mom_priv/config"; changed=1
fi

# the ordinary user, and the one command it may run as root: its own PBS
# commands inside the namespace (`ip netns exec` needs CAP_SYS_ADMIN)
id "$SUBMIT_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$SUBMIT_USER"
rule="$SUBMIT_USER ALL=(root) NOPASSWD: /usr/sbin/ip netns exec $NS /usr/sbin/runuser -u $SUBMIT_USER -- $EXEC/bin/*"
if [ "$(cat "$SUDOERS" 2>/dev/null)" != "$rule" ]; then
  printf '%s\n' "$rule" >"$SUDOERS.tmp"; chmod 440 "$SUDOERS.tmp"
  visudo -cqf "$SUDOERS.tmp" || die "invalid sudoers rule: $rule"
  mv "$SUDOERS.tmp" "$SUDOERS"
fi

# ---------------------------------------------------------------- network namespace
if ! ip -n "$NS" link show lo >/dev/null 2>&1; then
  say "creating network namespace $NS"
  ip netns del "$NS" >/dev/null 2>&1 || true   # a stale name without a namespace
  ip netns add "$NS" >"$LOG/netns.log" 2>&1 || die "ip netns add $NS failed" "$LOG/netns.log"
fi
ip -n "$NS" link set lo up
if ! ip -n "$NS" -4 -o addr show | grep -q " inet $ADDR/"; then
  dev=lo   # on a dummy device where the kernel has the driver
  if ip -n "$NS" link show dummy0 >/dev/null 2>&1 ||
     ip -n "$NS" link add dummy0 type dummy >>"$LOG/netns.log" 2>&1; then
    dev=dummy0; ip -n "$NS" link set dummy0 up
  fi
  ip -n "$NS" addr add "$ADDR/32" dev "$dev" >>"$LOG/netns.log" 2>&1 \
    || die "cannot add $ADDR to $dev in $NS" "$LOG/netns.log"
fi
links=$(ip -n "$NS" -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort | tr '\n' ' ')
case "$links" in
  "lo "|"dummy0 lo ") ;;
  *) die "namespace $NS has other interfaces than lo and dummy0: $links" ;;
esac
if [ -n "$(ip -n "$NS" route show default; ip -n "$NS" -6 route show default;
           ip -n "$NS" route show table all | grep ' via ' || true)" ]; then
  die "namespace $NS has a route out; refusing to start PBS in it"
fi
# Every root client call authenticates through pbs_iff from a reserved port
# (512-1023) that then stays in TIME_WAIT for 60 s: call no. 512 within a
# minute would block for a minute. Few TIME_WAIT buckets in this namespace only.
[ "$(in_ns cat /proc/sys/net/ipv4/tcp_max_tw_buckets)" = 128 ] \
  || in_ns sysctl -q -w net.ipv4.tcp_max_tw_buckets=128 >>"$LOG/netns.log" 2>&1 \
  || die "cannot set tcp_max_tw_buckets in $NS" "$LOG/netns.log"
mkdir -p "/etc/netns/$NS"   # bind-mounted over /etc/hosts and resolv.conf by ip netns exec
want="# generated by jobbridge scripts/clusters/openpbs-up.sh
127.0.0.1	localhost $(hostname)
::1	localhost ip6-localhost ip6-loopback
$ADDR	$HOST"
[ "$(cat "/etc/netns/$NS/hosts" 2>/dev/null)" = "$want" ] || printf '%s\n' "$want" >"/etc/netns/$NS/hosts"
want="nameserver 127.0.0.1
options timeout:1 attempts:1"
[ "$(cat "/etc/netns/$NS/resolv.conf" 2>/dev/null)" = "$want" ] \
  || printf '%s\n' "$want" >"/etc/netns/$NS/resolv.conf"

# ---------------------------------------------------------------- daemons
ns_net="net:[$(stat -L -c %i "/run/netns/$NS")]"
running=0; outside=""
for spec in pbs_server.bin:server_priv/server.lock pbs_mom:mom_priv/mom.lock \
            pbs_sched:sched_priv/sched.lock pbs_comm:server_priv/comm.lock; do
  name=${spec%%:*}
  p=$(head -1 "$PBS_HOME/${spec#*:}" 2>/dev/null | tr -dc 0-9) || true
  [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$name" ] || continue
  if [ "$(readlink "/proc/$p/ns/net")" = "$ns_net" ]; then
    running=$((running + 1))
  else
    outside="$outside $name($p)"
  fi
done
[ -z "$outside" ] || die "PBS daemons run outside namespace $NS:$outside (stop them: openpbs-down.sh)"
if [ "$running" -gt 0 ] && [ "$changed" = 1 ]; then
  say "configuration changed: stopping PBS"
  timeout 200 env -i PATH="$SYS_PATH" LANG=C.UTF-8 HOME=/root ip netns exec "$NS" \
    "$EXEC/libexec/pbs_init.d" stop </dev/null >"$LOG/stop.log" 2>&1 9>&- \
    || die "could not stop PBS for a configuration change" "$LOG/stop.log"
  running=0
fi
if [ "$running" -lt 4 ]; then
  say "starting PBS in namespace $NS"
  in_ns "$EXEC/libexec/pbs_init.d" start </dev/null >"$LOG/start.log" 2>&1 \
    || die "pbs_init.d start failed" "$LOG/start.log"
fi
# the first start initialises the datastore (~10 s)
waitfor 90 q qstat -B || die "pbs_server does not answer qstat -B inside $NS"

# ---------------------------------------------------------------- server and node
server=$(q qstat -Bf) || die "qstat -Bf failed"
cmds=""
want_attr() { grep -qx "    $1 = $2" <<<"$server" || cmds+="set server $1 = $2"$'\n'; }
q qstat -Q workq >/dev/null 2>&1 || cmds+="create queue workq queue_type=execution,enabled=true,started=true"$'\n'
want_attr default_queue workq
want_attr scheduling True
want_attr job_history_enable True
want_attr flatuid True
want_attr mailer /bin/true
want_attr acl_roots root
node=$(q pbsnodes "$HOST" 2>/dev/null) || { cmds+="create node $HOST"$'\n'; node=""; }
grep -qx "     resources_available.ncpus = $CPUS" <<<"$node" \
  || cmds+="set node $HOST resources_available.ncpus = $CPUS"$'\n'
if [ -n "$cmds" ]; then
  say "qmgr: ${cmds//$'\n'/; }"
  q qmgr <<<"$cmds" >"$LOG/qmgr.log" 2>&1 || die "qmgr failed" "$LOG/qmgr.log"
fi
node_free() { q pbsnodes "$HOST" | grep -Eq '^ *state = (free|job-busy|busy)'; }
waitfor 60 node_free || die "node $HOST is not free: $(q pbsnodes "$HOST" 2>&1 | grep 'state =')"

# ---------------------------------------------------------------- smoke test
# A node running jobs proves the server runs them; a smoke job could only queue
# behind those waiting (a warm re-run while tests or a workflow use the server)
busy() { q pbsnodes "$HOST" | grep -q '^ *jobs = '; }
if [ "${OPENPBS_CI_SMOKE:-1}" = 1 ] && busy; then
  say "node $HOST runs jobs already: no smoke-test job"
elif [ "${OPENPBS_CI_SMOKE:-1}" = 1 ]; then
  jid=$(cd / && echo true | q qsub -o /dev/null -j oe 2>&1) || die "qsub failed: $jid"
  ended() { q qstat -x -f "$jid" | grep -q 'job_state = F'; }
  waitfor 60 ended || die "smoke-test job $jid did not end in 60 s: $(q qstat -x "$jid" 2>&1 | tail -1)"
  q qstat -x -f "$jid" | grep -q 'Exit_status = 0' || die "smoke-test job $jid failed: $(q qstat -x -f "$jid" | grep -E 'Exit_status|comment')"
fi
exit 0
