"""Streams: their plans, the task-free learner interface, and runs with anytime rows."""
from __future__ import annotations

import numpy as np
import pytest

from clbench.anytime import read_anytime, read_table
from clbench.configs import run_config
from clbench.errors import UsageError
from clbench.scenario_names import scenario_config
from clbench.streams import check_stream, plan_stream

SIZES = [100, 100, 100, 100]


def every_sample_once(plan, sizes=SIZES) -> bool:
    seen = sorted(zip(plan.task.tolist(), plan.index.tolist()))
    return seen == [(t, i) for t, n in enumerate(sizes) for i in range(n)]


def test_online_stream_is_one_pass_task_by_task_with_boundaries():
    plan = plan_stream(SIZES, {"kind": "online"}, seed=0)
    assert plan.signalled and plan.ends == (100, 200, 300, 400)
    assert every_sample_once(plan)
    assert (plan.task == plan.segment).all()
    assert not np.array_equal(plan.index[:100], np.arange(100))  # shuffled within the task


def test_blurry_stream_moves_the_set_fraction_into_neighbouring_segments():
    plan = plan_stream(SIZES, {"kind": "blurry", "blur": 0.2}, seed=0)
    assert plan.signalled and every_sample_once(plan)
    foreign = plan.task != plan.segment
    assert foreign.sum() == 4 * 20  # 20% of each task
    assert (np.abs(plan.task - plan.segment) <= 1).all()  # only into neighbours
    assert ((plan.task == 0) & (plan.segment == 1)).sum() == 20  # the first task gives all to its one neighbour
    assert ((plan.task == 1) & (plan.segment == 0)).sum() == 10  # a middle task: half to each side


def test_gradual_stream_mixes_tasks_smoothly_and_signals_nothing():
    plan = plan_stream(SIZES, {"kind": "gradual", "width": 0.25}, seed=0)
    assert not plan.signalled and every_sample_once(plan)
    share0 = [(plan.task[lo:lo + 50] == 0).mean() for lo in range(0, 200, 50)]
    assert share0[0] > 0.9 and 0.1 < share0[1] < 0.9 + 1e-9 and share0[3] < 0.1
    assert (np.diff(plan.task) < 0).any()  # tasks interleave near a switch
    sharp = plan_stream(SIZES, {"kind": "gradual", "width": 0.0}, seed=0)
    assert (np.diff(sharp.task) >= 0).all()  # width 0: no mixing


def test_streams_are_seeded():
    a, b = (plan_stream(SIZES, {"kind": "gradual"}, seed=3) for _ in range(2))
    assert np.array_equal(a.task, b.task) and np.array_equal(a.index, b.index)
    assert not np.array_equal(a.index, plan_stream(SIZES, {"kind": "gradual"}, seed=4).index)


@pytest.mark.parametrize("bad", [{"kind": "bursty"}, {"batch_size": 0}, {"blur": 1.5}, {"evaluate": 3}])
def test_bad_stream_settings_are_one_line_errors(bad):
    with pytest.raises(UsageError, match="stream"):
        check_stream(bad)


def stream_scenario(kind: str, **extra) -> dict:
    config = {**scenario_config("split-digits"), "n_tasks": 3, "name": f"{kind}-digits",
              "stream": {"kind": kind, "eval_every": 4, "loss_every": 2, **extra}}
    return config


@pytest.mark.parametrize("learner", ["finetune", "replay"])
def test_task_free_run_stores_anytime_and_loss_rows(tmp_path, learner):
    stored = run_config(stream_scenario("gradual"), learner, 0, results=tmp_path, overrides={"device": "cpu"})
    a = read_anytime(stored.path)
    assert a is not None and a.acc.shape[1] == 3
    assert len(a.step) > 3 * 3  # periodic evaluations besides the boundary rows
    boundary = a.acc[a.boundary]
    assert np.allclose(boundary, stored.matrix)  # the boundary matrix is the anytime rows at segment ends
    losses = read_table(stored.path, "loss.csv")
    assert losses and all(r["step"] % 2 == 0 or r is losses[-1] for r in losses)
    assert all(r.get("peak_memory_mb", 0) > 0 for r in stored.rows)


def test_boundary_aware_learner_gets_segments_and_refuses_a_task_free_stream(tmp_path):
    stored = run_config(stream_scenario("blurry"), "ewc", 0, results=tmp_path, overrides={"epochs": 1})
    a = read_anytime(stored.path)
    assert a.boundary.all()  # no fit_batch: evaluated only at boundaries
    with pytest.raises(UsageError, match="needs task boundaries"):
        run_config(stream_scenario("gradual"), "ewc", 0, results=tmp_path, overrides={"epochs": 1})


def test_task_il_stream_gives_task_ids_and_masks_per_task(tmp_path):
    stored = run_config({**stream_scenario("online"), "protocol": "task_il"}, "replay", 0, results=tmp_path)
    assert stored.matrix[-1].mean() > 0.8  # two-way choices within each task are easy


@pytest.mark.slow
def test_hope_runs_task_free(tmp_path):
    config = {**stream_scenario("gradual"), "n_tasks": 2}
    stored = run_config(config, "hope", 0, results=tmp_path,
                        overrides={"d": 16, "n_blocks": 1, "heads": 2, "cms_levels": 1, "device": "cpu"})
    a = read_anytime(stored.path)
    assert len(a.step) > 2 * 2 and np.allclose(a.acc[a.boundary], stored.matrix)
    assert stored.matrix[-1].mean() > stored.matrix[0].mean()  # it learned something without boundaries
    assert read_table(stored.path, "loss.csv")


def test_a_suite_scenario_takes_a_stream_table_and_names_a_bad_one(tmp_path):
    from clbench.suite import plan_suite

    suite = tmp_path / "s.toml"
    body = ('name = "s"\nseeds = "0"\n[[scenario]]\nname = "b3"\nbuilder = "split"\ndataset = "digits"\n'
            'n_tasks = 3\nstream = {{kind = "{kind}", blur = 0.3}}\n[learner.replay]\n')
    suite.write_text(body.format(kind="blurry"))
    plan = plan_suite(suite, tmp_path / "results")
    assert plan.runs[0].config["scenario"]["stream"]["blur"] == 0.3
    suite.write_text(body.format(kind="blury"))
    with pytest.raises(UsageError, match=r"s\.toml:8.*stream\.kind: 'blury' is not a stream kind"):
        plan_suite(suite, tmp_path / "results")
