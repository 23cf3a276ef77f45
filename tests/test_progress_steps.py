"""Training steps inside a run reach a listener (the live line of `clbench run`): every step of
every task, in order, with the total where the loop knows it; nothing is reported outside."""
from __future__ import annotations

import math

import pytest

from clbench.configs import run_config
from clbench.progress import report_step, steps_to
from clbench.scenario_names import scenario_config


def record_steps(**kwargs) -> list[tuple[int, int | None]]:
    heard: list[tuple[int, int | None]] = []
    with steps_to(lambda step, total: heard.append((step, total))):
        run_config(**kwargs)
    return heard


def starts(heard):
    return [i for i, (step, _) in enumerate(heard) if step == 1]


def test_every_step_of_every_task_is_reported_in_order(tmp_path):
    heard = record_steps(scenario="split-digits", learner="finetune", overrides={"epochs": 2}, results=tmp_path)
    begins = starts(heard)
    assert len(begins) == 5  # one count per task, each from 1
    for a, b in zip(begins, begins[1:] + [len(heard)]):
        steps = [s for s, _ in heard[a:b]]
        assert steps == list(range(1, b - a + 1))
    from clbench.scenario import build_scenario

    scenario = build_scenario(scenario_config("split-digits"))
    expected = sum(2 * math.ceil(len(t.y_train) / 32) for t in scenario)
    assert len(heard) == expected and all(total is None for _, total in heard)


def test_with_iterations_the_total_is_known(tmp_path):
    heard = record_steps(scenario="split-digits", learner="replay", overrides={"iterations": 7}, results=tmp_path)
    assert heard == [(s, 7) for s in range(1, 8)] * 5


@pytest.mark.slow  # a Hope run (about 10 s)
@pytest.mark.filterwarnings("ignore:Hope. level")
def test_hope_reports_its_steps_with_their_total(tmp_path):
    heard = record_steps(scenario="split-digits", learner="hope", overrides={"epochs": 1}, results=tmp_path)
    assert len(starts(heard)) == 5 and all(step <= total for step, total in heard)
    assert all(heard[b - 1][0] == heard[b - 1][1] for b in starts(heard)[1:])  # each task runs to its total


def test_nothing_listens_outside_the_block():
    heard = []
    with steps_to(lambda *a: heard.append(a)):
        report_step(1, 2)
    report_step(2, 2)
    assert heard == [(1, 2)]
