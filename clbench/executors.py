"""Where runs execute: in this process, in local worker processes, or as Ray tasks.

Every executor takes `(run_id, resolved config)` pairs and yields events: `RunStarted` when a
run begins, its `Outcome` when it ends (finished or failed, with rows either way), and None
about twice a second while nothing happens, so that a display can tick. Every run goes through
`run_one`, which never raises: an exception in a learner, or a loss that becomes NaN/inf
(`DivergenceError`), is an `Outcome` with status "failed", its reason and traceback. Executors
write nothing; the suite process writes each outcome as it arrives (`clbench.suite`), so results
reach the results folder the same way whichever executor, and whichever machine, ran them.

A run's rows do not depend on the executor: each run seeds everything from its config, a worker
keeps no state from one run to the next but imported modules and loaded datasets, and each
run uses the same number of torch threads everywhere (`threads`, 1 by default: the toy-size
models here run fastest single-threaded, and many single-threaded runs side by side use the
cores better than one run on several threads). Given a results folder (`checkpoints`), the
executors that run on this machine save per-task checkpoints under it and resume from them.

This module imports neither torch nor ray at import time.
"""
from __future__ import annotations

import os
import queue
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from clbench.errors import UsageError, one_line

EXECUTORS = ("local", "ray")
TICK_SECONDS = 0.5
# What a worker imports before its first run. torch._dynamo is imported lazily by the first
# optimiser a run builds, and costs seconds; better once in the fork server than in every worker.
PRELOAD = ["torch", "torch._dynamo", "clbench.configs", "clbench.runner", "clbench.learner", "clbench.models"]
Job = tuple[str, dict[str, Any]]  # (run id, resolved config)


@dataclass
class RunStarted:
    run_id: str


@dataclass
class Outcome:
    """What a run produced. `rows` holds the rows computed before a failure, if any."""

    run_id: str
    status: str                      # "ok" or "failed"
    rows: list[dict] = field(default_factory=list)
    error: str | None = None         # one line: "DivergenceError: training loss became nan on task 2"
    traceback: str | None = None
    seconds: float = 0.0
    worker: str = ""                 # host:pid that ran it
    environment: dict[str, Any] | None = None  # versions and host of the process that ran it
    files: dict[str, str] = field(default_factory=dict)  # further tables for the run directory (anytime rows)


def available_cpus() -> int:
    """CPUs this process may use (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def use_threads(threads: int) -> None:
    """Set torch's intra-op threads for the runs of this process."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def run_one(run_id: str, config: dict[str, Any], threads: int = 1, checkpoints: str | None = None) -> Outcome:
    """Run one resolved config here and return its outcome; never raises for a failing run. With
    a results folder `checkpoints`, the run checkpoints each task under it and resumes from there."""
    from clbench.checkpoint import Checkpoint
    from clbench.configs import execute
    from clbench.results import environment

    use_threads(threads)
    rows: list[dict] = []
    start = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    checkpoint = Checkpoint.for_run(checkpoints, run_id) if checkpoints is not None else None
    try:
        result = execute(config, progress=lambda after_task, new: rows.extend(new), checkpoint=checkpoint)
    except Exception as err:  # noqa: BLE001 - a failing run is recorded, the suite goes on
        return Outcome(run_id, "failed", rows, one_line(err), traceback.format_exc(),
                       time.perf_counter() - start, worker, environment())
    return Outcome(run_id, "ok", result.rows, seconds=time.perf_counter() - start, worker=worker,
                   environment=environment(), files=result.files)


# -- in this process ---------------------------------------------------------------------------

