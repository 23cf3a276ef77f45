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
# torch and torchvision: clbench itself works with any recent torch, but the avalanche extra needs a
# torchvision built for the installed torch. torch 2.14.1 with torchvision 0.29.1 is a verified pair
# (on machines that keep them on local disk pip takes those). With torch 2.13.0, pip picks a
# torchvision that fails at import ("operator torchvision::nms does not exist"), so an existing
# .venv is upgraded: the check is on the versions, not on importability alone. Elsewhere, where
# that pair cannot be had, pip takes whatever matching pair the index offers.
pair='import torch, torchvision; v = (torch.__version__.split("+")[0], torchvision.__version__.split("+")[0])'
if ! .venv/bin/python -c "$pair; assert v == ('2.14.1', '0.29.1'), v" 2>/dev/null; then
  $pip install --quiet "torch==2.14.1" "torchvision==0.29.1" \
    || .venv/bin/python -c "$pair" 2>/dev/null \
    || $pip install --quiet --upgrade torch torchvision
fi
# ray: the optional Ray executor (clbench suite --executor ray); avalanche: Avalanche strategies as
# learners (--learner avalanche:EWC). Both installed here so the tests cover them.
$pip install --quiet -e ".[test,report,ray,avalanche]"
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
# A C++ compiler for `hope`'s compile=true on the CPU (torch.compile's inductor builds C++ kernels).
# Optional like the above: without one, the test of compile=true is skipped.
if ! command -v g++ >/dev/null && ! command -v c++ >/dev/null && ! command -v clang++ >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing a C++ compiler (Debian package g++) for hope's compile=true" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -q g++ || { apt-get update -q && apt-get install -y -q g++; }; } \
      >/dev/null || echo "warning: could not install g++; the test of hope's compile=true will be skipped" >&2
  else
    echo "note: no C++ compiler, so hope's compile=true is unavailable and its test skipped (Debian: apt-get install g++)" >&2
  fi
fi
echo "$want" > "$stamp"
