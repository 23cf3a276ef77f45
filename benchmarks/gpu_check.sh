#!/usr/bin/env bash
# The GPU checks of the Hope issue, in one go, on a machine with a CUDA GPU and many cores:
#   - the Hope mechanism tests with the GPU visible (Hope's device "auto" picks CUDA),
#   - Hope's cost per step on the GPU and on one CPU core (benchmarks/hope_cost.py),
#   - scenarios/hope.toml on the CPU cores (device = "cpu" in the file), JOBS runs at a time,
#   - meanwhile, the same suite's split-digits Hope runs of seed 0 on the GPU, for the timing.
# Usage: benchmarks/gpu_check.sh OUTDIR [JOBS] [SUITE_SECONDS]; runs from the repository root with
# any python3 that has torch, typer, numpy and scikit-learn (PYTHONPATH is set to the checkout).
# The CPU runs go to results/hope as usual (so a second call resumes them); OUTDIR gets the logs,
# the GPU runs and a tarball of results/hope. With SKIP_GPU=1 only the CPU lane runs.
set -u
out=${1:?usage: benchmarks/gpu_check.sh OUTDIR [JOBS] [SUITE_SECONDS]}
jobs=${2:-15}
limit=${3:-480}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
cb="python3 -m clbench"
python3 - <<'PY' | tee "$out/machine.txt"
import os, platform, sys, torch
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"GPU: {name}; CPU: {cpu}, {os.cpu_count()} cores; torch {torch.__version__}; Python {platform.python_version()}")
PY
# the CPU lane: the whole suite, in the background
( start=$(date +%s)
  timeout "$limit" $cb suite scenarios/hope.toml --jobs "$jobs" --quiet > "$out/suite-cpu.txt" 2>&1
  echo "exit $? after $(( $(date +%s) - start )) s" >> "$out/suite-cpu.txt" ) &
lane=$!
# the GPU lane, on the remaining core
if [ "${SKIP_GPU:-0}" != 1 ]; then
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_hope.py 2>&1 | tail -n 5 | tee "$out/tests-gpu.txt"
timeout 90 python3 benchmarks/hope_cost.py --device cuda --rounds 5 2>&1 | tee "$out/cost-gpu.txt"
timeout 90 python3 benchmarks/hope_cost.py --device cpu --rounds 5 2>&1 | tee "$out/cost-cpu.txt"
timeout 150 $cb suite scenarios/hope.toml --seeds 0 --jobs 1 --quiet --results "$out/gpu" \
  --set 'learners.hope.device=cuda' --set 'learners.hope-cms-only.device=cuda' \
  --set 'learners.hope-one-level.device=cuda' --set 'learners.hope-attention.device=cuda' > "$out/suite-gpu.txt" 2>&1
tar czf "$out/gpu-runs.tgz" -C "$out" gpu && rm -rf "$out/gpu"
fi
wait $lane
tar czf "$out/hope-runs.tgz" results/hope
tail -n 3 "$out/suite-cpu.txt"
