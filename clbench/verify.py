"""Checking recorded results against the code as it is now (`clbench verify`).

A run id hashes the resolved config, which holds a user file learner's source hash and the
`code_version` a built-in learner declares, so a learner whose declared behaviour changed gets new
run ids. A change that forgot to bump the version would still reuse old runs silently; this is
the check that catches it: re-run the lowest seed of every recorded group and require the stored
matrix back exactly, naming each group whose results the code no longer reproduces.

Exact equality is only a fair test where the run was recorded: another processor or other package
versions round floating point differently. A group that differs there is `elsewhere`: not
reproduced, but not evidence against the code either, so it is not listed for re-recording.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clbench.aggregate import StoredRun, distinguishing_fields, flatten_config, group_runs
from clbench.data_arrays import MissingDataError
from clbench.errors import UsageError

NEEDS_RECORDING = ("differs", "stale", "failed")  # verdicts that mean: re-record this group
NOT_REPRODUCED = (*NEEDS_RECORDING, "elsewhere")    # verdicts that fail the check (exit code 1)


@dataclass
class Verdict:
    """What re-running one group's lowest seed (or every seed) found: `same`, `differs` (other
    numbers), `elsewhere` (other numbers, but recorded on another processor or with other package
    versions, so the difference may be rounding), `stale` (the code now resolves the config
    differently, e.g. a bumped code_version or changed data), `failed` (the re-run raised) or
    `skipped` (over the time limit, or its dataset is not on this machine)."""

    group: str
    seed: int
    run: Path
    verdict: str
    detail: str = ""
    seconds: float = 0.0
    n_seeds: int = 1                   # seeds re-run (the lowest first)

    @property
    def needs_recording(self) -> bool:
        return self.verdict in NEEDS_RECORDING

    @property
    def reproduced(self) -> bool:
        return self.verdict not in NOT_REPRODUCED

    def line(self) -> str:
        seeds = f"seed {self.seed}" if self.n_seeds == 1 else f"{self.n_seeds} seeds from {self.seed}"
        head = f"{self.verdict if self.reproduced else self.verdict.upper():<8} {self.group} ({seeds}"
        head += f", {self.seconds:.1f} s)" if self.seconds else ")"
        return head + (f": {self.detail}" if self.detail else "")


def recorded_seconds(run: StoredRun) -> float:
    """How long the run took when recorded: its record's wall time, else its rows' train + eval time."""
    seconds = run.record.get("seconds")
    if isinstance(seconds, (int, float)):
        return float(seconds)
    return float(sum(r["train_seconds"] + r["eval_seconds"] for r in run.rows))


def config_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The keys (dotted) whose values differ between two resolved configs, as "key: old → new";
    the clbench version is left out (it names the package release, not what a run computes)."""
    old, new = flatten_config(recorded), flatten_config(current)
    changes = []
    for key in sorted(set(old) | set(new)):
        if key == "clbench_version":
            continue
        before, after = (json.dumps(d[key], sort_keys=True) if key in d else "absent" for d in (old, new))
        if before != after:
            changes.append(f"{key}: {_cut(before)} → {_cut(after)}")
    return changes


def _cut(text: str) -> str:
    return text if len(text) <= 24 else text[:12] + "…"


def matrix_difference(recorded: np.ndarray, fresh: np.ndarray, config: dict[str, Any]) -> str | None:
    """None when the two matrices are equal to the last bit, else which cells differ and by how much."""
    from clbench.metrics import measure_of

    if recorded.shape != fresh.shape:
        return f"the matrix has shape {fresh.shape} now, {recorded.shape} recorded"
    unequal = recorded != fresh
    if not unequal.any():
        return None
    i, j = np.unravel_index(int(np.argmax(np.abs(recorded - fresh))), recorded.shape)
    measure = measure_of(config)
    show = lambda v: f"{measure.scale * v:.{measure.decimals + 2}f}"  # noqa: E731
    return (f"{int(unequal.sum())} of {unequal.size} cells differ, the largest R[{i},{j + 1}]: "
            f"{show(recorded[i, j])} recorded, {show(fresh[i, j])} now")


def environment_changes(record: dict[str, Any]) -> list[str]:
    """"torch 2.13.0 (now 2.14.1)" for every package (and the processor) that changed since the
    run was recorded; clbench itself is left out (its version names the release, not the kernels).
    A run recorded before clbench kept the processor counts as recorded on an unknown one."""
    from clbench.results import environment

    recorded = record.get("environment") or {}
    then = {**(recorded.get("versions") or {}), "cpu": recorded.get("cpu", "unknown")}
    here = environment()
    now = {**here["versions"], "cpu": here["cpu"]}
    return [f"{name} {then[name]} (now {now.get(name)})" for name in sorted(then)
            if name != "clbench" and then[name] != now.get(name)]


def resolve_again(label: str, run: StoredRun) -> tuple[dict[str, Any] | None, Verdict | None]:
    """(`run`'s config resolved by the code as it is now, None) or (None, a `stale` verdict when
    that differs from the recorded one: nothing needs to run to know the group is out of date)."""
    from clbench.configs import resolve

    config = run.config
    try:
        current = resolve(config["scenario"], config["learner"]["class"], config["learner"]["fields"],
                          config["seed"], where=str(run.path / "run.json"), name=config["learner"]["name"])
    except UsageError as err:
        return None, Verdict(label, run.seed, run.path, "stale", f"its config no longer resolves: {err}")
    changes = config_changes(config, current)
    if changes:
        more = f"; and {len(changes) - 3} more" if len(changes) > 3 else ""
        return None, Verdict(label, run.seed, run.path, "stale", "the code resolves its config differently: "
                             + "; ".join(changes[:3]) + more)
    return current, None


