"""Running a learner along a stream (`clbench.streams`) with anytime evaluation. No I/O.

A learner with `fit_batch(x, y, task_ids)` (and, for `SGDLearner` subclasses, `task_free = True`)
gets the stream batch by batch and never hears of a boundary. Any other learner needs
boundaries: it gets each segment of a stream that signals them as one task through `fit_task`,
and on a task-free stream it is an error. Every task is evaluated every `eval_every` steps and at
every segment end; the evaluations at segment ends are also the rows of the usual boundary matrix
(for a task-free stream, the points where each task's share of the stream is used up).

Besides the boundary rows, a run returns `anytime.csv` (step x evaluated task) and `loss.csv`
(the mean training loss over every `loss_every` steps) for the run directory.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from clbench.anytime import ANYTIME_FILE, LOSS_FILE
from clbench.errors import UsageError
from clbench.progress import report_step
from clbench.results import csv_text
from clbench.runner import (EVAL_BATCH_SIZE, RunResult, accuracy, peak_memory_mb, reset_peak_memory, seed_everything,
                            task_rows, timed)
from clbench.scenario import Scenario, Task
from clbench.streams import check_stream, plan_stream

ANYTIME_FIELDS = ("step", "samples", "task", "boundary", "eval_task", "accuracy", "n_samples")
LOSS_FIELDS = ("step", "loss")


def is_task_free(learner) -> bool:
    """Whether the learner trains batch by batch without boundaries (see the module docstring)."""
    return callable(getattr(learner, "fit_batch", None)) and getattr(learner, "task_free", True)


def _segment_task(scenario: Scenario, plan, s: int, lo: int, hi: int) -> Task:
    """Segment `s` (stream positions lo..hi) as one task for a boundary-aware learner."""
    tasks, index = plan.task[lo:hi], plan.index[lo:hi]
    xs = [scenario[int(t)].x_train[int(i)] for t, i in zip(tasks, index)]
    ys = [scenario[int(t)].y_train[int(i)] for t, i in zip(tasks, index)]
    classes = sorted({c for t in np.unique(tasks) for c in scenario[int(t)].classes})
    return Task(s, scenario.protocol, tuple(classes), torch.stack(xs), torch.stack(ys))


def evaluator(scenario: Scenario):
    """A function learner -> [(accuracy, n)] per task. Outside task_il, all test sets go through
    `predict` together (the same predictions as task by task, in fewer, larger calls), which keeps
    frequent anytime evaluation cheap on small test sets (benchmarks/anytime_cost.py)."""
    if scenario.protocol == "task_il":
        return lambda learner: [accuracy(learner, task) for task in scenario]
    x = torch.cat([t.x_test for t in scenario])
    y = torch.cat([t.y_test for t in scenario])
    sizes = [len(t.y_test) for t in scenario]

    @torch.no_grad()
    def evaluate(learner) -> list[tuple[float, int]]:
        pred = torch.cat([learner.predict(x[s:s + EVAL_BATCH_SIZE]).cpu().argmax(1)
                          for s in range(0, len(y), EVAL_BATCH_SIZE)])
        return [(int(c.sum()) / n, n) for c, n in zip((pred == y).split(sizes), sizes)]

    return evaluate


def run_stream(scenario: Scenario, learner, seed: int, progress=None):
    """Run `learner` along the stream that `scenario.config["stream"]` describes (everything seeded
    by `seed`); return a `RunResult` whose `files` hold the anytime and loss rows."""
    stream = check_stream(scenario.config["stream"], "scenario stream")
    seed_everything(seed)
    learner.setup(scenario.spec, seed)
    plan = plan_stream([len(t.y_train) for t in scenario], stream, seed)
    batched = is_task_free(learner)
    if not batched and not plan.signalled:
        raise UsageError(f"{type(learner).__name__} needs task boundaries (it has no fit_batch); the "
                         f"{plan.kind!r} stream signals none: use an online or blurry stream, or a task-free learner")
    task_ids_known = scenario.protocol == "task_il"
    x_all = [t.x_train for t in scenario]
    y_all = [t.y_train for t in scenario]
    rows: list[dict] = []
    anytime: list[dict] = []
    losses: list[dict] = []
    state = {"step": 0, "samples": 0, "task": 0}

    evaluate_all = evaluator(scenario)

    def evaluate(boundary: bool) -> list[tuple[float, int]]:
        results = evaluate_all(learner)
        anytime.extend({"step": state["step"], "samples": state["samples"], "task": state["task"],
                        "boundary": int(boundary), "eval_task": j + 1, "accuracy": acc, "n_samples": n}
                       for j, (acc, n) in enumerate(results))
        return results

    def boundary_row(after_task: int, train_seconds: float, memory: float) -> None:
        start = time.perf_counter()
        results = evaluate(boundary=True)
        new = task_rows(after_task, results, "accuracy", train_seconds, time.perf_counter() - start, memory)
        rows.extend(new)
        if progress is not None:
            progress(after_task, new)

    boundary_row(0, 0.0, peak_memory_mb())
    pending: list[float] = []
    lo = 0
    for s, hi in enumerate(plan.ends):
        reset_peak_memory()
        train_seconds = 0.0
        state["task"] = s + 1
        segment_steps = -(-(hi - lo) // stream["batch_size"])  # batches in this segment
        if not batched:
            _, train_seconds = timed(learner.fit_task, _segment_task(scenario, plan, s, lo, hi))
            state["step"] += segment_steps
            state["samples"] = hi
        else:
            for b in range(lo, hi, stream["batch_size"]):
                e = min(b + stream["batch_size"], hi)
                tasks, index = plan.task[b:e], plan.index[b:e]
                x = torch.stack([x_all[int(t)][int(i)] for t, i in zip(tasks, index)])
                y = torch.stack([y_all[int(t)][int(i)] for t, i in zip(tasks, index)])
                loss, seconds = timed(learner.fit_batch, x, y, torch.from_numpy(tasks) if task_ids_known else None)
                train_seconds += seconds
                state["step"] += 1
                state["samples"] = e
                report_step((b - lo) // stream["batch_size"] + 1, segment_steps)
                pending.append(float(loss) if loss is not None else float("nan"))
                if stream["loss_every"] and len(pending) == stream["loss_every"]:
                    losses.append({"step": state["step"], "loss": float(np.mean(pending))})
                    pending = []
                if stream["eval_every"] and state["step"] % stream["eval_every"] == 0 and e < hi:
                    evaluate(boundary=False)
        boundary_row(s + 1, train_seconds, peak_memory_mb())
        lo = hi
    if pending and stream["loss_every"]:
        losses.append({"step": state["step"], "loss": float(np.mean(pending))})
    files = {ANYTIME_FILE: csv_text(anytime, ANYTIME_FIELDS)}
    if losses:
        files[LOSS_FILE] = csv_text(losses, LOSS_FIELDS)
    return RunResult(rows, files)
