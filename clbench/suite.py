"""Running a suite: `run_suite(path)` reads a suite file (`clbench.suite_file`), skips the runs
already finished under its results folder, runs the rest on an executor (`clbench.executors`),
writes each run as it arrives, and returns a `SuiteResult`. `plan_suite` says what is done and
what is to do without running anything (`--dry-run`). Progress reaches the caller as events
(`on_event`), never as prints: the CLI draws them; a script may ignore them.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from clbench.results import scan_runs, write_run
from clbench.suite_file import PlannedRun, Suite, load_suite


@dataclass
class Plan:
    """A suite's grid against a results folder: what is finished, what is to run, and which of the
    runs to do failed before (they are retried)."""

    suite: Suite
    root: Path
    done: dict[str, Path] = field(default_factory=dict)          # run id -> finished run directory
    failed_before: dict[str, Path] = field(default_factory=dict)  # run id -> failed run directory

    @property
    def runs(self) -> list[PlannedRun]:
        return self.suite.runs

    @property
    def todo(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.run_id not in self.done]

    def state(self, run: PlannedRun) -> str:
        """"done", "failed" (before; it will be retried) or "to do"."""
        if run.run_id in self.done:
            return "done"
        return "failed" if run.run_id in self.failed_before else "to do"


def plan(suite: Suite, root: Path, force: bool = False) -> Plan:
    """The suite's grid against `root` (normally results/<suite name>): finished runs are done
    (unless `force`); failed runs are to do again."""
    stored = scan_runs(root)
    out = Plan(suite, Path(root))
    for run in suite.runs:
        if run.run_id in stored:
            path, status = stored[run.run_id]
            if status == "ok" and not force:
                out.done[run.run_id] = path
            elif status != "ok":
                out.failed_before[run.run_id] = path
    return out


def plan_suite(path: str | Path, results: str | Path = "results", overrides: Iterable[str] = (),
               seeds: str | None = None, force: bool = False, learners: Iterable[str] = (),
               scenarios: Iterable[str] = ()) -> Plan:
    """Read a suite file and plan it against RESULTS/<suite name>/; runs nothing. `learners` and
    `scenarios` keep only those labels and names (`load_suite`)."""
    suite = load_suite(path, overrides, seeds, learners, scenarios)
    return plan(suite, Path(results) / suite.name, force=force)


# -- events --------------------------------------------------------------------------------------

@dataclass
class Planned:
    """The suite is read and planned; nothing has run yet."""

    plan: Plan


@dataclass
class Note:
    """A line for people: what runs where, or (`warning`) a setting that will slow the runs."""

    text: str
    warning: bool = False


@dataclass
class Started:
    run: PlannedRun


@dataclass
class Finished:
    """A run came back from an executor and was written to `path`."""

    run: PlannedRun
    outcome: Any  # clbench.executors.Outcome
    path: Path


Event = Union[Planned, Note, Started, Finished, None]  # None: nothing happened for a moment (a display may tick)


def execute_plan(runs: Sequence[PlannedRun], root: Path, executor) -> Iterator[Started | Finished | None]:
    """Run `runs` on `executor` and write each run under `root` as soon as it returns, finished
    or failed (with its reason and traceback). Yields `Started`, `Finished`, or None about twice
    a second while nothing happens (for a live display)."""
    from clbench.executors import RunStarted

    by_id = {r.run_id: r for r in runs}
    # The executors that run on this machine checkpoint each task under the results folder.
    for event in executor.execute([(r.run_id, r.config) for r in runs], checkpoints=str(root)):
        if event is None:
            yield None
        elif isinstance(event, RunStarted):
            yield Started(by_id[event.run_id])
        else:
            run = by_id[event.run_id]
            path = write_outcome(root, run.config, event)
            if event.status == "ok":
                from clbench.checkpoint import Checkpoint

                Checkpoint.for_run(root, run.run_id).remove()
            yield Finished(run, event, path)


def write_outcome(root: Path, config: dict[str, Any], outcome) -> Path:
    """Write a run's outcome atomically: rows and timing when it finished; when it failed, the
    rows up to the failure, the reason in run.json and the traceback in traceback.txt."""
    extra: dict[str, Any] = {"seconds": round(outcome.seconds, 3), "worker": outcome.worker}
    if outcome.environment:
        extra["environment"] = outcome.environment
    files = dict(outcome.files)
    if outcome.status != "ok":
        extra["error"] = outcome.error
        extra["traceback"] = outcome.traceback
        files["traceback.txt"] = outcome.traceback or outcome.error or ""
    return write_run(root, config, outcome.rows, status=outcome.status, extra=extra, files=files)


# -- running a suite -----------------------------------------------------------------------------

@dataclass
class SuiteResult:
    """What `run_suite` did: the plan it started from, the runs it ran now (in the order they
    ended, failed ones included), whether it was interrupted, and how long it took."""

    plan: Plan
    ran: list[Finished] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    executor: str = ""

    @property
    def suite(self) -> Suite:
        return self.plan.suite

    @property
    def root(self) -> Path:
        return self.plan.root

    @property
    def failed(self) -> list[Finished]:
        return [f for f in self.ran if f.outcome.status != "ok"]

    @property
    def ok(self) -> bool:
        """Every run of the grid is finished."""
        return not self.interrupted and not self.failed

    def finished_paths(self) -> list[Path]:
        """The directories of the grid's finished runs, before and now, in the grid's order."""
        now = {f.run.run_id: f.path for f in self.ran if f.outcome.status == "ok"}
        found = (self.plan.done.get(r.run_id) or now.get(r.run_id) for r in self.plan.runs)
        return [p for p in found if p is not None]

    def runs(self) -> list:
        """The grid's finished runs as `clbench.aggregate.StoredRun`s (config, rows, matrix)."""
        from clbench.aggregate import StoredRun
        from clbench.results import read_run

        return [StoredRun(p, *read_run(p)) for p in self.finished_paths()]


