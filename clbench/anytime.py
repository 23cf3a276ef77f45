"""Anytime metrics: pure functions of a stream's anytime rows (`anytime.csv`), and reading them.

An anytime table A has one row per evaluation e (in stream order) and one column per task:
A[e, j] is the accuracy on task j at evaluation e. With it come, per evaluation, `step` (training
steps so far), `samples` (stream samples so far), `task` (the segment the stream is in: 0 before
training, k while training task k and at the boundary that ends it) and `boundary` (1 for the
evaluation at a segment end). Task j is *seen* at e when j <= task[e]; it is *old* when j < task[e]
(its segment is over). Definitions, citations and worked examples: docs/anytime.md.
"""
from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ANYTIME_FILE = "anytime.csv"
LOSS_FILE = "loss.csv"
DEFAULT_WINDOW = 50  # steps, for windowed forgetting


@dataclass(frozen=True)
class Anytime:
    """Evaluations of one run along its stream (see the module docstring)."""

    step: np.ndarray      # (E,)
    samples: np.ndarray   # (E,)
    task: np.ndarray      # (E,)
    boundary: np.ndarray  # (E,) bool
    acc: np.ndarray       # (E, T)

    @classmethod
    def from_rows(cls, rows: list[dict]) -> "Anytime":
        evals: dict[tuple[int, int], dict] = {}
        for r in rows:
            key = (int(r["step"]), int(r["boundary"]))
            evals.setdefault(key, {"samples": int(r["samples"]), "task": int(r["task"]), "acc": {}})
            evals[key]["acc"][int(r["eval_task"])] = float(r["accuracy"])
        keys = sorted(evals, key=lambda k: (k[0], -k[1]))  # at one step, the boundary evaluation first
        n_tasks = max(max(e["acc"]) for e in evals.values())
        acc = np.array([[evals[k]["acc"].get(j, np.nan) for j in range(1, n_tasks + 1)] for k in keys])
        return cls(np.array([k[0] for k in keys]), np.array([evals[k]["samples"] for k in keys]),
                   np.array([evals[k]["task"] for k in keys]), np.array([bool(k[1]) for k in keys]), acc)

    def seen_mean(self) -> np.ndarray:
        """Per evaluation, the mean accuracy over the tasks seen so far (NaN before training)."""
        return np.array([self.acc[e, :k].mean() if k else np.nan for e, k in enumerate(self.task)])


def aaa(a: Anytime) -> float:
    """Average anytime accuracy: the mean, over every evaluation after training started, of the
    mean accuracy on the tasks seen so far. Higher is better, range [0, 1].
    Caccia et al. 2022 (ICLR), "New insights on reducing abrupt representation change in online
    continual learning", §5; used by De Lange et al. 2023 as the anytime average."""
    values = a.seen_mean()[a.task > 0]
    return float(values.mean()) if len(values) else float("nan")


def a_auc(a: Anytime) -> float:
    """Area under the anytime accuracy curve, per stream sample: sum over evaluations e of
    f(e) * (samples[e] - samples[e-1]) / samples[last], where f is the mean accuracy on the tasks
    seen (Koh et al. 2022, ICLR, "Online continual learning on class incremental blurry task
    configuration with anytime inference", §3.2, A_AUC; divided by the stream length here so that
    it is in [0, 1]). Higher is better. It weighs evaluations by the samples between them, so it
    differs from AAA where evaluations are unevenly spaced."""
    f = a.seen_mean()
    keep = a.task > 0
    samples, f = a.samples[keep], f[keep]
    previous = np.concatenate([[0], samples[:-1]])
    total = samples[-1] if len(samples) else 0
    if total == 0:
        return float("nan")
    return float(np.sum(f * (samples - previous)) / total)


def min_acc(a: Anytime, upto: int | None = None) -> float:
    """Average minimum accuracy over the old tasks: (1/(k-1)) sum_{i<k} min_{e: task[e] > i} A[e, i],
    taken over evaluations up to index `upto` (default: all), where k is the task the stream is
    on there. Higher is better; NaN when no task is old yet. De Lange, van de Ven & Tuytelaars
    2023 (ICLR), §3.2 ("min-ACC"): the worst accuracy an old task falls to after it was learned."""
    end = len(a.task) if upto is None else upto + 1
    k = int(a.task[end - 1])
    if k < 2:
        return float("nan")
    mins = [np.min(a.acc[:end][a.task[:end] > i, i - 1]) for i in range(1, k)]
    return float(np.mean(mins))


