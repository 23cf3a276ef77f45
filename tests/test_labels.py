"""Labels are unique: two different configs never share a label in a table, a figure file, a table
file or a `compare --out` folder."""
from __future__ import annotations

import sys
import textwrap

import pytest

from clbench import cli
from clbench.aggregate import distinguishing_fields, group_runs, load_runs
from clbench.configs import resolve
from clbench.results import write_run
from clbench.scenario_names import scenario_config

N_TASKS = 5
TAGGED = textwrap.dedent('''
    from dataclasses import dataclass

    from clbench.learners.finetune import Finetune


    @dataclass
    class Tagged(Finetune):
        """Fine-tuning with a free-text tag (a long string field)."""

        tag: str = ""
''')


def rows(seed: int, shift: float) -> list[dict]:
    return [{"after_task": i, "eval_task": j, "accuracy": round(min(1.0, 0.05 * (i + j + seed) + shift), 3),
             "n_samples": 36, "train_seconds": 0.0, "eval_seconds": 0.0}
            for i in range(N_TASKS + 1) for j in range(1, N_TASKS + 1)]


def record(root, learner: str, overrides: dict, seeds=(0, 1), shift: float = 0.0, name: str | None = None) -> None:
    for seed in seeds:
        config = resolve(scenario_config("split-digits"), learner, overrides, seed, name=name)
        write_run(root, config, rows(seed, shift))


def test_long_string_values_that_differ_late_get_different_labels(tmp_path):
    (tmp_path / "tagged.py").write_text(TAGGED)
    ref = f"{tmp_path / 'tagged.py'}:Tagged"
    record(tmp_path / "r", ref, {"tag": "experiment-alpha-1"}, name="tagged")
    record(tmp_path / "r", ref, {"tag": "experiment-alpha-2"}, name="tagged")
    record(tmp_path / "r", ref, {"tag": "a-very-long-tag-that-differs-early-1"}, name="tagged", shift=0.1)
    groups = group_runs(load_runs(tmp_path / "r"))
    labels = distinguishing_fields(groups)
    assert len(set(labels.values())) == 3
    assert sorted(labels.values()) == ["tagged (tag=a-very-long-tag-that-differs-early-1)",
                                       "tagged (tag=experiment-alpha-1)", "tagged (tag=experiment-alpha-2)"]


def test_long_strings_are_still_shortened_where_that_keeps_labels_apart(tmp_path):
    (tmp_path / "tagged.py").write_text(TAGGED)
    ref = f"{tmp_path / 'tagged.py'}:Tagged"
    record(tmp_path / "r", ref, {"tag": "alpha-experiment-number-one"}, name="tagged")
    record(tmp_path / "r", ref, {"tag": "beta-experiment-number-one"}, name="tagged")
    labels = sorted(distinguishing_fields(group_runs(load_runs(tmp_path / "r"))).values())
    assert labels == ["tagged (tag=alpha-ex…)", "tagged (tag=beta-exp…)"]


def test_configs_that_print_alike_get_a_hash(tmp_path):
    """Two classes that share a label name (the learner name is given): still two labels."""
    record(tmp_path / "r", "finetune", {}, name="mine")
    record(tmp_path / "r", "ewc", {}, name="mine")
    labels = distinguishing_fields(group_runs(load_runs(tmp_path / "r")))
    assert len(set(labels.values())) == 2 and all(v.startswith("mine") for v in labels.values())


def test_compare_out_keeps_every_sweep_variant_of_a_method(tmp_path, capsys, monkeypatch):
    for lr in ("0.01", "0.02"):
        record(tmp_path / "mine", "finetune", {"lr": lr, "epochs": 2}, shift=float(lr))
    record(tmp_path / "recorded", "ewc", {"epochs": 2})
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["clbench", "compare", str(tmp_path / "mine"), "--against",
                                      str(tmp_path / "recorded"), "--out", str(out), "--no-figures", "-f", "csv"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    stdout, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    assert "finetune (lr=0.01)" in stdout and "finetune (lr=0.02)" in stdout
    tables = sorted(p.name for p in (out / "tables").glob("compare-*.csv") if "summary" not in p.name
                    and "runs" not in p.name)
    assert len(tables) == 2 and len(set(tables)) == 2
    assert {("lr-0-01" in t, "lr-0-02" in t) for t in tables} == {(True, False), (False, True)}


def test_report_shows_a_progress_line_on_a_terminal_only(tmp_path):
    """`clbench.progress.Status`: redrawn in place on a terminal, nothing when piped or quiet."""
    import io

    from clbench.progress import Status

    live, piped, quiet = io.StringIO(), io.StringIO(), io.StringIO()
    for stream, kwargs in ((live, {"live": True}), (piped, {"live": False}), (quiet, {"live": True, "quiet": True})):
        status = Status(stream=stream, **kwargs)
        status.show("writing figures of 2 tables")
        status.clear()
    assert "writing figures of 2 tables" in live.getvalue() and "\r" in live.getvalue()
    assert piped.getvalue() == "" and quiet.getvalue() == ""
