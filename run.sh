#!/usr/bin/env bash
# KlikkFlow's two commands. Each sets up what is missing first (a venv with the pinned
# Python packages, the router's pinned npm packages, Debian packages when run as root):
#   ./run.sh up      start the whole platform on 127.0.0.1 (Ctrl-C stops it)
#   ./run.sh test    lint, then run the test suite (pytest arguments pass through)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${KLIKKFLOW_VENV:-$ROOT/.venv}

say() { printf '%s\n' "$*" >&2; }

find_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  say "error: Python 3.11 or newer not found (Debian: apt-get install python3 python3-venv)"
  exit 1
}

# Install Debian packages for the binaries that are missing: "binary:package" pairs.
need_debian() {
  local missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "error: missing ${missing[*]}: run 'sudo apt-get install ${missing[*]}' and try again"
    exit 1
  fi
}

setup_python() {
  local stamp="$VENV/.klikkflow-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then return; fi
  local python
  python=$(find_python)
  [ -x "$VENV/bin/python" ] || "$python" -m venv "$VENV"
  say "installing Python packages into $VENV ..."
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  touch "$stamp"
}

setup_router() {
  command -v node >/dev/null && command -v npm >/dev/null || {
    say "error: Node.js 20+ and npm are needed for the router (Debian: apt-get install nodejs npm)"
    exit 1
  }
  local stamp="router/node_modules/.klikkflow-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt router/package-lock.json ]; then return; fi
  say "installing the router (npm ci, about 40 s) ..."
  (cd router && npm ci --no-audit --no-fund --loglevel=error)
  touch "$stamp"
}

setup_test_idp() {
  # The OpenID Connect provider the SSO tests sign in against (npm oidc-provider).
  local stamp="tests/idp/node_modules/.klikkflow-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt tests/idp/package-lock.json ]; then return; fi
  (cd tests/idp && npm ci --no-audit --no-fund --loglevel=error)
  touch "$stamp"
}

command=${1:-}
shift || true
case "$command" in
  up)
    need_debian redis-server:redis-server xmlsec1:xmlsec1
    setup_python
    setup_router
    exec "$VENV/bin/klikkflow" up "$@"
    ;;
  test)
    need_debian redis-server:redis-server chromium:chromium xmlsec1:xmlsec1
    setup_python
    setup_router
    setup_test_idp
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy" --no-error-summary
    exec "$VENV/bin/pytest" "$@"
    ;;
  *)
    say "usage: ./run.sh up | ./run.sh test [pytest arguments]"
    exit 2
    ;;
esac
