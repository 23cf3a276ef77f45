"""Anytime metrics against the worked example of docs/anytime.md (computed by hand there)."""
from __future__ import annotations

import math

import pytest

from clbench import anytime

# (step, samples, task, boundary, accuracy on tasks 1..3): the docs' worked example
EXAMPLE = [
    (0, 0, 0, 1, (0.1, 0.1, 0.1)),
    (5, 50, 1, 0, (0.6, 0.0, 0.0)),
    (20, 200, 1, 1, (0.9, 0.0, 0.0)),
    (30, 300, 2, 0, (0.5, 0.4, 0.0)),
    (40, 400, 2, 1, (0.8, 0.9, 0.0)),
    (50, 500, 3, 0, (0.6, 0.5, 0.7)),
    (60, 600, 3, 1, (0.7, 0.8, 0.9)),
]


def example() -> anytime.Anytime:
    rows = [{"step": s, "samples": n, "task": k, "boundary": b, "eval_task": j + 1, "accuracy": a, "n_samples": 10}
            for s, n, k, b, accs in EXAMPLE for j, a in enumerate(accs)]
    return anytime.Anytime.from_rows(rows[::-1])  # row order must not matter


def test_aaa_is_the_mean_seen_accuracy_over_evaluations():
    assert anytime.aaa(example()) == pytest.approx((0.6 + 0.9 + 0.45 + 0.85 + 0.6 + 0.8) / 6)  # 0.7


def test_a_auc_weighs_each_evaluation_by_the_samples_since_the_last():
    assert anytime.a_auc(example()) == pytest.approx(435 / 600)


def test_min_acc_takes_each_old_tasks_worst_after_its_segment():
    assert anytime.min_acc(example()) == pytest.approx((0.5 + 0.5) / 2)
    assert anytime.min_acc(example(), upto=4) == pytest.approx(0.5)  # at the end of task 2: task 1 only
    assert math.isnan(anytime.min_acc(example(), upto=2))  # no old task yet


def test_wc_acc_trades_the_current_task_against_min_acc():
    assert anytime.wc_acc(example()) == pytest.approx(0.9 / 3 + (2 / 3) * 0.5)


def test_windowed_forgetting_is_the_largest_drop_within_the_window():
    a = example()
    assert anytime.windowed_forgetting(a, window=10) == pytest.approx(0.4)
    assert anytime.windowed_forgetting(a, window=5) == 0.0  # no two evaluations that close
    assert anytime.windowed_forgetting(a, window=20) == pytest.approx(0.4)


def test_summary_names_every_metric():
    assert set(anytime.summary(example())) == {"aaa", "a_auc", "min_acc", "wc_acc", "wf"}