def rerun(label: str, runs: Sequence[StoredRun], currents: Sequence[dict[str, Any]], threads: int = 1) -> Verdict:
    """Run each resolved config here and compare its matrix with the recorded one. With more than
    one seed, a group that is not equal to the last bit also gets the recorded and fresh means of
    its final average (`acc`: accuracy, or bpc) and Welch's p between them: whether the table
    still holds where the bits do not."""
    import time

    from clbench.configs import execute
    from clbench.errors import one_line
    from clbench.executors import use_threads
    from clbench.results import matrix_from_rows

    use_threads(threads)
    first = runs[0]
    start = time.perf_counter()
    verdict = lambda kind, detail="": Verdict(label, first.seed, first.path, kind, detail,  # noqa: E731
                                              time.perf_counter() - start, len(runs))
    fresh, differences, moved = [], [], []
    for run, current in zip(runs, currents):
        try:
            rows = execute(current).rows
        except Exception as err:  # noqa: BLE001 - a re-run that raises is a verdict, not a crash
            # data that is not on this machine says nothing about the code: skipped, with how to get it
            return verdict("skipped" if isinstance(err, MissingDataError) else "failed",
                           f"seed {run.seed}: {one_line(err)}")
        fresh.append(matrix_from_rows(rows))
        difference = matrix_difference(run.matrix, fresh[-1], run.config)
        if difference is not None:
            differences.append(f"seed {run.seed}: {difference}" if len(runs) > 1 else difference)
            moved.append(environment_changes(run.record))
    if not differences:
        return verdict("same")
    detail = differences[0]
    if len(runs) > 1:
        detail = f"{len(differences)} of {len(runs)} seeds differ ({detail}); " + final_means(runs, fresh)
    if all(moved):                    # every differing seed was recorded in another environment
        changes = sorted({change for changes in moved for change in changes})
        return verdict("elsewhere", f"{detail}; recorded with {', '.join(changes)}")
    return verdict("differs", detail)


def final_means(runs: Sequence[StoredRun], fresh: Sequence[np.ndarray]) -> str:
    """"final acc 48.75 recorded, 50.39 now, Welch p = 0.44" over the seeds of one group."""
    from clbench import metrics
    from clbench.stats import welch

    measure = metrics.measure_of(runs[0].config)
    then = [metrics.acc(run.matrix) for run in runs]
    now = [metrics.acc(matrix) for matrix in fresh]
    show = lambda values: f"{measure.scale * float(np.mean(values)):.{measure.decimals}f}"  # noqa: E731
    p, why = welch(then, now)
    return f"final acc {show(then)} recorded, {show(now)} now, Welch p " + (f"= {p:.2f}" if p is not None else why)


def verify(folders: Sequence[Path | str], *, max_seconds: float | None = None,
           learners: Iterable[str] = (), threads: int = 1, all_seeds: bool = False,
           on_verdict: Callable[[Verdict], None] | None = None) -> list[Verdict]:
    """A verdict per recorded group (runs differing only by seed) under `folders`: its lowest seed
    (`all_seeds`: every seed) re-run and compared. `max_seconds` skips groups whose recorded runs
    took longer; `learners` keeps only groups of those learner names (a stale group is named
    whatever its time, since telling it costs no run). `on_verdict` is called as each one comes."""
    from clbench.tables import load_folder

    runs = [run for folder in folders for run in load_folder(folder)]
    groups = group_runs(runs)
    labels = distinguishing_fields(groups)
    wanted = set(learners)
    unknown = wanted - {g.learner for g in groups}
    if unknown:
        raise UsageError(f"--learner {', '.join(sorted(unknown))}: no such learner among the recorded groups "
                         f"(found: {', '.join(sorted({g.learner for g in groups}))})")
    verdicts = []
    for group in groups:
        if wanted and group.learner not in wanted:
            continue
        chosen = sorted(group.runs, key=lambda r: r.seed)[: None if all_seeds else 1]
        label = f"{labels[group.key]} on {group.scenario} {group.protocol}"
        currents, verdict = [], None
        for run in chosen:
            current, verdict = resolve_again(label, run)
            if verdict is not None:
                break
            currents.append(current)
        took = sum(recorded_seconds(run) for run in chosen)
        if verdict is None and max_seconds is not None and took > max_seconds:
            verdict = Verdict(label, chosen[0].seed, chosen[0].path, "skipped",
                              f"its recorded run{'s' if len(chosen) > 1 else ''} took {took:.0f} s, over "
                              f"--max-seconds {max_seconds:g}", n_seeds=len(chosen))
        if verdict is None:
            verdict = rerun(label, chosen, currents, threads)
        verdicts.append(verdict)
        if on_verdict is not None:
            on_verdict(verdict)
    return verdicts


def summary(verdicts: Sequence[Verdict]) -> str:
    """"12 groups: 10 same, 1 differs, 1 stale" plus the groups to re-record and those that can
    only be checked where they were recorded."""
    counts = {v: sum(x.verdict == v for x in verdicts) for v in ("same", *NOT_REPRODUCED, "skipped")}
    text = f"{len(verdicts)} groups: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    redo = [v.group for v in verdicts if v.needs_recording]
    if redo:
        text += "\nre-record: " + "; ".join(redo)
    elsewhere = [v.group for v in verdicts if v.verdict == "elsewhere"]
    if elsewhere:
        text += ("\nrecorded on another (or an unknown) processor or with other package versions, so rounding "
                 "may explain the difference (verify them where they were recorded): " + "; ".join(elsewhere))
    return text