def wc_acc(a: Anytime) -> float:
    """Worst-case accuracy at the end of the stream: (1/k) A[last, k] + (1 - 1/k) min-ACC, with k
    the last task. Higher is better. De Lange et al. 2023, §3.2 ("WC-ACC"): the current task's
    accuracy traded off against the worst that befell the old ones. With one task, A[last, 1]."""
    k = int(a.task[-1])
    current = float(a.acc[-1, k - 1])
    if k < 2:
        return current
    return current / k + (1 - 1 / k) * min_acc(a)


def windowed_forgetting(a: Anytime, window: int = DEFAULT_WINDOW) -> float:
    """Windowed forgetting WF^(window): per old task i, the largest drop A[m, i] - A[n, i] between
    two evaluations m < n at most `window` steps apart, both at or after the boundary that ends
    task i; averaged over the old tasks at the end of the stream (0 when the accuracy never falls).
    Lower is better. De Lange et al. 2023, §3.2 ("WF^Δ", windowed forgetting), with Δ in steps."""
    k = int(a.task[-1])
    if k < 2:
        return float("nan")
    drops = []
    for i in range(1, k):
        after = (a.task > i) | ((a.task == i) & a.boundary)
        steps, acc = a.step[after], a.acc[after, i - 1]
        worst = 0.0
        for m in range(len(steps)):
            near = (steps > steps[m]) & (steps - steps[m] <= window)
            near[:m + 1] = False
            if near.any():
                worst = max(worst, float(acc[m] - acc[near].min()))
        drops.append(worst)
    return float(np.mean(drops))


def switch_steps(a: Anytime) -> list[int]:
    """Steps of the boundaries between tasks (not the start, not the end)."""
    return [int(s) for s, k, b in zip(a.step, a.task, a.boundary) if b and 0 < k < a.task.max()]


def gap_depth(a: Anytime) -> float:
    """The stability gap of one run: per switch, old-task accuracy at the switch minus its lowest
    value before the next boundary, averaged over the switches (accuracy fraction). Lower is
    better. De Lange et al. 2023 (docs/anytime.md)."""
    switches = switch_steps(a)
    ends = switches[1:] + [int(a.step.max())]
    depths = []
    for n_old, (s, end) in enumerate(zip(switches, ends), start=1):
        old = a.acc[:, :n_old].mean(axis=1)
        at_switch = old[(a.step == s) & a.boundary][0]
        inside = (a.step > s) & (a.step <= end)
        depths.append(at_switch - old[inside].min() if inside.any() else np.nan)
    return float(np.nanmean(depths)) if depths else float("nan")


@dataclass(frozen=True)
class AnytimeMetric:
    """An anytime metric's facts; everything that shows one (the anytime table, `clbench run`) reads its record."""

    name: str
    function: Callable[[Anytime], float]
    label: str  # in tables and on the terminal
    higher_is_better: bool = True

    @property
    def arrow(self) -> str:
        return "\u2191" if self.higher_is_better else "\u2193"


ANYTIME_METRICS: dict[str, AnytimeMetric] = {m.name: m for m in [
    AnytimeMetric("aaa", aaa, "AAA"),
    AnytimeMetric("a_auc", a_auc, "A_AUC"),
    AnytimeMetric("min_acc", min_acc, "min-ACC"),
    AnytimeMetric("wc_acc", wc_acc, "WC-ACC"),
    AnytimeMetric("wf", windowed_forgetting, f"WF^({DEFAULT_WINDOW})", higher_is_better=False),
]}


def summary(a: Anytime) -> dict[str, float]:
    """Every anytime metric of a run, by name."""
    return {name: m.function(a) for name, m in ANYTIME_METRICS.items()}


def read_table(path: Path, name: str) -> list[dict]:
    """The rows of a run directory's CSV table `name` with numbers parsed; [] when absent."""
    path = Path(path) / name
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [{k: float(v) if k in ("accuracy", "loss") else int(v) for k, v in row.items()}
                for row in csv.DictReader(fh)]


def read_anytime(run_dir: Path) -> Anytime | None:
    """The anytime evaluations stored in a run directory, or None for a boundary-only run."""
    rows = read_table(run_dir, ANYTIME_FILE)
    return Anytime.from_rows(rows) if rows else None
