"""`clbench verify`: recorded groups re-run with the code as it is now must give their stored
matrices back exactly; a behaviour change without a version bump, a bumped version and changed
code that no longer runs are each named as a group to re-record."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clbench.configs import run_config
from clbench.data_arrays import MissingDataError
from clbench.learner import SGDLearner
from clbench.learners.finetune import Finetune
from clbench.metrics import acc
from clbench.tables import load_folder
from clbench.verify import config_changes, summary, verify

SHIPPED = Path(__file__).resolve().parents[1] / "baselines" / "native-digits"
FAST = ["finetune", "replay", "ewc", "si"]  # groups whose seed-0 run takes seconds (class- or task-IL)


@pytest.fixture
def recorded(tmp_path):
    """A results folder holding one finished two-epoch fine-tuning run of split-digits, seed 0 and 1."""
    for seed in (0, 1):
        run_config("split-digits", "finetune", seed, overrides={"epochs": 2}, results=tmp_path)
    return tmp_path


@pytest.mark.slow  # re-runs shipped runs (about 10 s)
def test_the_shipped_groups_that_run_in_seconds_reproduce_exactly():
    """Exactly on the processor they were recorded on (an Intel Xeon) and, as it happens, on an AMD
    EPYC too; on another processor a difference is `elsewhere`, which is not a code change."""
    verdicts = verify([SHIPPED], max_seconds=6, learners=FAST)
    checked = [v for v in verdicts if v.verdict != "skipped"]
    assert len(checked) >= 4, summary(verdicts)
    assert all(v.verdict in ("same", "elsewhere") for v in checked), "\n".join(v.line() for v in checked)


def test_a_rerun_of_unchanged_code_is_the_same_and_uses_the_lowest_seed(recorded):
    [verdict] = verify([recorded])
    assert verdict.verdict == "same" and verdict.seed == 0 and not verdict.needs_recording
    assert verdict.group == "finetune on split-digits class_il"


def skipping_every_fifth_step():
    """SGDLearner.train_step changed in behaviour: every fifth step does nothing."""
    step = SGDLearner.train_step
    calls = {"n": 0}

    def skips_every_fifth(self, x, y, mask=None):
        calls["n"] += 1
        return torch.zeros(()) if calls["n"] % 5 == 0 else step(self, x, y, mask)
    return skips_every_fifth


def test_a_behaviour_change_without_a_version_bump_is_named(recorded, monkeypatch):
    monkeypatch.setattr(SGDLearner, "train_step", skipping_every_fifth_step())
    [verdict] = verify([recorded])
    assert verdict.verdict == "differs" and verdict.needs_recording
    assert "cells differ" in verdict.detail and "recorded" in verdict.detail
    assert "re-record: finetune on split-digits class_il" in summary([verdict])


def record_processor(folder: Path, cpu: str | None, seed: int | None = None) -> None:
    """Rewrite the runs in `folder` (only `seed`'s, if given) as if recorded on processor `cpu`
    (None: by a clbench that did not keep the processor)."""
    for record in folder.glob("*/run.json"):
        data = json.loads(record.read_text())
        if seed is not None and data["config"]["seed"] != seed:
            continue
        if cpu is None:
            del data["environment"]["cpu"]
        else:
            data["environment"]["cpu"] = cpu
        record.write_text(json.dumps(data))


def test_a_difference_recorded_on_another_processor_is_elsewhere_not_re_record(recorded, monkeypatch):
    record_processor(recorded, "Imaginary CPU 9000")
    assert verify([recorded])[0].verdict == "same"     # equal numbers reproduce whatever the processor
    monkeypatch.setattr(SGDLearner, "train_step", skipping_every_fifth_step())
    [verdict] = verify([recorded])
    assert verdict.verdict == "elsewhere" and not verdict.needs_recording and not verdict.reproduced
    assert "cpu Imaginary CPU 9000 (now " in verdict.detail
    record_processor(recorded, None)                   # recorded before clbench kept the processor
    [unknown] = verify([recorded])
    assert unknown.verdict == "elsewhere" and "cpu unknown (now " in unknown.detail
    text = summary([verdict])
    assert "1 elsewhere" in text and "re-record" not in text
    assert text.endswith("(verify them where they were recorded): finetune on split-digits class_il")


def test_all_seeds_reruns_every_seed_and_tests_the_final_means(recorded, monkeypatch):
    [same] = verify([recorded], all_seeds=True)
    assert same.verdict == "same" and same.n_seeds == 2 and "(2 seeds from 0, " in same.line()
    monkeypatch.setattr(SGDLearner, "train_step", skipping_every_fifth_step())
    [verdict] = verify([recorded], all_seeds=True)
    assert verdict.verdict == "differs" and verdict.n_seeds == 2
    assert verdict.detail.startswith("2 of 2 seeds differ (seed 0: ")
    recorded_acc = [acc(run.matrix) for run in load_folder(recorded)]
    assert f"final acc {100 * sum(recorded_acc) / 2:.1f} recorded, " in verdict.detail
    assert "now, Welch p " in verdict.detail
    record_processor(recorded, "Imaginary CPU 9000", seed=0)
    [mixed] = verify([recorded], all_seeds=True)   # seed 1 differs where it was recorded: a code change
    assert mixed.verdict == "differs"


def test_a_dataset_missing_here_is_skipped_with_how_to_get_it(recorded, monkeypatch):
    def no_digits(*args, **kwargs):
        raise MissingDataError("dataset 'digits' not found; get it with `clbench fetch digits`")
    monkeypatch.setattr("clbench.configs.execute", no_digits)
    [verdict] = verify([recorded])
    assert verdict.verdict == "skipped" and verdict.reproduced and not verdict.needs_recording
    assert "MissingDataError: dataset 'digits' not found; get it with `clbench fetch digits`" in verdict.detail
    monkeypatch.setattr("clbench.configs.execute", lambda *a, **k: 1 / 0)   # any other failure is a failure
    assert verify([recorded])[0].verdict == "failed"


def test_a_bumped_code_version_is_stale_without_running(recorded, monkeypatch):
    monkeypatch.setattr(Finetune, "code_version", 2, raising=False)
    monkeypatch.setattr(SGDLearner, "train_step", lambda *a, **k: pytest.fail("a stale group was run"))
    [verdict] = verify([recorded])
    assert verdict.verdict == "stale" and "learner.code_version: absent → 2" in verdict.detail


def test_a_group_over_the_time_limit_is_skipped_and_learners_are_filtered(recorded):
    [verdict] = verify([recorded], max_seconds=0)
    assert verdict.verdict == "skipped" and "over --max-seconds 0" in verdict.detail
    assert verify([recorded], learners=["finetune"])[0].verdict == "same"


def test_config_changes_name_each_key_and_ignore_the_package_version():
    old = {"clbench_version": "0.1.0", "learner": {"fields": {"lr": 0.001}}, "seed": 0}
    new = {"clbench_version": "0.2.0", "learner": {"fields": {"lr": 0.01}, "code_version": 3}, "seed": 0}
    assert config_changes(old, new) == ["learner.code_version: absent → 3", "learner.fields.lr: 0.001 → 0.01"]


@pytest.mark.slow  # subprocesses that import torch
def test_the_command_exits_1_naming_the_group_and_2_on_a_bad_learner(recorded, tmp_path):
    good = subprocess.run([sys.executable, "-m", "clbench.cli", "verify", str(recorded)],
                          capture_output=True, text=True)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith("same     finetune on split-digits class_il (seed 0")
    old = tmp_path / "old"  # a run recorded by a (pretend) later version of fine-tuning's code
    shutil.copytree(recorded, old, ignore=shutil.ignore_patterns("old"))
    for record in old.glob("*/run.json"):
        data = json.loads(record.read_text())
        data["config"]["learner"]["code_version"] = 9
        record.write_text(json.dumps(data))
    stale = subprocess.run([sys.executable, "-m", "clbench.cli", "verify", str(old)], capture_output=True, text=True)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "STALE    finetune on split-digits class_il" in stale.stdout and "code_version: 9 → absent" in stale.stdout
    assert "re-record: finetune on split-digits class_il" in stale.stdout
    bad = subprocess.run([sys.executable, "-m", "clbench.cli", "verify", str(recorded), "--learner", "ewc"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--learner ewc: no such learner" in bad.stderr and "Traceback" not in bad.stderr


def test_every_stored_baseline_keeps_its_run_id():
    """Fields added after runs were recorded (a class's `recorded_if_set`: Hope's `compile`, DER's
    `shared_memory_batch`) leave every stored run's config, and so its id, as it was: one run of
    each learner class in `baselines/` resolves again to the id it was stored under."""
    from clbench.aggregate import load_runs
    from clbench.results import run_id
    from clbench.verify import resolve_again

    baselines = SHIPPED.parent
    first_of_each_class = {}
    for run in load_runs(sorted(folder for folder in baselines.iterdir() if folder.is_dir())):
        first_of_each_class.setdefault(run.config["learner"]["class"], run)
    assert {"clbench.learners.hope:Hope", "clbench.learners.hope_lm:HopeLM",
            "clbench.learners.der:DER", "clbench.learners.der:DERpp"} <= set(first_of_each_class)
    for run in first_of_each_class.values():
        current, verdict = resolve_again("stored", run)
        assert verdict is None and run_id(current) == run.run_id, run.path