class InProcess:
    """Runs one after another in this process (`--jobs 1`), on a background thread so that the
    display keeps ticking during a long run."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self.description = "in this process"
        self._stop = threading.Event()

    def prepare(self) -> None:
        """Nothing to start ahead of time."""

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop after the run in progress."""
        self._stop.set()

    def execute(self, jobs: Sequence[Job], checkpoints: str | None = None) -> Iterator[RunStarted | Outcome | None]:
        events: queue.Queue = queue.Queue()
        done = object()

        def work() -> None:
            try:
                warm_up()  # what workers import before their first run, so runs start alike everywhere
                for rid, config in jobs:
                    if self._stop.is_set():
                        break
                    events.put(RunStarted(rid))
                    events.put(run_one(rid, config, self.threads, checkpoints))
            finally:
                events.put(done)

        thread = threading.Thread(target=work, name="clbench-run", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    event = events.get(timeout=TICK_SECONDS)
                except queue.Empty:
                    yield None
                    continue
                if event is done:
                    return
                yield event
        finally:
            self._stop.set()


# -- local worker processes ----------------------------------------------------------------------

def pick_gpu(slot: int) -> int | None:
    """On a machine with N > 1 GPUs, make GPU `slot` mod N the current device of this process (what
    `device="auto"` and `"cuda"` then use), so `--jobs N` gives each worker its own GPU; returns it.
    Called in a worker before its first run; with 0 or 1 GPU it does nothing."""
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return None
    index = slot % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return index


def _worker_main(conn, threads: int, parent_pid: int, slot: int = 0) -> None:
    """A worker process: import torch once, then run what the suite sends until told to stop.
    It exits by itself when the suite process dies (even mid-run), so a killed suite leaves no
    workers behind."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the suite's to handle; it stops the workers
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)

    first_parent = os.getppid()  # the suite, or the fork server it started

    def watch_parent() -> None:
        while True:
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(3)
            except PermissionError:
                pass
            if os.getppid() != first_parent:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch_parent, name="clbench-watch-parent", daemon=True).start()
    use_threads(threads)
    warm_up()  # imported once, used by every run (already there when forked from the fork server)
    pick_gpu(slot)

    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        rid, config, checkpoints = job
        outcome = run_one(rid, config, threads, checkpoints)
        try:
            conn.send(outcome)
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Worker:
    process: Any
    conn: Any
    job: Job | None = None
    slot: int = 0  # 0..jobs-1, kept by a replacement: which GPU the worker uses (pick_gpu)


class LocalPool:
    """`jobs` worker processes on this machine. Each imports torch once and runs many runs; the
    next run goes to whichever worker is free. A worker that dies (a crash in native code, the
    out-of-memory killer) fails its run and is replaced."""

    def __init__(self, jobs: int, threads: int = 1) -> None:
        import multiprocessing

        self.jobs = jobs
        self.threads = threads
        self.description = f"{jobs} local worker processes"
        # Not fork: the parent may have imported torch (a learner file that imports it at the top
        # does, when the suite is planned), and forking a process whose thread pools run is
        # unsafe. A fork server imports torch once and forks clean workers from there, so a worker
        # (or the replacement of one that died) starts in milliseconds; where there is none
        # (macOS, Windows), each worker is a fresh interpreter.
        if "forkserver" in multiprocessing.get_all_start_methods():
            self._context = multiprocessing.get_context("forkserver")
            self._context.set_forkserver_preload(PRELOAD)
        else:
            self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []

    def prepare(self) -> None:
        """Start the fork server now, so that its imports overlap with the suite's planning."""
        if self._context.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_worker(self) -> _Worker:
        parent_end, child_end = self._context.Pipe()
        used = {w.slot for w in self._workers}
        slot = next(i for i in range(len(self._workers) + 1) if i not in used)
        process = self._context.Process(target=_worker_main, args=(child_end, self.threads, os.getpid(), slot),
                                        name="clbench-worker", daemon=True)
        process.start()
        child_end.close()
        worker = _Worker(process, parent_end, slot=slot)
        self._workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + 5
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(2)
            worker.conn.close()
        self._workers = []

    def execute(self, jobs: Sequence[Job], checkpoints: str | None = None) -> Iterator[RunStarted | Outcome | None]:
        from multiprocessing.connection import wait

        pending = deque(jobs)
        while True:
            while pending:  # hand out work: to an idle worker, or to a new one while under `jobs`
                idle = [w for w in self._workers if w.job is None]
                if not idle and len(self._workers) >= self.jobs:
                    break
                worker = idle[0] if idle else self._start_worker()
                worker.job = pending.popleft()
                worker.conn.send((*worker.job, checkpoints))
                yield RunStarted(worker.job[0])
            busy = [w for w in self._workers if w.job is not None]
            if not busy:
                return
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=TICK_SECONDS)
            if not ready:
                yield None
                continue
            for worker in busy:
                if worker.conn not in ready and worker.process.sentinel not in ready:
                    continue
                outcome = None
                try:
                    if worker.conn.poll():
                        outcome = worker.conn.recv()
                except (EOFError, OSError):
                    pass
                if outcome is None and not worker.process.is_alive():
                    outcome = self._died(worker)
                if outcome is not None:
                    worker.job = None
                    yield outcome

    def _died(self, worker: _Worker) -> Outcome:
        """The outcome of the run a dead worker held; a new worker takes its place when needed."""
        worker.process.join(1)
        code = worker.process.exitcode
        rid = worker.job[0]
        worker.conn.close()
        self._workers.remove(worker)
        reason = f"the worker process running it died (exit code {code}"
        reason += ", killed by a signal: out of memory?)" if code is not None and code < 0 else ")"
        return Outcome(rid, "failed", error=f"WorkerDied: {reason}", traceback=f"WorkerDied: {reason}\n",
                       worker=f"{socket.gethostname()}:{worker.process.pid}")


def warm_up() -> None:
    """Import what every run needs (the fork server's list) before the first run: in a Ray
    worker, in a pool worker started without a fork server, and in this process for `InProcess`."""
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)


def make_executor(kind: str = "local", jobs: int | None = None, threads: int = 1, address: str | None = None):
    """The executor for `--executor KIND --jobs N --address ADDR`."""
    if kind not in EXECUTORS:
        from clbench.errors import unknown_name_error

        raise unknown_name_error("executor", kind, EXECUTORS, " in --executor")
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    if address and kind != "ray":
        raise UsageError("--address joins a Ray cluster: use it with --executor ray")
    if kind == "ray":
        from clbench.ray_executor import RayExecutor

        return RayExecutor(jobs, threads, address)
    if (jobs or 1) == 1:
        return InProcess(threads)
    return LocalPool(jobs, threads)
