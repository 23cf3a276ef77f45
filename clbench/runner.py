"""`run(scenario, learner, seed)`: train task by task and evaluate every task after every task.

Row 0 of the matrix is the untrained learner; row i follows training on task i. Every task is
evaluated at every row, future ones included (forward transfer needs them). The measure is
computed here from the learner's logits, so learners never write evaluation code: accuracy, or
for text streams (scenario measure `bpc`) bits per character. In `task_il` the logits are
restricted to the evaluated task's output units. No I/O.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from clbench.learner import Learner
from clbench.scenario import Scenario, Task

EVAL_BATCH_SIZE = 1024
EVAL_SEQUENCES = 64  # sequences per predict call when measuring bits per character


@dataclass
class RunResult:
    """Tidy rows, one per (after_task, eval_task), with accuracy, sample count, timings and peak
    memory; `files` are further tables for the run directory (a stream's anytime rows)."""

    rows: list[dict]
    files: dict[str, str] = field(default_factory=dict)

    @property
    def n_tasks(self) -> int:
        return max(r["eval_task"] for r in self.rows)

    @property
    def matrix(self) -> np.ndarray:
        from clbench.results import matrix_from_rows

        return matrix_from_rows(self.rows)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fit: Callable, *args) -> tuple[Any, float]:
    """(what `fit(*args)` returns, its wall-clock seconds, GPU work included)."""
    _sync()
    start = time.perf_counter()
    out = fit(*args)
    _sync()
    return out, time.perf_counter() - start


def reset_peak_memory() -> None:
    """Start a new peak: the CUDA allocator's peak, and the process's peak resident set (Linux:
    writing 5 to /proc/self/clear_refs resets VmHWM)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_memory_mb() -> float:
    """The peak since `reset_peak_memory`: GPU allocator bytes when a GPU is in use, else the peak
    resident memory of the process (VmHWM; where /proc is missing, ru_maxrss since start)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def task_rows(after_task: int, results: list[tuple[float, int]], measure: str, train_seconds: float,
              eval_seconds: float, memory: float) -> list[dict]:
    """The tidy rows of one row of the matrix: `results` holds (value, n) per evaluated task."""
    return [{"after_task": after_task, "eval_task": j + 1, measure: value, "n_samples": n,
             "train_seconds": train_seconds, "eval_seconds": eval_seconds, "peak_memory_mb": memory}
            for j, (value, n) in enumerate(results)]


@torch.no_grad()
def accuracy(learner: Learner, task: Task) -> tuple[float, int]:
    """Fraction of the task's test samples whose arg-max logit is the label (task_il: within the task's units)."""
    units = torch.tensor(task.classes) if task.protocol == "task_il" else None
    correct = 0
    for start in range(0, len(task.y_test), EVAL_BATCH_SIZE):
        x = task.x_test[start:start + EVAL_BATCH_SIZE]
        y = task.y_test[start:start + EVAL_BATCH_SIZE]
        logits = learner.predict(x, task_id=task.known_task_id).cpu()
        if units is not None:
            pred = units[logits[:, units].argmax(1)]
        else:
            pred = logits.argmax(1)
        correct += int((pred == y).sum())
    return correct / len(task.y_test), len(task.y_test)


def held_out_logits(learner: Learner, task: Task):
    """(next-token logits, targets) of the task's held-out windows, `EVAL_SEQUENCES` at a time.
    `predict(x)` must give logits of shape (B, T, vocabulary) where `logits[:, t]` predicts `y[:, t]`,
    the byte after `x[:, t]`."""
    for start in range(0, len(task.y_test), EVAL_SEQUENCES):
        x = task.x_test[start:start + EVAL_SEQUENCES]
        y = task.y_test[start:start + EVAL_SEQUENCES]
        logits = learner.predict(x, task_id=task.known_task_id).cpu()
        if logits.shape[:2] != y.shape or logits.dim() != 3:
            raise ValueError(f"a text stream needs next-token logits of shape (batch, context, vocabulary) = "
                             f"({len(y)}, {y.shape[1]}, V), got {tuple(logits.shape)}")
        yield logits, y


@torch.no_grad()
def bits_per_character(learner: Learner, task: Task) -> tuple[float, int]:
    """Mean next-byte cross-entropy in bits over every predicted byte of the task's held-out windows,
    and the number of predicted bytes (`held_out_logits`)."""
    total, count = 0.0, 0
    for logits, y in held_out_logits(learner, task):
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), y.reshape(-1),
                                                reduction="sum")
        total += float(nll)
        count += y.numel()
    return total / count / math.log(2), count


@torch.no_grad()
def bits_by_position(learner: Learner, task: Task) -> torch.Tensor:
    """`bits_per_character` split by position in the window: the mean next-byte cross-entropy in
    bits at each position t of the task's held-out windows, shape (context,). Whether a model
    predicts later bytes of a window better than earlier ones (learning in context) shows here."""
    total = torch.zeros(task.y_test.shape[1], dtype=torch.float64)
    for logits, y in held_out_logits(learner, task):
        total += torch.nn.functional.cross_entropy(logits.double().permute(0, 2, 1), y, reduction="none").sum(0)
    return total / len(task.y_test) / math.log(2)


MEASURES = {"accuracy": accuracy, "bpc": bits_per_character}  # a scenario's measure -> how the runner computes it


def evaluate(learner: Learner, task: Task, measure: str = "accuracy") -> tuple[float, int]:
    """(the measure's value, the number of samples or predicted bytes) of `learner` on `task`."""
    return MEASURES[measure](learner, task)


def run(scenario: Scenario, learner: Learner, seed: int,
        progress: Callable[[int, list[dict]], None] | None = None, checkpoint=None) -> RunResult:
    """Run `learner` through `scenario` with everything seeded by `seed`; return the tidy rows.

    `progress(after_task, rows_of_that_row)` is called after each row, for a live display (after
    a resume, once with every row restored). With a `clbench.checkpoint.Checkpoint` and a learner
    that has `state_dict`/`load_state_dict`, the state after each task but the last is saved, and
    a run that finds a checkpoint goes on from the task after it.
    A scenario with a `"stream"` config runs along that stream instead (`clbench.stream_run`).
    """
    from clbench.checkpoint import can_checkpoint, restore_rng
    from clbench.stream_run import run_stream

    if scenario.config.get("stream"):
        return run_stream(scenario, learner, seed, progress=progress)
    measure = scenario.config.get("measure", "accuracy")
    seed_everything(seed)
    learner.setup(scenario.spec, seed)
    rows: list[dict] = []
    first = 0
    saving = checkpoint is not None and can_checkpoint(learner)
    saved = checkpoint.load() if saving else None
    if saved is not None and saved.task < len(scenario):
        learner.load_state_dict(saved.learner)
        restore_rng(saved.rng)
        rows, first = list(saved.rows), saved.task + 1
        if progress is not None:
            progress(saved.task, rows[-len(scenario):])
    for after_task in range(first, len(scenario) + 1):
        train_seconds = 0.0
        reset_peak_memory()
        if after_task > 0:
            _, train_seconds = timed(learner.fit_task, scenario[after_task - 1].for_training())
        start = time.perf_counter()
        results = [evaluate(learner, task, measure) for task in scenario]
        eval_seconds = time.perf_counter() - start
        new = task_rows(after_task, results, measure, train_seconds, eval_seconds, peak_memory_mb())
        rows += new
        if saving and 0 < after_task < len(scenario):
            checkpoint.save(after_task, rows, learner.state_dict())
        if progress is not None:
            progress(after_task, new)
    return RunResult(rows)
