"""Runs on disk grouped honestly: by resolved config minus the seed, so that runs of different
clbench versions, learners, fields or scenarios are never averaged together. Metrics are
computed per run from its matrix, then summarised over seeds as mean ± SEM with n.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from clbench import metrics
from clbench.results import RUN_FILE, matrix_from_rows, read_run


@dataclass
class StoredRun:
    path: Path
    record: dict[str, Any]
    rows: list[dict]

    @property
    def config(self) -> dict[str, Any]:
        return self.record["config"]

    @property
    def ok(self) -> bool:
        return self.record.get("status", "ok") == "ok"

    @property
    def matrix(self) -> np.ndarray:
        return matrix_from_rows(self.rows)


@dataclass
class Group:
    """Runs that differ only by seed, with per-metric values over those seeds."""

    key: str
    config: dict[str, Any]
    runs: list[StoredRun] = field(default_factory=list)

    @property
    def learner(self) -> str:
        return self.config["learner"]["name"]

    @property
    def scenario(self) -> str:
        return self.config["scenario"]["name"]

    @property
    def protocol(self) -> str:
        return self.config["scenario"]["protocol"]

    @property
    def seeds(self) -> list[int]:
        return sorted(r.config["seed"] for r in self.runs)

    def values(self, metric: str) -> list[float]:
        """The metric of every run in the group (empty if undefined in this protocol)."""
        out = []
        for run in self.runs:
            value = metrics.compute(run.matrix, [metric], self.protocol)[metric]
            if value is not None:
                out.append(value)
        return out


def load_runs(root: Path | Iterable[Path]) -> list[StoredRun]:
    """Every run directory (a folder holding run.json) under `root`, finished or failed."""
    roots = [Path(root)] if isinstance(root, (str, Path)) else [Path(r) for r in root]
    runs = []
    for base in roots:
        for run_file in sorted(base.rglob(RUN_FILE)):
            if any(part.startswith(".tmp-") or part.startswith(".old-") for part in run_file.parts):
                continue
            record, rows = read_run(run_file.parent) if (run_file.parent / "rows.csv").exists() else (
                json.loads(run_file.read_text()), [])
            runs.append(StoredRun(run_file.parent, record, rows))
    return runs


def group_key(config: dict[str, Any]) -> str:
    without_seed = {k: v for k, v in config.items() if k != "seed"}
    return json.dumps(without_seed, sort_keys=True)


def group_runs(runs: Iterable[StoredRun]) -> list[Group]:
    """Finished runs grouped by config minus seed, in order of scenario, protocol, learner."""
    groups: dict[str, Group] = {}
    for run in runs:
        if not run.ok:
            continue
        key = group_key(run.config)
        groups.setdefault(key, Group(key, {k: v for k, v in run.config.items() if k != "seed"})).runs.append(run)
    return sorted(groups.values(), key=lambda g: (g.scenario, g.protocol, g.learner, g.key))


def mean_sem(values: list[float]) -> tuple[float, float, int]:
    """Mean, standard error of the mean (sample SD / sqrt(n); NaN for n = 1) and n."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(np.mean(values))
    sem = float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return mean, sem, n


def distinguishing_fields(groups: list[Group]) -> dict[str, str]:
    """A short label per group: the learner name plus the fields that differ between groups
    sharing that learner name, so sweeps of one learner stay apart in a table."""
    by_name: dict[tuple[str, str, str], list[Group]] = {}
    for g in groups:
        by_name.setdefault((g.scenario, g.protocol, g.learner), []).append(g)
    labels = {}
    for same in by_name.values():
        if len(same) == 1:
            labels[same[0].key] = same[0].learner
            continue
        flat = [_flatten(g.config) for g in same]
        differing = sorted(k for k in set().union(*flat) if len({json.dumps(f.get(k)) for f in flat}) > 1)
        for g, f in zip(same, flat):
            detail = ", ".join(f"{k.split('.')[-1]}={f.get(k)}" for k in differing)
            labels[g.key] = f"{g.learner} ({detail})" if detail else g.learner
    return labels


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def format_table(groups: list[Group], names: tuple[str, ...] = ("acc", "forgetting", "bwt", "learning_acc")) -> str:
    """A Markdown table per scenario and protocol: learners × metrics, mean ± SEM in percent, with n."""
    labels = distinguishing_fields(groups)
    blocks, current = [], None
    for g in groups:
        if (g.scenario, g.protocol) != current:
            current = (g.scenario, g.protocol)
            blocks.append(f"\n{g.scenario} ({g.protocol}); mean ± SEM over seeds, in %; "
                          f"forgetting after Chaudhry et al. 2018, bwt after Lopez-Paz & Ranzato 2017\n")
            blocks.append("| learner | n | " + " | ".join(names) + " |")
            blocks.append("|---|---|" + "---|" * len(names))
        cells = []
        n = len(g.runs)
        for name in names:
            mean, sem, k = mean_sem(g.values(name))
            cells.append("n/a" if k == 0 else f"{100 * mean:.1f} ± {100 * sem:.1f}" if k > 1 else f"{100 * mean:.1f}")
        blocks.append(f"| {labels[g.key]} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(blocks).strip()
