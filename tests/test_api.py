"""The library API under the CLI: `clbench.run_suite` and `clbench.run_config` return result objects
and report progress as events; the shipped baselines are found from the installed package."""
from __future__ import annotations

import numpy as np

import clbench
from clbench import shipped
from clbench.suite import Finished, Note, Planned, Started

from suite_fixtures import write_suite


def test_run_suite_returns_the_runs_and_reports_progress_as_events(tmp_path):
    path = write_suite(tmp_path, "[learner.finetune]\nepochs = 1\n")
    events = []
    result = clbench.run_suite(path, results=tmp_path / "results", on_event=events.append)
    assert isinstance(events[0], Planned) and len(events[0].plan.todo) == 2
    assert [type(e) for e in events if isinstance(e, (Started, Finished))].count(Finished) == 2
    assert any(isinstance(e, Note) and "2 to run" in e.text for e in events)
    assert result.ok and len(result.ran) == 2 and not result.failed
    runs = result.runs()
    assert [r.config["seed"] for r in runs] == [0, 1]
    assert all(r.matrix.shape == (3, 2) for r in runs)  # row 0 (untrained) + 2 tasks

    again = clbench.run_suite(path, results=tmp_path / "results")
    assert again.ran == [] and len(again.plan.done) == 2
    assert again.finished_paths() == result.finished_paths()
    planned = clbench.plan_suite(path, results=tmp_path / "results")
    assert [planned.state(r) for r in planned.runs] == ["done", "done"]


def test_run_config_stores_the_run_and_reuses_it(tmp_path):
    scenario = {"builder": "split", "dataset": "digits", "n_tasks": 2, "name": "tiny", "protocol": "task_il"}
    first = clbench.run_config(scenario, "finetune", 0, overrides={"epochs": "1"}, results=tmp_path)
    assert not first.reused and first.path.parent == tmp_path
    assert first.config["learner"]["fields"]["epochs"] == 1 and first.config["scenario"]["protocol"] == "task_il"
    second = clbench.run_config(scenario, "finetune", 0, overrides={"epochs": 1}, results=tmp_path)
    assert second.reused and second.run_id == first.run_id
    np.testing.assert_array_equal(second.matrix, first.matrix)


def test_shipped_baselines_are_found_with_the_package():
    assert shipped.published_csv().is_file()
    hope = shipped.recorded_runs("hope")
    runs = list(hope.glob("*/run.json"))
    assert len(runs) >= 72 and all((r.parent / "rows.csv").is_file() for r in runs)  # scenarios/hope.toml, and the controls


def test_every_package_folder_is_installed():
    """pyproject.toml lists the packages (so that baselines/ can be installed as clbench.baselines):
    a new package folder must be added there, or `pip install .` leaves it out."""
    import sys
    from pathlib import Path

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    repo = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(repo).parts) for p in (repo / "clbench").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert "clbench.baselines" in listed
