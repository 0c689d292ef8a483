#!/usr/bin/env bash
# slurm-up.sh - install, configure and start a one-node Slurm cluster on
# localhost for the jobbridge test suite, without systemd (Debian 12: Slurm
# 22.05). Idempotent: a second run with the same settings changes nothing and
# returns in about a second. Quiet on success; prints "slurm-up: ERROR: ..."
# plus log tails and exits 1. A changed setting (e.g. SLURM_CI_MIN_JOB_AGE)
# rewrites slurm.conf and restarts the Slurm daemons (running jobs survive).
#
# Environment knobs:
#   SLURM_CI_ACCOUNTING=1  slurmdbd + private MariaDB (sacct works)   [default]
#   SLURM_CI_ACCOUNTING=0  accounting_storage/none + jobcomp/filetxt (no sacct)
#   SLURM_CI_CPUS=N        CPUs advertised by the node (default 4, more than the
#                          2 cores of CI, so several test jobs run at once; works
#                          thanks to SlurmdParameters=config_overrides)
#   SLURM_CI_MIN_JOB_AGE=S seconds slurmctld keeps a finished job visible to
#                          squeue/scontrol/qstat (MinJobAge, default 300; the
#                          reliability tests set it low)
#   SLURM_CI_MEM_PER_CPU=M DefMemPerCPU in MB (default 256). Keep it small: with
#                          no default a job gets the whole node's memory and
#                          jobs run one at a time
#   SLURM_CI_STATE=DIR     state/log directory (default /var/tmp/jobbridge-slurm)
#   SLURM_CI_DB_PORT=P     port of the private MariaDB on 127.0.0.1 (default 3307)
#   SLURM_CI_SMOKE=0       skip the final srun/sbatch smoke test
#   VERBOSE=1              show what is being done
set -euo pipefail

STATE=${SLURM_CI_STATE:-/var/tmp/jobbridge-slurm}
ACCT=${SLURM_CI_ACCOUNTING:-1}
CPUS=${SLURM_CI_CPUS:-4}
MIN_JOB_AGE=${SLURM_CI_MIN_JOB_AGE:-300}
MEM_PER_CPU=${SLURM_CI_MEM_PER_CPU:-256}
DBPORT=${SLURM_CI_DB_PORT:-3307}
NODE=localhost            # fixed node name: independent of odd container hostnames
CONF=/etc/slurm/slurm.conf
DBDCONF=/etc/slurm/slurmdbd.conf

say() { [ "${VERBOSE:-0}" = 1 ] && echo "slurm-up: [$(date +%T.%3N)] $*" >&2 || true; }
die() {
  echo "slurm-up: ERROR: $*" >&2
  for f in "$STATE"/log/slurmctld.log "$STATE"/log/slurmd.log "$STATE"/log/slurmdbd.log \
           "$STATE"/db/run/mysqld.log /var/log/munge/munged.log "$STATE"/log/apt.log; do
    [ -s "$f" ] && { echo "--- tail $f" >&2; tail -n 15 "$f" >&2; }
  done
  exit 1
}
[ "$(id -u)" = 0 ] || die "must run as root"
for v in CPUS MIN_JOB_AGE MEM_PER_CPU DBPORT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done

# alive PIDFILE: true if the pid in PIDFILE is a live (non-zombie) process.
# (PID 1 in containers may be slow to reap, so kill -0 alone is not enough.)
alive() {
  local p; p=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$p" ] && [ -r "/proc/$p/stat" ] || return 1
  local st; st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || return 1
  [ "$st" != Z ] && [ "$st" != X ] || return 1
  case "$(cat "/proc/$p/comm" 2>/dev/null)" in   # guard against a reused pid
    slurm*|munged|mariadbd|mysqld|sge_*) return 0 ;; *) return 1 ;;
  esac
}
# stop PIDFILE: SIGTERM, wait up to 15 s, then SIGKILL.
stop() {
  alive "$1" || { rm -f "$1"; return 0; }
  local p; p=$(cat "$1"); kill "$p" 2>/dev/null || true
  for _ in $(seq 75); do alive "$1" || { rm -f "$1"; return 0; }; sleep 0.2; done
  kill -9 "$p" 2>/dev/null || true; sleep 0.5; rm -f "$1"
}
# waitfor SECONDS CMD...: retry CMD every 0.2 s.
waitfor() {
  local n=$(( $1 * 5 )); shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}
