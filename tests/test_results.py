from __future__ import annotations

import json

import numpy as np
import pytest

from clbench.configs import execute, resolve
from clbench.scenario_names import scenario_config
from clbench.results import ROWS_FILE, RUN_FILE, find_run, matrix_from_rows, read_run, run_id, write_run


@pytest.fixture(scope="module")
def finished():
    config = resolve(scenario_config("split-digits"), "finetune", {"epochs": 1}, seed=0)
    return config, execute(config)


def test_run_id_is_a_stable_hash_of_the_resolved_config():
    a = resolve(scenario_config("split-digits"), "ewc", {}, 0)
    b = resolve(scenario_config("split-digits"), "ewc", {"lam": 100.0}, 0)  # the default, spelled out
    c = resolve(scenario_config("split-digits"), "ewc", {"lam": 10.0}, 0)
    d = resolve(scenario_config("split-digits"), "ewc", {}, 1)
    e = resolve(scenario_config("split-digits", "task_il"), "ewc", {}, 0)
    assert run_id(a) == run_id(b)
    assert len({run_id(x) for x in (a, c, d, e)}) == 4
    assert len(run_id(a)) == 12
    assert a["learner"]["fields"]["lam"] == 100.0 and a["learner"]["class"] == "clbench.learners.ewc:EWC"
    assert a["clbench_version"] and a["seed"] == 0


def test_write_read_roundtrip_is_atomic_and_complete(tmp_path, finished):
    config, result = finished
    path = write_run(tmp_path, config, result.rows)
    assert path.name.endswith(run_id(config)) and path.name.startswith("finetune-split-digits-class_il-s0-")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left behind
    record, rows = read_run(path)
    assert record["config"] == config and record["status"] == "ok" and record["run_id"] == run_id(config)
    env = record["environment"]
    assert env["versions"]["torch"] and env["versions"]["python"] and "git_revision" in env
    assert rows == result.rows
    assert np.array_equal(matrix_from_rows(rows), result.matrix)
    assert find_run(tmp_path, run_id(config)) == path


def test_a_half_written_run_is_never_found(tmp_path, finished):
    config, _ = finished
    rid = run_id(config)
    partial = tmp_path / f".tmp-{rid}-abc"
    partial.mkdir()
    (partial / ROWS_FILE).write_text("after_task\n")
    assert find_run(tmp_path, rid) is None
    assert find_run(tmp_path / "missing", rid) is None


def test_matrix_from_rows_rejects_holes():
    rows = [{"after_task": 0, "eval_task": 1, "accuracy": 0.5}, {"after_task": 1, "eval_task": 1, "accuracy": 0.9}]
    assert matrix_from_rows(rows).tolist() == [[0.5], [0.9]]
    with pytest.raises(ValueError, match="do not fill"):
        matrix_from_rows(rows[:1] + [{"after_task": 2, "eval_task": 1, "accuracy": 1.0}])


def test_run_json_is_plain_json(tmp_path, finished):
    config, result = finished
    path = write_run(tmp_path, config, result.rows)
    assert json.loads((path / RUN_FILE).read_text())["config"]["learner"]["fields"]["widths"] == [100, 100]
