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
$pip install --quiet -e ".[test,report]"
echo "$want" > "$stamp"
