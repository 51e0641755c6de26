#!/usr/bin/env bash
# Creates .venv and installs the toolkit with the app's dependencies; with --test also what the test
# suite needs (pytest, ruff, Playwright, and the system packages xvfb/xauth/chromium for the GUI tests).
# Each step says what it does; pip shows its downloads as it goes.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
case "${1:-}" in
  "") ;;
  --test) want_test=1 ;;
  *) echo "usage: bash scripts/install.sh [--test]" >&2; exit 2 ;;
esac
step() { printf '\n==> %s\n' "$*"; }

if [ "$want_test" = 1 ] && command -v apt-get >/dev/null 2>&1; then
  missing=""
  for pkg in xvfb xauth chromium; do dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"; done
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
    step "installing the system packages for the GUI tests:$missing (apt-get)..."
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
  fi
fi

if [ ! -x .venv/bin/python ]; then
  step "creating the virtual environment .venv..."
  python3 -m venv .venv
fi
PY=.venv/bin/python
step "updating pip..."
$PY -m pip install -q --upgrade pip
# The CPU build of torch, pinned: a newer or unpinned torch would pull several GB of CUDA packages.
if $PY -c "import torch" 2>/dev/null; then
  step "torch $($PY -c 'import torch; print(torch.__version__)') is already installed"
else
  step "installing torch 2.13.0 (CPU build, a few hundred MB)..."
  $PY -m pip install --progress-bar on "torch==2.13.0"
fi
extras="app"
[ "$want_test" = 1 ] && extras="app,test"
step "installing eg3d-toolkit (editable) with its dependencies and the extras [$extras]..."
$PY -m pip install --progress-bar on -e ".[$extras]"
if [ "$want_test" = 1 ]; then
  step "done: run the tests with .venv/bin/python -m pytest -q"
else
  step "done: the viewer is .venv/bin/eg3d-viewer, the web demo .venv/bin/eg3d-web, the command line .venv/bin/eg3d"
fi
