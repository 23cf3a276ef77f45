"""Per-task checkpoints: a run saves its learner's state, its rows and every random number
generator after each finished task, so that a run killed in task k resumes from task k and ends
with the same matrix as an uninterrupted run.

Safe formats only: tensors (and the plain containers holding them) through `torch.save`, read
back with `torch.load(weights_only=True)`, which refuses arbitrary objects; everything else as
JSON. Nothing is ever unpickled. A learner opts in with `state_dict()` / `load_state_dict()`
(`SGDLearner` has both, for the built-ins and any subclass); a learner without them restarts
from scratch. Writing is atomic: the JSON file of task k is written last, so a checkpoint
without it is ignored.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clbench.lazy import lazy_import

torch = lazy_import("torch")

CHECKPOINT_PREFIX = ".ckpt-"  # a dot folder: never listed as a run, never a result


def can_checkpoint(learner: Any) -> bool:
    return callable(getattr(learner, "state_dict", None)) and callable(getattr(learner, "load_state_dict", None))


@dataclass
class Saved:
    """What a checkpoint restores: the rows so far (rows 0..task), the learner's state and the RNGs."""

    task: int
    rows: list[dict]
    learner: dict[str, Any]
    rng: dict[str, Any]


class Checkpoint:
    """The checkpoints of one run, in `folder` (RESULTS/.ckpt-<run id>)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def for_run(cls, results: str | Path, run_id: str) -> Checkpoint:
        return cls(Path(results) / f"{CHECKPOINT_PREFIX}{run_id}")

    def latest(self) -> int | None:
        """The last task with a complete checkpoint, or None."""
        tasks = [int(m.group(1)) for p in self.folder.glob("task-*.json")
                 if (m := re.fullmatch(r"task-(\d+)\.json", p.name))
                 and (self.folder / f"task-{m.group(1)}.pt").is_file()]
        return max(tasks, default=None)

    def load(self) -> Saved | None:
        """The latest complete checkpoint; None when there is none (or it cannot be read)."""
        task = self.latest()
        if task is None:
            return None
        try:
            meta = json.loads((self.folder / f"task-{task}.json").read_text())
            tensors = torch.load(self.folder / f"task-{task}.pt", weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged checkpoint is not used; the run starts over
            return None
        rng = {**meta["rng"], "torch": tensors["torch_rng"], "cuda": tensors.get("cuda_rng")}
        return Saved(task, meta["rows"], tensors["learner"], rng)

    def save(self, task: int, rows: list[dict], learner_state: dict[str, Any]) -> None:
        """Save the state after `task`, then remove the earlier checkpoints."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = {"learner": learner_state, "torch_rng": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            tensors["cuda_rng"] = torch.cuda.get_rng_state_all()
        _atomic(self.folder / f"task-{task}.pt", lambda fh: torch.save(tensors, fh))
        meta = {"task": task, "rows": rows, "rng": rng_state()}
        _atomic(self.folder / f"task-{task}.json", lambda fh: fh.write(json.dumps(meta).encode()))
        for old in self.folder.glob("task-*"):
            if not old.name.startswith(f"task-{task}."):
                old.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    """Python's and numpy's global generators as JSON (torch's travels with the tensors)."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(state), gauss], "numpy": [kind, keys.tolist(), pos, has_gauss, cached]}


def restore_rng(rng: dict[str, Any]) -> None:
    version, state, gauss = rng["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


# -- a learner's state, generically -------------------------------------------------------------

def _plain(value: Any) -> bool:
    """Whether `value` survives `torch.save` / `torch.load(weights_only=True)` as it is."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and _plain(v) for k, v in value.items())
    return False


def learner_state(learner: Any) -> dict[str, Any]:
    """The learned state of a learner: every attribute named with a trailing underscore that is a
    module, an optimiser, a generator, plain data (tensors, numbers, containers of them) or an
    object whose attributes are plain data. Anything else (a device, the scenario spec) is made
    again by `setup`."""
    state: dict[str, dict[str, Any]] = {"module": {}, "optimizer": {}, "generator": {}, "value": {}, "object": {}}
    for name, value in vars(learner).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        if isinstance(value, torch.nn.Module):
            state["module"][name] = value.state_dict()
        elif isinstance(value, torch.optim.Optimizer):
            state["optimizer"][name] = value.state_dict()
        elif isinstance(value, torch.Generator):
            state["generator"][name] = value.get_state()
        elif _plain(value):
            state["value"][name] = value
        elif hasattr(value, "__dict__") and _plain(vars(value)):
            state["object"][name] = dict(vars(value))
    return state


def load_learner_state(learner: Any, state: dict[str, Any]) -> None:
    """Put `learner_state` back into a learner that `setup` has just built for the same stream."""
    for name, value in state["module"].items():
        getattr(learner, name).load_state_dict(value)
    for name, value in state["optimizer"].items():
        getattr(learner, name).load_state_dict(value)
    for name, value in state["generator"].items():
        getattr(learner, name).set_state(value)
    for name, value in state["value"].items():
        setattr(learner, name, value)
    for name, value in state["object"].items():
        vars(getattr(learner, name)).update(value)
