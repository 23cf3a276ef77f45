from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clbench import metrics
from clbench.learners.finetune import Finetune
from clbench.runner import run

from conftest import small


@dataclass
class ConstantLearner:
    """Always predicts output unit `unit`; records what it was trained on."""

    unit: int = 0

    def setup(self, spec, seed):
        self.n_outputs_ = spec.n_outputs
        self.fitted_ = []

    def fit_task(self, task):
        assert task.x_test is None  # the runner hides test data
        self.fitted_.append(task.task_id)

    def predict(self, x, task_id=None):
        logits = torch.zeros(len(x), self.n_outputs_)
        logits[:, self.unit] = 1.0
        return logits


def test_matrix_layout_row_zero_and_future_tasks():
    sc = small("class_il")
    result = run(sc, ConstantLearner(unit=0), seed=0)
    R = result.matrix
    assert R.shape == (6, 5)
    # unit 0 is class 0: right on half of task 1, wrong on every other task, at every row, row 0 included
    assert np.allclose(R[:, 0], R[0, 0]) and 0.4 < R[0, 0] < 0.6
    assert np.all(R[:, 1:] == 0)
    assert len(result.rows) == 30
    assert {r["after_task"] for r in result.rows} == set(range(6))
    assert all(r["train_seconds"] == 0 for r in result.rows if r["after_task"] == 0)
    assert all(r["n_samples"] > 0 for r in result.rows)


def test_task_il_masks_logits_to_the_task_units():
    # predicting unit 3 always: in class_il only task 2's class 3 is right; in task_il on task 1
    # the mask leaves units 0 and 1, both 0-logit, so argmax picks unit 0 (half right)
    ci = run(small("class_il"), ConstantLearner(unit=3), seed=0).matrix
    ti = run(small("task_il"), ConstantLearner(unit=3), seed=0).matrix
    assert ci[0, 0] == 0.0 and 0.4 < ti[0, 0] < 0.6
    assert 0.4 < ci[0, 1] < 0.6 and 0.4 < ti[0, 1] < 0.6  # unit 3 is class 3 of task 2


def test_runner_trains_each_task_once_in_order():
    learner = ConstantLearner()
    run(small(), learner, seed=0)
    assert learner.fitted_ == [0, 1, 2, 3, 4]


def test_same_seed_same_matrix_and_other_seed_differs():
    sc = small("class_il", n_tasks=5)[:2]
    a = run(sc, Finetune(epochs=2), seed=1).matrix
    b = run(sc, Finetune(epochs=2), seed=1).matrix
    c = run(sc, Finetune(epochs=2), seed=2).matrix
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_finetune_forgets_in_class_il_and_much_less_in_task_il():
    ci = run(small("class_il"), Finetune(), seed=0).matrix
    ti = run(small("task_il"), Finetune(), seed=0).matrix
    assert metrics.learning_acc(ci) > 0.9
    assert metrics.forgetting(ci) > 0.85          # forgets almost everything it learned
    assert metrics.acc(ci) < 0.3
    assert metrics.acc(ti) > metrics.acc(ci) + 0.5
