"""Streams: the order in which a scenario's training samples reach a learner, in minibatches.

A boundary-free or online stream is a setting of a scenario (its config's `"stream"` table), not a
new kind of scenario, so every dataset, builder and protocol has one. Three kinds:

- `online`: one pass over the tasks in order, each task's samples shuffled, in small batches;
  boundaries are signalled (Aljundi, Kelchtermans & Tuytelaars 2019, "Task-free continual learning").
- `blurry`: as `online`, but a fraction `blur` of each task's samples is moved into the
  neighbouring tasks' segments (half to each side; the first and last tasks give all to their
  one neighbour); boundaries between segments are signalled (Koh et al. 2022, "Online continual
  learning on class incremental blurry task configuration with anytime inference").
- `gradual`: task-free; the task mixture changes smoothly. Each sample of task t gets the time
  t + u + width * z (u uniform in [0, 1), z standard normal) and the stream is all samples
  sorted by time, so around the nominal switch from t to t+1 both tasks are mixed over a span
  of about `width` tasks. No boundary is signalled (Lee et al. 2020 call it task-free; Moon et al.
  2023 use a similar periodic-Gaussian mixture).

The order is drawn from the run's seed, so a run is reproducible. A stream is a plan of sample
positions; the runner (`clbench.stream_run`) cuts it into batches and evaluates along it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clbench.errors import UsageError

STREAM_KINDS = ("online", "blurry", "gradual")
# Keys of a scenario's "stream" table, their defaults and what they mean.
STREAM_DEFAULTS: dict[str, Any] = {
    "kind": "online",      # online, blurry or gradual
    "batch_size": 10,      # samples per training step
    "passes": 1,           # passes over each segment (1 = online: every sample seen once)
    "blur": 0.1,           # blurry: fraction of each task's samples moved into neighbouring segments
    "width": 0.25,         # gradual: spread of a task's samples in time, in tasks (std of the noise)
    "eval_every": 10,      # anytime evaluation every this many steps (and at every boundary); 0 = boundaries only
    "loss_every": 5,       # training loss recorded as the mean over every this many steps
}


def check_stream(stream: Any, where: str = "stream") -> dict[str, Any]:
    """The stream table with defaults filled in, or a UsageError naming the bad key and what is valid."""
    if isinstance(stream, str):
        stream = {"kind": stream}
    if not isinstance(stream, dict):
        raise UsageError(f"{where}: must be a stream kind ({', '.join(STREAM_KINDS)}) or a table, got {stream!r}")
    unknown = sorted(set(stream) - set(STREAM_DEFAULTS))
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r} (valid: {', '.join(STREAM_DEFAULTS)})")
    out = {**STREAM_DEFAULTS, **stream}
    if out["kind"] not in STREAM_KINDS:
        raise UsageError(f"{where}.kind: {out['kind']!r} is not a stream kind (valid: {', '.join(STREAM_KINDS)})")
    for key in ("batch_size", "passes"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise UsageError(f"{where}.{key}: must be a positive integer, got {out[key]!r}")
    for key in ("eval_every", "loss_every"):
        if not isinstance(out[key], int) or out[key] < 0:
            raise UsageError(f"{where}.{key}: must be an integer >= 0, got {out[key]!r}")
    if not isinstance(out["blur"], (int, float)) or not 0 <= out["blur"] <= 1:
        raise UsageError(f"{where}.blur: must be a fraction in [0, 1], got {out['blur']!r}")
    if not isinstance(out["width"], (int, float)) or out["width"] < 0:
        raise UsageError(f"{where}.width: must be >= 0 (in tasks), got {out['width']!r}")
    return out


@dataclass(frozen=True)
class StreamPlan:
    """Where each stream position's sample comes from, and where its segments end.

    `task[p]`, `index[p]`: the task (0-based) and the index into that task's training data of the
    sample at position p. `segment[p]`: the segment it is trained in (the task the stream is on);
    `ends`: the position after each segment's last sample. `signalled` is False for task-free
    streams, whose `ends` are only the nominal points where each task's share is used up (the
    rows of the boundary matrix), never told to the learner.
    """

    kind: str
    task: np.ndarray
    index: np.ndarray
    segment: np.ndarray
    ends: tuple[int, ...]
    signalled: bool

    def __len__(self) -> int:
        return len(self.task)


def plan_stream(sizes: list[int], stream: dict[str, Any], seed: int) -> StreamPlan:
    """The stream over tasks with `sizes[t]` training samples each, drawn from `seed`."""
    stream = check_stream(stream)
    rng = np.random.default_rng([seed, 7919])  # its own stream of random numbers, not the learner's
    n_tasks = len(sizes)
    kind = stream["kind"]
    if kind == "gradual":
        task = np.concatenate([np.full(n, t) for t, n in enumerate(sizes)]).astype(np.int64)
        index = np.concatenate([np.arange(n) for n in sizes]).astype(np.int64)
        time = task + rng.random(len(task)) + stream["width"] * rng.standard_normal(len(task))
        order = np.argsort(time, kind="stable")
        task, index = task[order], index[order]
        ends = tuple(int(e) for e in np.cumsum(sizes))
        segment = np.searchsorted(np.asarray(ends), np.arange(len(task)), side="right")
        return StreamPlan(kind, task, index, segment.astype(np.int64), ends, signalled=False)
    members: list[list[tuple[int, int]]] = [[] for _ in range(n_tasks)]
    for t, n in enumerate(sizes):
        idx = rng.permutation(n)
        n_move = int(round(stream["blur"] * n)) if kind == "blurry" and n_tasks > 1 else 0
        moved, kept = idx[:n_move], idx[n_move:]
        members[t] += [(t, int(i)) for i in kept]
        if n_move:
            left = [] if t == 0 else moved[:n_move // 2] if t < n_tasks - 1 else moved
            right = moved[len(left):]
            members[t - 1 if t else t] += [(t, int(i)) for i in left]
            if t < n_tasks - 1:
                members[t + 1] += [(t, int(i)) for i in right]
    task, index, segment, ends = [], [], [], []
    for s, group in enumerate(members):
        for _ in range(stream["passes"]):  # each pass freshly shuffled
            group = [group[i] for i in rng.permutation(len(group))]
            task += [t for t, _ in group]
            index += [i for _, i in group]
            segment += [s] * len(group)
        ends.append(len(task))
    return StreamPlan(kind, np.asarray(task, dtype=np.int64), np.asarray(index, dtype=np.int64),
                      np.asarray(segment, dtype=np.int64), tuple(ends), signalled=True)
