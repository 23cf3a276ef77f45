"""Per-task checkpoints: a run killed in task k resumes from task k and ends with the same matrix
as an uninterrupted run; checkpoints hold only tensors and JSON."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from clbench.checkpoint import Checkpoint
from clbench.configs import instantiate, resolve
from clbench.results import read_run, run_id
from clbench.runner import run
from clbench.scenario_names import scenario_config
from conftest import small


class Killed(Exception):
    pass


def killed_in(learner, task: int):
    """The learner, made to die when it starts training task `task` (1-based)."""
    fit = learner.fit_task
    count = {"n": 0}

    def fit_task(t):
        count["n"] += 1
        if count["n"] == task:
            raise Killed
        fit(t)

    learner.fit_task = fit_task
    return learner


@pytest.mark.parametrize("name, fields", [("finetune", {"epochs": 1, "reset_optimizer": False}),
                                          ("ewc", {"epochs": 1, "lam": 100.0}),
                                          ("replay", {"epochs": 1, "buffer_size": 50}),
                                          ("si", {"epochs": 1}), ("mas", {"epochs": 1}), ("lwf", {"epochs": 1}),
                                          ("agem", {"epochs": 1}), ("der", {"epochs": 1}), ("derpp", {"epochs": 1}),
                                          ("er-ace", {"epochs": 1}), ("gdumb", {"epochs": 1}),
                                          ("icarl", {"epochs": 1})])
def test_a_run_resumed_from_its_checkpoint_gives_the_same_matrix(name, fields, tmp_path):
    config = resolve(scenario_config("split-digits"), name, fields, 3)
    scenario = small("class_il")
    whole = run(scenario, instantiate(config), 3).matrix
    checkpoint = Checkpoint(tmp_path / "ckpt")
    with pytest.raises(Killed):
        run(scenario, killed_in(instantiate(config), 4), 3, checkpoint=checkpoint)
    assert checkpoint.latest() == 3
    seen = []
    resumed = run(scenario, instantiate(config), 3, checkpoint=checkpoint, progress=lambda k, rows: seen.append(k))
    assert seen == [3, 4, 5]  # restored up to task 3, then trained tasks 4 and 5
    np.testing.assert_array_equal(resumed.matrix, whole)


def test_checkpoints_hold_only_tensors_and_json(tmp_path):
    config = resolve(scenario_config("split-digits"), "ewc", {"epochs": 1}, 0)
    checkpoint = Checkpoint(tmp_path / "ckpt")
    with pytest.raises(Killed):
        run(small("class_il"), killed_in(instantiate(config), 3), 0, checkpoint=checkpoint)
    files = sorted(p.name for p in checkpoint.folder.iterdir())
    assert files == ["task-2.json", "task-2.pt"]  # the earlier task's checkpoint was replaced
    meta = json.loads((checkpoint.folder / "task-2.json").read_text())
    assert meta["task"] == 2 and len(meta["rows"]) == 3 * 5
    state = torch.load(checkpoint.folder / "task-2.pt", weights_only=True)  # refuses any other object
    assert set(state["learner"]["value"]) >= {"fisher_", "anchor_", "constant_"}


def test_a_learner_without_state_dict_restarts_from_scratch(tmp_path):
    from clbench.learners.hope import Hope

    assert not hasattr(Hope, "state_dict")
    config = resolve(scenario_config("split-digits"), "finetune", {"epochs": 1}, 0)
    learner = instantiate(config)
    learner.state_dict = None  # opted out
    checkpoint = Checkpoint(tmp_path / "ckpt")
    run(small("class_il", n_tasks=2), learner, 0, checkpoint=checkpoint)
    assert not checkpoint.folder.exists()


def clbench(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "clbench.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # three real runs in subprocesses
def test_a_run_killed_with_sigkill_in_task_3_resumes_to_the_same_matrix(tmp_path):
    # 40 epochs: tasks 3-5 take long enough (about a second) for the poll below to catch the run
    # between task 2's checkpoint and its end even on a busy machine
    args = ["run", "--learner", "replay", "--set", "epochs=40", "--seed", "1", "-q"]
    whole = clbench(tmp_path, *args, "--results", "whole")
    assert whole.wait(timeout=600) == 0, whole.communicate()
    config = resolve(scenario_config("split-digits"), "replay", {"epochs": "40"}, 1)
    folder = tmp_path / "killed" / f".ckpt-{run_id(config)}"
    proc = clbench(tmp_path, *args, "--results", "killed")
    deadline = time.monotonic() + 600
    while not (folder / "task-2.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGKILL)  # in task 3
    proc.wait()
    assert Checkpoint(folder).latest() == 2 and not any(p.name.startswith("replay") for p in folder.parent.iterdir())
    resumed = clbench(tmp_path, *args, "--results", "killed")
    assert resumed.wait(timeout=600) == 0, resumed.communicate()
    (a,), (b,) = (list((tmp_path / r).glob("replay-*")) for r in ("whole", "killed"))
    matrix = [[(r["after_task"], r["eval_task"], r["accuracy"]) for r in read_run(p)[1]] for p in (a, b)]
    assert matrix[0] == matrix[1]
    assert not folder.exists()  # removed once the run is written


def test_a_suite_run_checkpoints_under_the_results_folder_and_resumes(tmp_path):
    """Local executors get the results folder to checkpoint under; the checkpoint is removed once
    the suite writes the run."""
    from clbench.configs import execute
    from clbench.executors import InProcess
    from clbench.suite import execute_plan
    from clbench.suite_file import PlannedRun

    config = resolve(scenario_config("split-digits"), "replay", {"epochs": 1}, 2)
    rid = run_id(config)
    whole = run(small("class_il"), instantiate(config), 2).matrix
    checkpoint = Checkpoint.for_run(tmp_path, rid)
    with pytest.raises(Killed):  # as a worker killed in task 3 leaves it
        run(small("class_il"), killed_in(instantiate(config), 3), 2, checkpoint=checkpoint)
    assert checkpoint.latest() == 2
    seen = []
    execute(config, progress=lambda k, rows: seen.append(k), checkpoint=checkpoint)
    assert seen == [2, 3, 4, 5]
    events = list(execute_plan([PlannedRun(rid, config, "replay")], tmp_path, InProcess()))
    (finished,) = [e for e in events if e is not None and hasattr(e, "outcome")]
    stored = read_run(finished.path)[1]
    assert [(r["after_task"], r["eval_task"]) for r in stored] == [(i, j) for i in range(6) for j in range(1, 6)]
    np.testing.assert_array_equal(np.array([r["accuracy"] for r in stored]).reshape(6, 5), whole)
    assert not checkpoint.folder.exists()
