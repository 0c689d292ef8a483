#!/usr/bin/env bash
# sshd-up.sh - a "cluster" account reached over SSH on 127.0.0.1, for the tests of
# jobbridge's remote resources (docs/remote.md), without systemd.
#   - OpenSSH server and client from Debian (apt) if missing, and Debian's python3
#     with psutil: the interpreter the cluster account runs jobbridge with;
#   - the Unix user `jbcluster` (the cluster account): no password (key only), its
#     own home and jobbridge configuration (resources `localhost` and `slurm`);
#   - key pairs for the "laptop" (root): id_ed25519, and id_ed25519_prompt whose
#     passphrase is "jobbridge-passphrase"; a known_hosts file with both host keys;
#   - sshd #1 on 127.0.0.1:$SSH_CI_PORT, the cluster's login node: key login only,
#     user jbcluster only, its own host key, config, pid and log files;
#   - sshd #2 on 127.0.0.1:$SSH_CI_JUMP_PORT, a jump host (ProxyJump): it only
#     forwards to the login node (no shell);
#   - $SSH_CI_STATE/client/ssh_config: Host jb-cluster (direct) and jb-cluster-jump
#     (through the jump host), for `ssh -F` and `ssh_options = -F ...`.
# Idempotent (a warm run takes a few seconds: the smoke test logs in twice), quiet on success; on failure
# prints "sshd-up: ERROR: ..." with log tails and exits 1. The Debian package may
# start the system's own sshd on port 22 where an init system runs; this script
# neither needs nor touches it. Stop with sshd-down.sh.
#
# Environment knobs:
#   SSH_CI_PORT=2222        port of the login node's sshd
#   SSH_CI_JUMP_PORT=2223   port of the jump host's sshd
#   SSH_CI_USER=jbcluster   the cluster account
#   SSH_CI_STATE=DIR        keys, configs, logs (default /var/tmp/jobbridge-ssh)
#   SSH_CI_SMOKE=0          skip the final ssh smoke test (direct and via the jump host)
#   VERBOSE=1               show what is being done
set -euo pipefail

STATE=${SSH_CI_STATE:-/var/tmp/jobbridge-ssh}
PORT=${SSH_CI_PORT:-2222}
JUMP_PORT=${SSH_CI_JUMP_PORT:-2223}
CUSER=${SSH_CI_USER:-jbcluster}
CLUSTER_PYTHON=/usr/bin/python3
PASSPHRASE=jobbridge-passphrase

say() { [ "${VERBOSE:-0}" = 1 ] && echo "sshd-up: [$(date +%T.%3N)] $*" >&2 || true; }
die() {
  echo "sshd-up: ERROR: $*" >&2
  for f in "$STATE/cluster/sshd.log" "$STATE/jump/sshd.log" "$STATE/apt.log"; do
    [ -s "$f" ] && { echo "--- tail $f" >&2; tail -n 15 "$f" >&2; }
  done
  exit 1
}
[ "$(id -u)" = 0 ] || die "must run as root"
for v in PORT JUMP_PORT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done
[[ "$CUSER" =~ ^[a-z_][a-z0-9_-]*$ ]] || die "SSH_CI_USER must be a plain user name, got '$CUSER'"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- packages
install -d -m 0755 "$STATE"
PKGS=(openssh-server openssh-client python3-psutil)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$STATE/apt.log" 2>&1; then
    apt-get update -q >>"$STATE/apt.log" 2>&1 || true
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$STATE/apt.log" 2>&1 \
      || die "apt-get install ${missing[*]} failed"
  fi
fi
"$CLUSTER_PYTHON" -c 'import sys, psutil; assert sys.version_info >= (3, 11)' 2>/dev/null \
  || die "$CLUSTER_PYTHON (>= 3.11, with psutil) cannot run jobbridge for $CUSER"

# ---------------------------------------------------------------- the cluster account
if ! getent passwd "$CUSER" >/dev/null; then
  say "creating user $CUSER"
  useradd --create-home --shell /bin/bash "$CUSER" || die "useradd $CUSER failed"
fi
# '*': no password can match, yet the account is not "locked" (sshd without PAM
# refuses locked accounts, even for key logins)
[ "$(getent shadow "$CUSER" | cut -d: -f2)" = '*' ] || usermod -p '*' "$CUSER"
CHOME=$(getent passwd "$CUSER" | cut -d: -f6)
chmod 0755 "$CHOME"   # StrictModes: not group/world-writable

# ---------------------------------------------------------------- keys
install -d -m 0700 "$STATE/client" "$STATE/cluster" "$STATE/jump"
[ -s "$STATE/client/id_ed25519" ] \
  || ssh-keygen -q -t ed25519 -N '' -C "jobbridge-laptop" -f "$STATE/client/id_ed25519"
# a key that asks for its passphrase: how the tests make ssh prompt on a terminal
# (as a site's second factor would), once per master connection
[ -s "$STATE/client/id_ed25519_prompt" ] \
  || ssh-keygen -q -t ed25519 -N "$PASSPHRASE" -C "jobbridge-laptop-prompt" \
       -f "$STATE/client/id_ed25519_prompt"
for side in cluster jump; do
  [ -s "$STATE/$side/host_ed25519" ] \
    || ssh-keygen -q -t ed25519 -N '' -C "jobbridge-$side" -f "$STATE/$side/host_ed25519"
