#!/usr/bin/env bash
# browser-up.sh - install Debian's chromium for the dashboard's browser tests
# (tests/test_ui.py, marker `browser`). Playwright for Python (a test dependency)
# drives this system browser through executable_path: no step downloads a browser.
# Idempotent and quiet on success; on failure prints "browser-up: ERROR: ..." and
# exits 1. Knob: JOBBRIDGE_CHROMIUM (default /usr/bin/chromium) skips the install
# when it names a browser that exists.
set -euo pipefail
chromium=${JOBBRIDGE_CHROMIUM:-/usr/bin/chromium}
log=${TMPDIR:-/tmp}/jobbridge-browser-up.log
die() { echo "browser-up: ERROR: $*" >&2; exit 1; }
[ -x "$chromium" ] && exit 0
[ "$(id -u)" = 0 ] || die "$chromium is missing and installing it needs root (apt-get install chromium)"
export DEBIAN_FRONTEND=noninteractive
packages=(chromium fonts-dejavu-core)   # fonts: the screenshots' text
if ! apt-get install -y -q "${packages[@]}" >"$log" 2>&1; then
  apt-get update -q >>"$log" 2>&1 || true
  apt-get install -y -q "${packages[@]}" >>"$log" 2>&1 || die "apt-get install ${packages[*]} failed (see $log)"
fi
[ -x "$chromium" ] || die "chromium installed but $chromium is not there"
