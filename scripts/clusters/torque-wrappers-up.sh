#!/usr/bin/env bash
# torque-wrappers-up.sh - Slurm's Torque/PBS wrappers (qsub, qstat, qdel, qhold,
# qrls, qalter, qrerun, pbsnodes, mpiexec.slurm, generate_pbs_nodefile from the
# Debian package slurm-wlm-torque) in a PRIVATE prefix, plus the spank_pbs
# plugin (PBS_JOBID, PBS_O_WORKDIR, ... in jobs). Needs the Slurm cluster of
# slurm-up.sh to be running (it is not started from here, so that the knobs
# the caller gave slurm-up.sh are not reset). Idempotent, quiet on success; on
# failure prints "torque-wrappers-up: ERROR: ..." plus log tails and exits 1.
#
# Why a private prefix: slurm-wlm-torque Conflicts with gridengine-client (both
# ship /usr/bin/qsub, /usr/bin/qstat, ...), and the test suite needs both. So
# the .deb is never given to dpkg: it is fetched with `apt-get download`,
# unpacked with `dpkg-deb -x`, and its scripts are copied to $PREFIX/bin.
# Grid Engine's /usr/bin/qsub stays what it is; put $PREFIX/bin first on PATH
# to get the Torque flavour (env.sh exports JOBBRIDGE_TORQUE_BIN for that).
# The wrappers call "${FindBin::Bin}/sbatch" (salloc, srun): i.e. next to
# themselves; the copies are patched to call Slurm's own binaries instead.
#
# Environment knobs:
#   TORQUE_WRAPPERS_PREFIX=DIR  install prefix (default /opt/jobbridge-torque)
#   TORQUE_WRAPPERS_CACHE=DIR   where the .deb is downloaded (default
#                               /var/cache/jobbridge-torque)
#   SLURM_CI_STATE=DIR          Slurm state dir of slurm-up.sh (logs, smoke test)
#   TORQUE_WRAPPERS_SMOKE=0     skip the qsub/qstat smoke test
#   VERBOSE=1                   show what is being done
set -euo pipefail

PREFIX=${TORQUE_WRAPPERS_PREFIX:-/opt/jobbridge-torque}
CACHE=${TORQUE_WRAPPERS_CACHE:-/var/cache/jobbridge-torque}
STATE=${SLURM_CI_STATE:-/var/tmp/jobbridge-slurm}
LOG=$STATE/log/apt-torque.log
PKG=slurm-wlm-torque
PLUG=/etc/slurm/plugstack.conf.d/pbs.conf

