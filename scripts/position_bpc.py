"""Bits per character by position in the context window, for stored runs on a text stream: how
well a learner, trained through every domain, predicts the t-th byte of a held-out window from the
t - 1 bytes before it. A model that learns in context (Hope-LM's in-context levels and memories)
should gain along the window; the analogue of the per-position loss figure of the Nested Learning
paper.

    .venv/bin/python scripts/position_bpc.py baselines/hope-lm/*-s0-* --out position-bpc.png

Each run is replayed from its run.json (it costs what it cost when recorded) and must reproduce
its stored bpc matrix within `--tolerance`; the learner as it stands after the last domain then
predicts every domain's held-out windows, and each position's next-byte cross-entropy (bits) is
averaged over windows and domains. Prints the curve in buckets of positions, writes the curves
to a CSV (one row per run, domain and position) beside the figure, one line per run.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from clbench.results import read_run
from clbench.rollback import max_difference, replay_with_snapshots
from clbench.runner import bits_by_position

BUCKETS = ((1, 8), (9, 16), (17, 32), (33, 64), (65, 128), (129, 256), (257, 512))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run directories (run.json + rows.csv) on a text stream")
    parser.add_argument("--out", type=Path, default=Path("position-bpc.png"), help="the figure (a .csv is written beside it)")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="largest bpc difference accepted between the replay and the stored matrix (default 0.01)")
    options = parser.parse_args()
    for run_dir in options.runs:
        if not (run_dir / "run.json").is_file():
            sys.exit(f"error: {run_dir} is not a run directory (no run.json)")
    torch.set_num_threads(1)
    curves: dict[str, torch.Tensor] = {}   # label -> bpc by position, mean over the domains
    rows = []
    for run_dir in options.runs:
        record, stored = read_run(run_dir)
        config = record["config"]
        if "bpc" not in stored[0]:
            sys.exit(f"error: {run_dir} is not a run on a text stream (its rows have no bpc)")
        label = f"{config['learner']['name']} s{config['seed']}"
        print(f"replaying {run_dir.name} ({label}) ...", flush=True)
        replayed = replay_with_snapshots(config)
        diff = max_difference(replayed.rows, stored)
        if diff > options.tolerance:
            sys.exit(f"error: the replay of {run_dir} differs from its stored bpc by {diff:.4f} "
                     f"(> --tolerance {options.tolerance})")
        per_domain = []
        for task in replayed.scenario:
            bits = bits_by_position(replayed.learner, task)
            per_domain.append(bits)
            rows += [{"run": run_dir.name, "label": label, "domain": task.task_id + 1, "position": t + 1,
                      "bpc": float(b)} for t, b in enumerate(bits)]
        curves[label] = mean = torch.stack(per_domain).mean(0)
        cells = "  ".join(f"{a}-{b}: {float(mean[a - 1:b].mean()):.3f}" for a, b in BUCKETS if a <= len(mean))
        print(f"  replay matches (largest difference {diff:.2e}); bpc by position, mean over domains: {cells}")
    options.out.parent.mkdir(parents=True, exist_ok=True)
    with open(options.out.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4))
    for label, mean in curves.items():
        axes.plot(range(1, len(mean) + 1), mean.numpy(), label=label)
    axes.set_xlabel("position in the window (bytes read before it + 1)")
    axes.set_ylabel("bits per character, after the last domain")
    axes.set_xscale("log", base=2)
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(options.out, dpi=120)
    print(f"wrote {options.out} and {options.out.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