# spawn CMD...: start a daemon detached from our stdio/session.
spawn() { setsid "$@" </dev/null >/dev/null 2>&1 & }

# ---------------------------------------------------------------- packages
# libpmix-dev: slurmd dlopens the unversioned libpmix.so; without it
# `srun --mpi=pmix` wedges slurmd (stuck slurmstepd, job in CG state).
PKGS=(slurmctld slurmd slurm-client munge libpmix-dev)
[ "$ACCT" = 1 ] && PKGS+=(slurmdbd mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
mkdir -p "$STATE"/{state,spool,log,run}
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$STATE/log/apt.log" 2>&1; then
    apt-get update -q >>"$STATE/log/apt.log" 2>&1 || true
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$STATE/log/apt.log" 2>&1 \
      || die "apt-get install ${missing[*]} failed"
  fi
fi

# ---------------------------------------------------------------- config
mem_mb=$(awk '/^MemTotal:/{print int($2/1024)}' /proc/meminfo)
real_mem=$(( mem_mb * 9 / 10 / 256 * 256 ))   # stable across runs (MemTotal, not MemFree)
if [ "$ACCT" = 1 ]; then
  acct_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none"
else
  acct_lines="AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt"
fi
new_conf="# generated by jobbridge scripts/clusters/slurm-up.sh
ClusterName=jobbridge
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$MEM_PER_CPU
SchedulerParameters=batch_sched_delay=0
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
KillWait=5
MinJobAge=$MIN_JOB_AGE
InactiveLimit=0
Waittime=0
$acct_lines
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$CPUS RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"
new_dbd="# generated by jobbridge scripts/clusters/slurm-up.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DBPORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
"
changed=0
[ ${#missing[@]} -gt 0 ] && changed=1   # new plugins/libraries: restart running daemons
mkdir -p /etc/slurm
if [ "$(cat "$CONF" 2>/dev/null)" != "$(printf '%s' "$new_conf")" ]; then
  printf '%s' "$new_conf" >"$CONF"; chmod 644 "$CONF"; changed=1
fi
if [ "$ACCT" = 1 ] && [ "$(cat "$DBDCONF" 2>/dev/null)" != "$(printf '%s' "$new_dbd")" ]; then
  printf '%s' "$new_dbd" >"$DBDCONF"; chmod 600 "$DBDCONF"; changed=1
fi
if [ "$changed" = 1 ]; then
  if alive "$STATE/run/slurmd.pid" || alive "$STATE/run/slurmctld.pid"; then
    say "configuration or packages changed: restarting Slurm daemons"
  fi
  stop "$STATE/run/slurmd.pid"; stop "$STATE/run/slurmctld.pid"; stop "$STATE/run/slurmdbd.pid"
fi

# ---------------------------------------------------------------- munge
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
chmod 755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "starting munged"
  rm -f /run/munge/munge.socket.2 /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1 || die "munged failed to start"
  waitfor 10 sh -c 'munge -n | unmunge' || die "munge does not work"
fi

# ---------------------------------------------------------------- accounting
if [ "$ACCT" = 1 ]; then
  DB=$STATE/db
  mysql_ok() { mariadb-admin --no-defaults -S "$DB/run/mysqld.sock" -uroot ping; }
  if ! mysql_ok >/dev/null 2>&1; then
    say "starting private MariaDB on 127.0.0.1:$DBPORT"
    mkdir -p "$DB/data" "$DB/run"; chown mysql:mysql "$DB" "$DB/data" "$DB/run"
    cat >"$DB/my.cnf" <<EOF
[mysqld]
datadir=$DB/data
socket=$DB/run/mysqld.sock
pid-file=$DB/run/mysqld.pid
log-error=$DB/run/mysqld.log
bind-address=127.0.0.1
port=$DBPORT
user=mysql
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
innodb_lock_wait_timeout=900
performance_schema=OFF
skip-name-resolve
EOF
    chmod 644 "$DB/my.cnf"
    if [ ! -d "$DB/data/mysql" ]; then
      mariadb-install-db --no-defaults --user=mysql --datadir="$DB/data" \
        --auth-root-authentication-method=socket --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 \
        || die "mariadb-install-db failed (see $STATE/log/mariadb-install.log)"
    fi
    spawn mariadbd --defaults-file="$DB/my.cnf"
    waitfor 30 mysql_ok || die "MariaDB did not start"
  fi
  mariadb --no-defaults -S "$DB/run/mysqld.sock" -uroot -e \
    "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
     GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || die "cannot create DB user"
  if ! alive "$STATE/run/slurmdbd.pid"; then
    say "starting slurmdbd"
    spawn slurmdbd
    waitfor 30 sacctmgr -n show cluster || die "slurmdbd did not come up"
  fi
  if [ -z "$(sacctmgr -n -P show cluster jobbridge format=cluster 2>/dev/null)" ]; then
    sacctmgr -i add cluster jobbridge >/dev/null || die "sacctmgr add cluster failed"
  fi
fi

if [ "$ACCT" != 1 ]; then   # switched from accounting to none: stop leftovers
  stop "$STATE/run/slurmdbd.pid"; stop "$STATE/db/run/mysqld.pid"
fi

# ---------------------------------------------------------------- slurmctld / slurmd
if ! alive "$STATE/run/slurmctld.pid"; then
  say "starting slurmctld"
  spawn slurmctld
fi
waitfor 30 sh -c 'scontrol ping | grep -q UP' || die "slurmctld did not come up"
if ! alive "$STATE/run/slurmd.pid"; then
  say "starting slurmd"
  spawn slurmd -N "$NODE"
fi
node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null; }
for _ in $(seq 150); do   # 30 s
  case "$(node_state)" in
    idle*|mixed*|allocated*|completing*|planned*) break ;;
    drain*|down*|fail*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
case "$(node_state)" in
  idle*|mixed*|allocated*|completing*|planned*) ;;
  *) die "node $NODE is not up: $(sinfo -h -N -o '%N %T %E' 2>&1)" ;;
esac

# ---------------------------------------------------------------- smoke test
if [ "${SLURM_CI_SMOKE:-1}" = 1 ]; then
  out=$(cd /tmp && timeout 30 srun -Q -t 1 -N1 -n1 echo srun-ok 2>&1) || die "srun failed: $out"
  [ "$out" = srun-ok ] || die "srun printed: $out"
  jid=$(cd /tmp && timeout 30 sbatch --parsable -t 1 -o /dev/null --wrap true 2>&1) || die "sbatch failed: $jid"
  for _ in $(seq 150); do   # 30 s; sbatch --wait polls too slowly (up to 10 s)
    st=$(scontrol show job "$jid" 2>/dev/null | grep -o 'JobState=[A-Z_]*' || true)
    case "$st" in
      JobState=COMPLETED) break ;;
      JobState=PENDING|JobState=RUNNING|JobState=COMPLETING|JobState=CONFIGURING|"") sleep 0.2 ;;
      *) die "smoke-test batch job $jid ended in $st" ;;
    esac
  done
  [ "$st" = JobState=COMPLETED ] || die "smoke-test batch job $jid did not finish in 30 s ($st)"
fi
exit 0
