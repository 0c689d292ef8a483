# scripts/venv.sh - source it with the pip extras to install: makes (or reuses) the
# venv $VENV (default .venv) and installs jobbridge into it, editable.
#   source scripts/venv.sh '.[test]'
VENV=$(realpath -m "${JOBBRIDGE_VENV:-.venv}")
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then   # Debian without python3-venv
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q python3-venv >/dev/null
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$1" 2>&1 \
  | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -c 'import jobbridge' || { echo "venv.sh: ERROR: installing jobbridge failed" >&2; exit 1; }
