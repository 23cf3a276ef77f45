"""Damaged results: a run counts as finished only when its files are complete and consistent.
`suite` plans a damaged run again; `report` and `compare` skip it with one warning line naming it
and go on with the rest. Runs recorded before completion records are accepted when their rows
fill the matrix, so every shipped baseline still reads as finished."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from clbench import cli
from clbench.configs import resolve
from clbench.results import (ROWS_FILE, RUN_FILE, check_run, find_run, run_id, run_problem, run_status, scan_runs,
                             write_run)
from clbench.scenario_names import scenario_config
from clbench.shipped import baselines_dir
from clbench.suite import plan_suite

N_TASKS = 5


def config(seed: int, epochs: int = 1) -> dict:
    return resolve(scenario_config("split-digits"), "finetune", {"epochs": epochs}, seed)


def rows(seed: int) -> list[dict]:
    """The rows of a made-up 5-task run (what a run writes, without training)."""
    return [{"after_task": i, "eval_task": j, "accuracy": round(0.1 * ((i * j + seed) % 10), 3), "n_samples": 36,
             "train_seconds": 0.0, "eval_seconds": 0.0}
            for i in range(N_TASKS + 1) for j in range(1, N_TASKS + 1)]


def cut_rows(path: Path) -> None:
    text = (path / ROWS_FILE).read_text()
    (path / ROWS_FILE).write_text(text[: len(text) // 2])


DAMAGES = {
    "rows.csv cut short": (cut_rows, "rows.csv has changed since the run was written"),
    "run.json holds []": (lambda p: (p / RUN_FILE).write_text("[]"), "run.json holds list [], not a run record"),
    "run.json cut short": (lambda p: (p / RUN_FILE).write_text((p / RUN_FILE).read_text()[:50]),
                           "run.json is not valid JSON"),
    "rows.csv missing": (lambda p: (p / ROWS_FILE).unlink(), "rows.csv is missing"),
    "run.json missing": (lambda p: (p / RUN_FILE).unlink(), "run.json is missing"),
    "a value changed": (lambda p: (p / ROWS_FILE).write_text((p / ROWS_FILE).read_text().replace("0.1", "0.9", 1)),
                        "rows.csv has changed"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_run_is_not_finished(damage, tmp_path):
    path = write_run(tmp_path, config(0), rows(0))
    record = check_run(path)
    assert record["complete"]["rows"] == (N_TASKS + 1) * N_TASKS and run_status(path) == "ok"
    assert find_run(tmp_path, run_id(config(0))) == path
    harm, reason = DAMAGES[damage]
    harm(path)
    assert run_status(path) is None and reason in run_problem(path)
    assert find_run(tmp_path, run_id(config(0))) is None and scan_runs(tmp_path) == {}


def legacy(tmp_path: Path, kept_rows: int | None = None) -> Path:
    """A run as written before completion records: run.json without `complete`."""
    path = write_run(tmp_path, config(0), rows(0))
    record = json.loads((path / RUN_FILE).read_text())
    del record["complete"]
    (path / RUN_FILE).write_text(json.dumps(record))
    if kept_rows is not None:
        lines = (path / ROWS_FILE).read_text().splitlines(keepends=True)
        (path / ROWS_FILE).write_text("".join(lines[: kept_rows + 1]))
    return path


def test_a_run_recorded_before_completion_records_is_accepted_when_its_rows_fill_the_matrix(tmp_path):
    assert run_status(legacy(tmp_path / "whole")) == "ok"
    assert "do not fill the (6, 5) matrix" in run_problem(legacy(tmp_path / "cut", kept_rows=29))
    assert "25 rows that do not fill the (6, 5) matrix" in run_problem(legacy(tmp_path / "row", kept_rows=25))


def test_every_shipped_baseline_still_reads_as_finished():
    folders = [f.parent for f in baselines_dir().rglob(RUN_FILE)]
    assert len(folders) >= 100
    assert {str(p): run_problem(p) for p in folders if run_problem(p)} == {}


def test_suite_plans_damaged_runs_again(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\nseeds = [0, 1, 2]\n[[scenario]]\nname = "split-digits"\n'
                     '[learner.finetune]\nepochs = 1\n')
    root = tmp_path / "results" / "s"
    paths = [write_run(root, config(seed), rows(seed)) for seed in range(3)]
    assert len(plan_suite(suite, tmp_path / "results").done) == 3
    cut_rows(paths[0])
    (paths[1] / RUN_FILE).write_text("[]")
    plan = plan_suite(suite, tmp_path / "results")
    assert list(plan.done) == [run_id(config(2))]
    assert [r.run_id for r in plan.todo] == [run_id(config(0)), run_id(config(1))]


def invoke(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["clbench", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize("command", ["report", "compare"])
def test_report_and_compare_skip_damaged_runs_with_a_warning_and_go_on(command, tmp_path, capsys, monkeypatch):
    mine, recorded = tmp_path / "mine", tmp_path / "recorded"
    for root, epochs in ((mine, 2), (recorded, 1)):
        paths = [write_run(root, config(seed, epochs), rows(seed)) for seed in range(3)]
        cut_rows(paths[0])
        (paths[1] / RUN_FILE).write_text("[]")
    (recorded / "no-rows-dddddddddddd").mkdir()
    (recorded / "no-rows-dddddddddddd" / RUN_FILE).write_text(json.dumps({"run_id": "dddddddddddd"}))
    args = ([command, str(recorded), "--no-figures", "--out", str(tmp_path / "out")] if command == "report" else
            [command, str(mine), "--against", str(recorded), "--no-figures", "--out", str(tmp_path / "out")])
    code, out, err = invoke(capsys, monkeypatch, *args)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning: skipped ")]
    damaged = {p.name for root in ((recorded,) if command == "report" else (mine, recorded))
               for p in root.iterdir() if "-s2-" not in p.name}
    assert {line.split()[2].rstrip(":").rpartition("/")[2] for line in warnings} == damaged
    assert all(len(line) < 300 for line in warnings) and "Traceback" not in err
    assert "finetune" in out and "acc" in out  # the good runs are still tabulated