done
install -d -m 0700 -o "$CUSER" -g "$CUSER" "$CHOME/.ssh"
keys=$(cat "$STATE/client/id_ed25519.pub" "$STATE/client/id_ed25519_prompt.pub")
if [ "$(cat "$CHOME/.ssh/authorized_keys" 2>/dev/null)" != "$keys" ]; then
  printf '%s\n' "$keys" >"$CHOME/.ssh/authorized_keys"
  chown "$CUSER:$CUSER" "$CHOME/.ssh/authorized_keys"
  chmod 0600 "$CHOME/.ssh/authorized_keys"
fi
known="[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$STATE/cluster/host_ed25519.pub")
[127.0.0.1]:$JUMP_PORT $(cut -d' ' -f1,2 "$STATE/jump/host_ed25519.pub")"
[ "$(cat "$STATE/client/known_hosts" 2>/dev/null)" = "$known" ] \
  || printf '%s\n' "$known" >"$STATE/client/known_hosts"

# the cluster account's own jobbridge configuration: what `remote_resource` names
install -d -m 0700 -o "$CUSER" -g "$CUSER" "$CHOME/.config" "$CHOME/.config/jobbridge"
cfg="[localhost]
scheduler_type = local_basic

[slurm]
scheduler_type = slurm"
if [ "$(cat "$CHOME/.config/jobbridge/jobbridge.cfg" 2>/dev/null)" != "$cfg" ]; then
  printf '%s\n' "$cfg" >"$CHOME/.config/jobbridge/jobbridge.cfg"
  chown "$CUSER:$CUSER" "$CHOME/.config/jobbridge/jobbridge.cfg"
  chmod 0600 "$CHOME/.config/jobbridge/jobbridge.cfg"
fi

# ---------------------------------------------------------------- the two sshd
common="ListenAddress 127.0.0.1
AddressFamily inet
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
PermitEmptyPasswords no
UsePAM no
AllowUsers $CUSER
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
X11Forwarding no
PrintMotd no
LogLevel VERBOSE"
write_config() {  # SIDE PORT EXTRA: rewrite sshd_config if it changed; 0 if it did
  local want="Port $2
HostKey $STATE/$1/host_ed25519
PidFile $STATE/$1/sshd.pid
$common
$3"
  [ "$(cat "$STATE/$1/sshd_config" 2>/dev/null)" = "$want" ] && return 1
  printf '%s\n' "$want" >"$STATE/$1/sshd_config"
}
start_sshd() {  # SIDE PORT EXTRA
  local changed=0
  write_config "$1" "$2" "$3" && changed=1
  install -d -m 0755 /run/sshd   # privilege separation directory (sshd -t wants it too)
  local out
  out=$(/usr/sbin/sshd -t -f "$STATE/$1/sshd_config" 2>&1) \
    || die "sshd -t: bad $STATE/$1/sshd_config: $out"
  if alive "$STATE/$1/sshd.pid"; then
    [ $changed = 0 ] && return 0
    say "restarting the $1 sshd (config changed)"
    stop "$STATE/$1/sshd.pid" 5
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
    die "port $2 is taken by another program (set SSH_CI_PORT / SSH_CI_JUMP_PORT)"
  fi
  say "starting the $1 sshd on 127.0.0.1:$2"
  spawn /usr/sbin/sshd -f "$STATE/$1/sshd_config" -E "$STATE/$1/sshd.log"
  waitfor 10 alive "$STATE/$1/sshd.pid" || die "the $1 sshd did not start"
  waitfor 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$2" || die "the $1 sshd does not listen on $2"
}
start_sshd cluster "$PORT" "AllowTcpForwarding no
MaxSessions 20"
# the jump host: forwards to the login node, nothing else (ProxyJump uses ssh -W)
start_sshd jump "$JUMP_PORT" "AllowTcpForwarding yes
PermitOpen 127.0.0.1:$PORT
PermitTTY no
ForceCommand /bin/false"

# ---------------------------------------------------------------- client config
# ssh takes the first value it finds: the per-host Port and ProxyJump come first
client="# written by sshd-up.sh: ssh -F $STATE/client/ssh_config jb-cluster
Host jb-jump
  Port $JUMP_PORT
Host jb-cluster-jump
  ProxyJump jb-jump
Host jb-cluster jb-cluster-jump jb-jump
  HostName 127.0.0.1
  Port $PORT
  User $CUSER
  IdentityFile $STATE/client/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $STATE/client/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes"
[ "$(cat "$STATE/client/ssh_config" 2>/dev/null)" = "$client" ] \
  || printf '%s\n' "$client" >"$STATE/client/ssh_config"

# ---------------------------------------------------------------- smoke test
if [ "${SSH_CI_SMOKE:-1}" = 1 ]; then
  for host in jb-cluster jb-cluster-jump; do
    out=$(timeout 30 ssh -F "$STATE/client/ssh_config" -n "$host" \
          "$CLUSTER_PYTHON" -c "'import getpass, psutil; print(getpass.getuser())'" 2>&1) \
      || die "ssh $host failed: $out"
    [ "$out" = "$CUSER" ] || die "ssh $host: expected '$CUSER', got '$out'"
  done
fi
exit 0
