#!/usr/bin/env bash
# One-time set-up, re-run only when this file or pyproject.toml changes: a virtual environment in
# .venv with clbench (editable) and its extras. Called by `make demo` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.clbench-setup
want=$(cat scripts/setup.sh pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up .venv (once; a few minutes on a fresh machine)" >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=".venv/bin/python -m pip"
$pip install --quiet --upgrade pip
# torch: any recent release works. 2.13.0 first, because on machines that keep a CPU build of it
# on local disk pip takes that one; elsewhere pip takes whatever build the index offers.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  $pip install --quiet "torch==2.13.0" || $pip install --quiet torch
fi
# ray: the optional Ray executor (clbench suite --executor ray), installed here so the tests cover it.
$pip install --quiet -e ".[test,report,ray]"
# Fashion-MNIST for the slow tests and the real benchmarks: the Debian package dataset-fashion-mnist
# puts the four IDX files in /usr/share/datasets/fashion-mnist, where clbench finds them. Optional:
# without it the Fashion-MNIST tests are skipped, so a failure here only warns.
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ ! -d "${CLBENCH_DATA:-$HOME/.cache/clbench}/fashion-mnist" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist, 31 MB)" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -q dataset-fashion-mnist || { apt-get update -q && apt-get install -y -q dataset-fashion-mnist; }; } \
      >/dev/null || echo "warning: could not install dataset-fashion-mnist; the Fashion-MNIST tests will be skipped" >&2
  else
    echo "note: Fashion-MNIST is not installed, so its tests will be skipped. On Debian, as root:" >&2
    echo "  apt-get install dataset-fashion-mnist" >&2
    echo "or without root: apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb fm &&" >&2
    echo "  mkdir -p ~/.cache/clbench && cp -r fm/usr/share/datasets/fashion-mnist ~/.cache/clbench/" >&2
  fi
fi
echo "$want" > "$stamp"