def run_suite(path: str | Path, results: str | Path = "results", *, overrides: Iterable[str] = (),
              seeds: str | None = None, executor: str = "local", jobs: int | None = None, threads: int = 1,
              address: str | None = None, force: bool = False, learners: Iterable[str] = (),
              scenarios: Iterable[str] = (), on_event: Callable[[Event], None] | None = None) -> SuiteResult:
    """Run what is not finished yet of the suite file at `path`, under RESULTS/<suite name>/.

    `overrides` are `learners.LABEL.FIELD=VALUE` items and `seeds` ("0-9") replaces the file's
    seeds, as on the command line; `learners` and `scenarios` keep only those labels and scenario
    names; `executor` ("local" or "ray"), `jobs`, `threads` and `address` choose where runs
    execute (`clbench.executors.make_executor`); `force` runs finished runs again. `on_event` receives `Planned` first, then `Note`s, `Started` and `Finished` for each
    run, and None about twice a second while nothing happens. A run that fails is recorded and the suite goes on; Ctrl-C stops it and
    returns what ran (`interrupted`). Bad input raises `UsageError` before anything runs.
    """
    from clbench.executors import available_cpus, make_executor
    from clbench.results import check_output_folder, clean_stale

    emit = on_event or (lambda event: None)
    start = time.perf_counter()
    chosen = make_executor(executor, jobs, threads, address)
    try:
        chosen.prepare()  # e.g. worker start-up, overlapping with reading the suite
        planned = plan_suite(path, results, overrides, seeds, force, learners, scenarios)
        check_output_folder(planned.root)
    except BaseException:
        chosen.close()  # stop what prepare started
        raise
    out = SuiteResult(planned, executor=chosen.description)
    todo = planned.todo
    emit(Planned(planned))
    if not todo:
        chosen.close()
        out.seconds = time.perf_counter() - start
        return out
    cpus = available_cpus()
    slots = jobs or (cpus if executor == "ray" else 1)
    if executor == "local" and slots * threads > cpus:
        emit(Note(f"{slots} jobs × {threads} threads > {cpus} CPUs; runs will slow each other down", warning=True))
    clean_stale(planned.root)
    try:
        with chosen:
            emit(Note(f"{planned.suite.name}: {len(planned.runs)} runs, {len(planned.done)} already finished, "
                      f"{len(todo)} to run on {chosen.description}; results in {planned.root}"))
            for event in execute_plan(todo, planned.root, chosen):
                if isinstance(event, Finished):
                    out.ran.append(event)
                emit(event)
    except KeyboardInterrupt:
        out.interrupted = True
    out.executor = chosen.description  # Ray's names its CPUs once started
    out.seconds = time.perf_counter() - start
    return out