say() { [ "${VERBOSE:-0}" = 1 ] && echo "torque-wrappers-up: [$(date +%T.%3N)] $*" >&2 || true; }
die() {
  echo "torque-wrappers-up: ERROR: $*" >&2
  for f in "$LOG" "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log"; do
    [ -s "$f" ] && { echo "--- tail $f" >&2; tail -n 15 "$f" >&2; }
  done
  exit 1
}
[ "$(id -u)" = 0 ] || die "must run as root"
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
# apt_run CMD...: run an apt command, after an `apt-get update` if it fails once.
apt_run() {
  "$@" >>"$LOG" 2>&1 && return 0
  apt-get update -q >>"$LOG" 2>&1 || true
  "$@" >>"$LOG" 2>&1
}
mkdir -p "$STATE/log"
: >"$LOG"
command -v sbatch >/dev/null && installed slurm-client || die "Slurm is not installed: run slurm-up.sh first"
timeout 10 scontrol ping 2>/dev/null | grep -q UP || die "slurmctld is not running: run slurm-up.sh first"
sbin=$(dirname "$(command -v sbatch)")
export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------- wrappers
# Version to use: the one of the installed Slurm client, so that wrappers and
# the Slurm perl API they load (libslurm-perl) always match.
ver=$(dpkg-query -W -f='${Version}' slurm-client)
stamp=$PREFIX/.slurm-wlm-torque-version
bins=(qsub qstat qdel qhold qrls qalter qrerun pbsnodes mpiexec.slurm generate_pbs_nodefile)
have_all=1
for b in "${bins[@]}"; do [ -x "$PREFIX/bin/$b" ] || have_all=0; done
perl_ok() { local m; for m in Slurm Slurmdb Switch; do perl -M"$m" -e1 2>/dev/null || return 1; done; }
perl_ok || have_all=0   # perl modules gone: (re)install the package's Depends
if [ "$have_all" = 0 ] || [ "$(cat "$stamp" 2>/dev/null)" != "$ver" ]; then
  say "fetching $PKG=$ver into $CACHE"
  mkdir -p "$CACHE"
  deb=$(ls "$CACHE/${PKG}_${ver//:/%3a}_"*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    rm -f "$CACHE/${PKG}_"*.deb
    # apt-get download works in the current directory; _apt cannot write to a
    # root-owned dir and then downloads unsandboxed (harmless warning, in the log)
    (cd "$CACHE" && apt_run apt-get download -q "$PKG=$ver") \
      || die "apt-get download $PKG=$ver failed"
    deb=$(ls "$CACHE/${PKG}_"*.deb 2>/dev/null | head -1 || true)
    [ -n "$deb" ] || die "apt-get download left no $PKG .deb in $CACHE"
  fi

  # perl dependencies from the package's own Depends (libslurm-perl,
  # libslurmdb-perl, libswitch-perl, perl, slurm-client): first alternative,
  # without version or :any qualifier.
  deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' \
         | sed -e 's/|.*//' -e 's/(.*)//' -e 's/:any//' -e 's/[[:space:]]//g' | grep -v '^$')
  missing=()
  for p in $deps; do installed "$p" || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt_run apt-get install -y -q --no-install-recommends "${missing[@]}" \
      || die "apt-get install ${missing[*]} failed"
  fi

  say "unpacking $deb into $PREFIX/bin"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  dpkg-deb -x "$deb" "$tmp/x" || die "dpkg-deb -x $deb failed"
  mkdir -p "$PREFIX/bin"
  for b in "${bins[@]}"; do
    [ -f "$tmp/x/usr/bin/$b" ] || die "$b missing from $deb"
    sed -e "s#\${FindBin::Bin}/\\(sbatch\\|salloc\\|srun\\)#$sbin/\\1#g" "$tmp/x/usr/bin/$b" >"$tmp/$b"
    ! grep -q 'FindBin::Bin}/' "$tmp/$b" || die "$b: could not patch its \${FindBin::Bin} paths"
    chmod 755 "$tmp/$b"
    mv -f "$tmp/$b" "$PREFIX/bin/.$b.new" && mv -f "$PREFIX/bin/.$b.new" "$PREFIX/bin/$b"   # atomic for running tests
  done
  echo "$ver" >"$stamp"
fi
perl_ok || die "perl modules Slurm/Slurmdb/Switch do not load (libslurm-perl, libslurmdb-perl, libswitch-perl)"

# ---------------------------------------------------------------- spank_pbs
# Debian's /etc/slurm/plugstack.conf includes plugstack.conf.d/*.conf.
spank=$(dpkg -L slurm-wlm-basic-plugins 2>/dev/null | grep '/spank_pbs\.so$' | head -1 || true)
[ -n "$spank" ] && [ -e "$spank" ] || die "spank_pbs.so not found (slurm-wlm-basic-plugins)"
if [ ! -e /etc/slurm/plugstack.conf ]; then
  echo "include /etc/slurm/plugstack.conf.d/*.conf" >/etc/slurm/plugstack.conf
fi
grep -q 'plugstack.conf.d' /etc/slurm/plugstack.conf \
  || die "/etc/slurm/plugstack.conf does not include plugstack.conf.d/*.conf"
line="optional $spank"
if [ "$(cat "$PLUG" 2>/dev/null)" != "$line" ]; then
  say "enabling spank_pbs"
  mkdir -p "$(dirname "$PLUG")"
  echo "$line" >"$PLUG"
  # No slurmd restart needed: Slurm 22.05 reads plugstack.conf for every job
  # step (checked: adding/removing pbs.conf under a running slurmd takes
  # effect with the next job), and slurmctld never loads spank plugins.
fi

# ---------------------------------------------------------------- smoke test
# the private qsub prints a bare numeric id; the job sees PBS_JOBID (spank_pbs);
# the private qstat -f reports job_state = C once it ended (if MinJobAge has
# not purged it already).
if [ "${TORQUE_WRAPPERS_SMOKE:-1}" = 1 ]; then
  d=$STATE/torque-smoke; mkdir -p "$d"; rm -f "$d/t.out"
  printf '#!/bin/sh\necho "$PBS_JOBID"\n' >"$d/t.sh"
  export PATH="$PREFIX/bin:$PATH"
  [ "$(command -v qsub)" = "$PREFIX/bin/qsub" ] || die "PATH lookup of qsub gives $(command -v qsub)"
  id=$(cd "$d" && timeout 30 qsub -o "$d/t.out" "$d/t.sh" 2>&1) || die "qsub failed: $id"
  [[ "$id" =~ ^[0-9]+$ ]] || die "qsub printed: $id"
  st=
  for _ in $(seq 150); do   # 30 s
    if ! st=$(timeout 10 qstat -f "$id" 2>&1); then
      scontrol show job "$id" >/dev/null 2>&1 || break   # already purged (low MinJobAge)
    fi
    grep -q 'job_state = C' <<<"$st" && [ -s "$d/t.out" ] && break
    sleep 0.2
  done
  out=$(cat "$d/t.out" 2>/dev/null || true)
  [ "$out" = "$id" ] || die "torque smoke job $id: output '$out' (want the job id from PBS_JOBID); qstat -f: $st"
fi
exit 0
