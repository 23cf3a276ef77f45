"""Plain-text views of a run for the terminal: the accuracy matrix and the headline metrics."""
from __future__ import annotations

import math

import numpy as np

from clbench import metrics


def format_matrix(matrix: np.ndarray) -> str:
    """The accuracy matrix in percent: a row per training step (row 0 = untrained), a column per task."""
    n_tasks = matrix.shape[1]
    header = f"{'':>10}" + "".join(f"{'task ' + str(j + 1):>9}" for j in range(n_tasks))
    lines = [header]
    for i, row in enumerate(matrix):
        label = "untrained" if i == 0 else f"after {i}"
        lines.append(f"{label:>10}" + "".join(f"{100 * v:9.1f}" for v in row))
    return "\n".join(lines)


def format_metrics(values: dict[str, float | None]) -> str:
    """`name value` pairs in percent; None (undefined in this protocol) shows as n/a."""
    parts = []
    for name, value in values.items():
        if value is None:
            parts.append(f"{name} n/a")
        elif math.isnan(value):
            parts.append(f"{name} nan")
        else:
            parts.append(f"{name} {100 * value:.1f}")
    return "  ".join(parts)


def format_run(record: dict, rows: list[dict], matrix: np.ndarray) -> str:
    config = record["config"]
    scenario = config["scenario"]
    protocol = scenario["protocol"]
    train = sum({r["after_task"]: r["train_seconds"] for r in rows}.values())
    evaluate = sum({r["after_task"]: r["eval_seconds"] for r in rows}.values())
    lines = [
        f"{config['learner']['name']} on {scenario['name']} ({protocol}), seed {config['seed']}, run {record['run_id']}",
        "accuracy (%) on each task (columns) after training on each task in turn (rows):",
        format_matrix(matrix),
        format_metrics(metrics.headline(matrix, protocol)) + ("   (fwt is not defined in class_il)" if protocol == "class_il" else ""),
        f"time: training {train:.2f} s, evaluation {evaluate:.2f} s",
    ]
    return "\n".join(lines)
