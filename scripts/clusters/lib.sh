# lib.sh - daemon helpers shared by the cluster scripts (source it; bash).

# alive PIDFILE: true if the pid in PIDFILE is a live (non-zombie) daemon of ours.
# (PID 1 in containers may be slow to reap, so kill -0 alone is not enough.)
alive() {
  local p; p=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$p" ] && [ -r "/proc/$p/stat" ] || return 1
  local st; st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || return 1
  [ "$st" != Z ] && [ "$st" != X ] || return 1
  case "$(cat "/proc/$p/comm" 2>/dev/null)" in   # guard against a reused pid
    slurm*|munged|mariadbd|mysqld|sge_*|sshd) return 0 ;; *) return 1 ;;
  esac
}
# stop PIDFILE [SECONDS]: SIGTERM, wait up to SECONDS (default 15; Grid Engine's
# qmaster shuts down in a controlled way in ~10 s), then SIGKILL.
stop() {
  alive "$1" || { rm -f "$1"; return 0; }
  local p; p=$(cat "$1"); kill "$p" 2>/dev/null || true
  for _ in $(seq $(( ${2:-15} * 5 ))); do alive "$1" || { rm -f "$1"; return 0; }; sleep 0.2; done
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
