"""Run directories written with hand-made accuracy matrices, so that report numbers can be checked
against `clbench.metrics` on known values (used by test_report.py and test_plots.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from clbench.results import write_run

# The worked example of docs/metrics.md: T = 4, row 0 is the untrained learner.
EXAMPLE = np.array(
    [
        [0.10, 0.10, 0.10, 0.10],
        [0.90, 0.10, 0.12, 0.08],
        [0.70, 0.95, 0.11, 0.09],
        [0.75, 0.97, 0.92, 0.10],
        [0.60, 0.85, 0.95, 0.93],
    ]
)

# Bits per character (lower is better), T = 3: task 1 improves after task 2 (2.0 -> 1.9), then
# every task's bpc rises at the end. Expected metrics are computed by hand in test_metrics.py.
BPC_EXAMPLE = np.array(
    [
        [8.0, 8.0, 8.0],
        [2.0, 6.0, 7.0],
        [1.9, 1.8, 6.5],
        [3.0, 2.2, 1.5],
    ]
)


def make_config(learner: str = "ewc", seed: int = 0, protocol: str = "class_il", scenario: str = "split-toy",
                version: str = "0.1.0", n_tasks: int = 4, **fields) -> dict:
    return {
        "clbench_version": version,
        "scenario": {"name": scenario, "protocol": protocol, "builder": "split", "dataset": "toy", "n_tasks": n_tasks},
        "learner": {"name": learner, "class": f"tests.fake:{learner}", "fields": {"lr": 0.1, **fields},
                    "source_sha256": None},
        "seed": seed,
    }


def matrix_rows(matrix) -> list[dict]:
    matrix = np.asarray(matrix, dtype=float)
    return [{"after_task": i, "eval_task": j + 1, "accuracy": float(matrix[i, j]), "n_samples": 100,
             "train_seconds": 0.5 * (i > 0), "eval_seconds": 0.01}
            for i in range(matrix.shape[0]) for j in range(matrix.shape[1])]


def write(root: Path, matrix, status: str = "ok", extra: dict | None = None, **config) -> Path:
    rows = [] if status != "ok" else matrix_rows(matrix)
    return write_run(root, make_config(**config), rows, status=status, extra=extra)


def shifted(delta: float, matrix=EXAMPLE) -> np.ndarray:
    """The matrix with every trained row moved by `delta` (row 0, the untrained model, unchanged)."""
    out = np.array(matrix, dtype=float)
    out[1:] = np.clip(out[1:] + delta, 0, 1)
    return out


def three_learners(root: Path) -> Path:
    """Three learners on one class-IL scenario: ewc seeds 0-2, finetune seeds 0-1 (seed 2 failed),
    replay seed 0 only (seeds 1 and 2 never run)."""
    for seed, delta in enumerate((0.0, 0.02, -0.01)):
        write(root, shifted(delta), learner="ewc", seed=seed)
    forgetful = EXAMPLE.copy()
    forgetful[4, :3] = [0.05, 0.10, 0.20]
    for seed, delta in enumerate((0.0, 0.01)):
        write(root, shifted(delta, forgetful), learner="finetune", seed=seed)
    write(root, None, status="failed", extra={"error": "Traceback ...\nRuntimeError: out of memory"},
          learner="finetune", seed=2)
    write(root, shifted(0.03), learner="replay", seed=0)
    return root


def bpc_runs(matrices: dict[str, list], root: Path = Path("bpc-runs")) -> list:
    """In-memory stored runs of a text stream (measure bpc): {learner: [matrix per seed]}.

    The rows carry a `bpc` column, as text runs do; the matrix is set on the run directly, so the
    table and figure code is tested on its own (reading bpc rows from disk is tested with results)."""
    from clbench.aggregate import StoredRun
    from clbench.results import run_id

    runs = []
    for learner, per_seed in matrices.items():
        for seed, matrix in enumerate(per_seed):
            config = make_config(learner=learner, seed=seed, scenario="text-toy", n_tasks=3)
            config["scenario"]["measure"] = "bpc"
            rows = [{**row, "bpc": row.pop("accuracy")} for row in matrix_rows(matrix)]
            run = StoredRun(root / f"{learner}-{seed}", {"run_id": run_id(config), "status": "ok", "config": config},
                            rows)
            run.__dict__.update(matrix=np.asarray(matrix, dtype=float), problem=None)  # the cached properties
            runs.append(run)
    return runs
