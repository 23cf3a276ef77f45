"""Small suite files and purpose-built learners for the suite and executor tests.

A tiny scenario (digits in 2 tasks) and `epochs = 1` keep a run around a tenth of a second.
"""
from __future__ import annotations

import sys
from pathlib import Path

TINY = """
[[scenario]]
builder = "split"
dataset = "digits"
n_tasks = 2
name = "tiny"
protocol = "class_il"
"""

# Learners that fail in the ways a suite must survive, and one that logs each run it starts.
LEARNERS_PY = '''
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from clbench.learners.finetune import Finetune


@dataclass
class Boom(Finetune):
    """Raises during task 2 for seed `fail_seed`."""

    fail_seed: int = 1

    def setup(self, spec, seed):
        super().setup(spec, seed)
        self.seed_ = seed

    def fit_task(self, task):
        if self.seed_ == self.fail_seed and task.task_id == 1:
            raise RuntimeError("boom on purpose")
        super().fit_task(task)


@dataclass
class NaNLoss(Finetune):
    """Its training loss is NaN from the first batch."""

    def loss(self, x, y, mask):
        return super().loss(x, y, mask) * float("nan")


@dataclass
class Crash(Finetune):
    """Kills the process it runs in."""

    def fit_task(self, task):
        os._exit(7)


@dataclass
class Logged(Finetune):
    """Appends "seed pid" to `log` whenever a run starts; sleeps `delay` s per task."""

    log: str = ""
    delay: float = 0.0

    def setup(self, spec, seed):
        super().setup(spec, seed)
        with open(self.log, "a") as fh:
            fh.write(f"{seed} {os.getpid()}\\n")

    def fit_task(self, task):
        time.sleep(self.delay)
        super().fit_task(task)
'''


def write_suite(folder: Path, body: str, name: str = "t", file: str = "suite.toml", seeds: str = "[0, 1]",
                scenario: str = TINY) -> Path:
    """A suite file in `folder` with the learners module next to it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "learners.py").write_text(LEARNERS_PY)
    path = folder / file
    path.write_text(f'name = "{name}"\nseeds = {seeds}\n{scenario}\n{body}')
    return path


def clbench_command() -> list[str]:
    """The installed console script, run as a user runs it."""
    script = Path(sys.executable).parent / "clbench"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from clbench.cli import main; main()"]
