"""Loggers read a stream run's stored curves; TensorBoard only where it is installed."""
from __future__ import annotations

import pytest

from clbench.configs import run_config
from clbench.loggers import curves, to_tensorboard
from clbench.scenario_names import scenario_config


@pytest.fixture(scope="module")
def stream_run(tmp_path_factory):
    config = {**scenario_config("split-digits"), "n_tasks": 2, "name": "two",
              "stream": {"kind": "online", "eval_every": 5, "loss_every": 5}}
    return run_config(config, "finetune", 0, results=tmp_path_factory.mktemp("runs"))


def test_curves_give_each_tasks_accuracy_the_seen_mean_and_the_loss(stream_run):
    triples = list(curves(stream_run.path))
    tags = {t for t, _, _ in triples}
    assert tags == {"accuracy/task_1", "accuracy/task_2", "accuracy/seen_mean", "train/loss"}
    final = {t: v for t, s, v in triples if s == max(s for _, s, _ in triples)}
    assert final["accuracy/task_2"] == pytest.approx(100 * stream_run.matrix[-1, 1])
    steps = [s for t, s, _ in triples if t == "accuracy/task_1"]
    assert steps == sorted(set(steps))  # one value per step


def test_tensorboard_writes_every_curve(stream_run, tmp_path):
    pytest.importorskip("tensorboard")
    n = to_tensorboard(stream_run.path, tmp_path)
    assert n == len(list(curves(stream_run.path)))
    assert list(tmp_path.glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_report_draws_stream_figures_and_the_anytime_table(stream_run, tmp_path):
    from clbench.report import write_report
    from clbench.tables import load_folder

    written = write_report(load_folder(stream_run.path.parent), tmp_path)
    kinds = {f.kind for f in written.figures}
    assert {"anytime_curves", "stability_gap", "loss_curves"} <= kinds
    table = (tmp_path / "tables" / "anytime.md").read_text()
    assert "min-ACC" in table and "finetune" in table
    assert "## Along the stream" in (tmp_path / "report.md").read_text()
