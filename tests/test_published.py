"""Published numbers: the shipped CSV is well formed, and recorded runs are compared with it."""
from __future__ import annotations

import math

import pytest

from clbench.errors import UsageError
from clbench.published import COLUMNS, Published, match_results, format_matches, read_published
from clbench.scenario_names import PROTOCOLS
from clbench.results import write_run


def test_shipped_published_numbers_are_well_formed_and_sourced():
    rows = read_published()
    assert rows, "baselines/published.csv is empty"
    keys = [(r.learner, r.scenario, r.protocol, r.metric) for r in rows]
    assert len(keys) == len(set(keys))
    for r in rows:
        assert r.protocol in PROTOCOLS and r.metric == "acc" and 0 < r.value <= 100
        assert r.spread_kind in ("SEM", "SD") and r.n > 0 and "Table" in r.source
    # van de Ven et al. 2022, Table 3, class-IL: replay far above fine-tuning, joint on top
    by = {(r.learner, r.protocol): r.value for r in rows if r.scenario == "split-cifar100"}
    assert by["finetune", "class_il"] < by["ewc", "class_il"] < by["replay", "class_il"] < by["joint", "class_il"]
    assert by["finetune", "task_il"] > 5 * by["finetune", "class_il"]


def fake_run(root, learner, scenario, protocol, seed, final_accuracy, n_tasks=10, fields=None):
    config = {"clbench_version": "test", "seed": seed,
              "scenario": {"name": scenario, "protocol": protocol, "builder": "split", "dataset": "cifar100",
                           "n_tasks": n_tasks},
              "learner": {"name": learner, "class": "clbench.learners.finetune:Finetune", "fields": fields or {},
                          "source_sha256": None}}
    rows = [{"after_task": i, "eval_task": j, "accuracy": final_accuracy if i == n_tasks else 0.5, "n_samples": 100,
             "train_seconds": 0.0, "eval_seconds": 0.0}
            for i in range(n_tasks + 1) for j in range(1, n_tasks + 1)]
    write_run(root, config, rows)


def test_recorded_runs_are_compared_with_the_published_numbers(tmp_path):
    for seed, acc in enumerate([0.070, 0.080, 0.075]):
        fake_run(tmp_path, "finetune", "split-cifar100", "class_il", seed, acc)
    fake_run(tmp_path, "replay", "split-cifar100", "class_il", 0, 0.20)
    fake_run(tmp_path, "finetune", "split-fmnist", "class_il", 0, 0.19)  # nothing published: left out
    comparisons = {c.published.learner: c for c in match_results(tmp_path)}
    assert set(comparisons) == {"finetune", "replay"}
    finetune = comparisons["finetune"]
    assert finetune.n == 3 and finetune.seeds == (0, 1, 2)
    assert finetune.mean == pytest.approx(7.5) and finetune.sem == pytest.approx(100 * 0.005 / math.sqrt(3))
    assert finetune.difference == pytest.approx(7.5 - 7.71) and finetune.within()
    replay = comparisons["replay"]
    assert replay.difference == pytest.approx(20.0 - 37.57) and not replay.within() and math.isnan(replay.sem)
    table = format_matches(list(comparisons.values()))
    assert "| finetune | split-cifar100 | class_il | acc | 7.71 ± 0.18 (SEM, n=10) | 7.50 ± 0.29 | 3 |" in table
    assert "| no |" in table and "Table 3" in table


def test_sd_is_turned_into_sem():
    row = Published("x", "s", "class_il", "acc", 50.0, 2.0, "SD", 4, "paper, Table 1")
    assert row.sem == pytest.approx(1.0)


def test_malformed_published_files_are_usage_errors(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("learner,scenario\nx,y\n")
    with pytest.raises(UsageError, match="columns must be"):
        read_published(path)
    path.write_text(",".join(COLUMNS) + "\nx,s,class_il,acc,50,1,SE,5,paper Table 1\n")
    with pytest.raises(UsageError, match="line 2: spread_kind 'SE'"):
        read_published(path)
    path.write_text(",".join(COLUMNS) + "\nx,s,class_il,acc,fifty,1,SEM,5,paper Table 1\n")
    with pytest.raises(UsageError, match="line 2"):
        read_published(path)


def test_a_sweep_is_compared_group_by_group(tmp_path):
    for lam in (1.0, 100.0):
        fake_run(tmp_path, "ewc", "split-cifar100", "task_il", 0, 0.70, fields={"lam": lam})
    labels = sorted(c.label for c in match_results(tmp_path))
    assert labels == ["ewc (lam=1.0)", "ewc (lam=100.0)"]


def test_published_command_prints_the_comparison_or_one_line_error(tmp_path):
    from typer.testing import CliRunner

    from clbench.cli import app

    for seed, acc in enumerate([0.070, 0.080, 0.075]):
        fake_run(tmp_path / "runs", "finetune", "split-cifar100", "class_il", seed, acc)
    result = CliRunner().invoke(app, ["published", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "| finetune | split-cifar100 | class_il | acc | 7.71 ± 0.18 (SEM, n=10) | 7.50 ± 0.29 | 3 | -0.21 | yes |" \
        in result.output
    fake_run(tmp_path / "other", "finetune", "split-fmnist", "class_il", 0, 0.19)
    none = CliRunner().invoke(app, ["published", str(tmp_path / "other")])
    assert none.exit_code == 2 and "matches a published number" in none.output and none.output.count("\n") == 1
