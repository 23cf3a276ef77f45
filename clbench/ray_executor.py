"""Runs as Ray tasks, on a local Ray instance or an existing cluster (`--executor ray`). The same
events and outcomes as the other executors (`clbench.executors`); imports ray only when built.
"""
from __future__ import annotations

import math
import traceback
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from clbench.errors import UsageError
from clbench.executors import (TICK_SECONDS, Job, Outcome, RunStarted, warm_up, available_cpus, run_one)

class RayExecutor:
    """Each run is a Ray task. Without `address` a local Ray instance is started (with `jobs`
    CPUs, default all) and shut down at the end; with one (`auto`, `host:port`, `ray://...`),
    the suite joins that cluster and leaves it running. At most as many runs are in flight as
    the cluster has CPUs for, so "running" in the display means running."""

    def __init__(self, jobs: int | None = None, threads: int = 1, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError("--executor ray needs Ray: pip install 'clbench[ray]'") from None
        self.ray = ray
        self.threads = threads
        self.address = address
        self.jobs = jobs
        self.description = f"Ray at {address}" if address else "a local Ray instance"

    def prepare(self) -> None:
        """Start (or join) Ray now and have its workers import torch and clbench, so that both
        overlap with the suite's planning instead of delaying the first runs."""
        self._start()
        warm = self.ray.remote(warm_up).options(num_cpus=self.threads, max_retries=0, name="clbench-warm-up")
        for _ in range(self.slots):
            warm.remote()  # runs whether or not its result is kept

    def __enter__(self) -> RayExecutor:
        if not self.ray.is_initialized():
            self._start()
        return self

    def _start(self) -> None:
        import logging

        options: dict[str, Any] = {"logging_level": logging.WARNING, "include_dashboard": False,
                                   "configure_logging": True}
        if self.address:
            options["address"] = self.address
        else:
            options["num_cpus"] = self.jobs or available_cpus()
        try:
            self.ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = f"the Ray cluster at {self.address!r}" if self.address else "a local Ray instance"
            raise UsageError(f"cannot start or join {where}: {' '.join(str(err).split())}") from None
        resources = self.ray.cluster_resources()
        cpus = int(resources.get("CPU", 1))
        gpus = float(resources.get("GPU", 0))
        self.slots = max(1, cpus // self.threads)
        if self.jobs:
            self.slots = min(self.slots, self.jobs)
        # Ray hides the GPUs from a task that asks for none, so that `device="auto"` would train
        # on the CPU there and on the GPU under the local executors. Where the cluster has GPUs,
        # each run asks for an equal share of them, as runs share a GPU under the local pool.
        self.gpus_per_run = math.floor(min(1.0, gpus / self.slots) * 1e4) / 1e4 if gpus else 0.0
        self.description += f" ({cpus} CPUs" + (f", {gpus:g} GPUs)" if gpus else ")")

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Leave Ray (a local instance is shut down; a cluster keeps running)."""
        if self.ray.is_initialized():
            self.ray.shutdown()

    def execute(self, jobs: Sequence[Job], checkpoints: str | None = None) -> Iterator[RunStarted | Outcome | None]:
        """Run `jobs` as Ray tasks. `checkpoints` is not used: runs may execute on other machines,
        which cannot reach this one's results folder, so they save no per-task checkpoints."""
        ray = self.ray
        task = ray.remote(run_one).options(num_cpus=self.threads, num_gpus=self.gpus_per_run, max_retries=0,
                                           name="clbench-run")
        pending = deque(jobs)
        in_flight: dict[Any, str] = {}
        while pending or in_flight:
            while pending and len(in_flight) < self.slots:
                rid, config = pending.popleft()
                in_flight[task.remote(rid, config, self.threads)] = rid
                yield RunStarted(rid)
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=TICK_SECONDS)
            if not ready:
                yield None
                continue
            for ref in ready:
                rid = in_flight.pop(ref)
                try:
                    yield ray.get(ref)
                except Exception as err:  # noqa: BLE001 - the task's worker died, or Ray failed it
                    message = " ".join(str(err).split())[:500]
                    yield Outcome(rid, "failed", error=f"{type(err).__name__}: {message}",
                                  traceback=traceback.format_exc())


