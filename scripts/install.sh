#!/usr/bin/env bash
# Creates .venv and installs the toolkit with the app's dependencies; with --test also what the test
# suite needs (pytest, ruff, Playwright, and the system packages xvfb/xauth/chromium for the GUI tests).
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ "$want_test" = 1 ] && command -v apt-get >/dev/null 2>&1; then
  missing=""
  for pkg in xvfb xauth chromium; do dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"; done
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
PY=.venv/bin/python
$PY -m pip install -q --upgrade pip >/dev/null
# The CPU build of torch; a newer or unpinned torch would pull several GB of CUDA packages.
$PY -c "import torch" 2>/dev/null || $PY -m pip install -q "torch==2.13.0"
extras="app"
[ "$want_test" = 1 ] && extras="app,test"
$PY -m pip install -q -e ".[$extras]"
