"""The one rule for the output units a learner may use now (clbench.units.OutputUnits), shared by
SGDLearner, Hope and the Avalanche adapter."""
from __future__ import annotations

import math

import torch

from clbench.units import OutputUnits


def allowed(mask: torch.Tensor) -> list[list[int]]:
    return [[u for u, v in enumerate(row.tolist()) if v == 0] for row in mask]


def test_class_il_allows_every_class_seen_so_far():
    units = OutputUnits(6, "class_il")
    units.add_task(0, [0, 1])
    assert allowed(units.mask(torch.tensor([0]))) == [[0, 1]]
    units.add_task(1, [2, 3])
    assert allowed(units.mask(torch.tensor([1, 0]))) == [[0, 1, 2, 3]] * 2
    assert math.isinf(units.mask(torch.tensor([1]))[0, 5].item())
    assert allowed(units.label_mask()) == [[0, 1, 2, 3]] * 6  # every label: the seen units


def test_task_il_allows_the_samples_own_task_and_by_label_the_tasks_that_hold_it():
    units = OutputUnits(4, "task_il")
    units.add_task(0, [0, 1])
    units.add_task(1, [1, 2])  # label 1 belongs to both tasks
    assert allowed(units.mask(torch.tensor([0, 1]))) == [[0, 1], [1, 2]]
    labels = allowed(units.label_mask())
    assert labels[0] == [0, 1] and labels[1] == [0, 1, 2] and labels[2] == [1, 2] and labels[3] == []


def test_nothing_is_masked_in_domain_il_or_when_every_unit_is_allowed():
    domain = OutputUnits(3, "domain_il")
    domain.add_task(0, [0, 1, 2])
    assert domain.mask(torch.tensor([0])) is None and domain.label_mask() is None
    full = OutputUnits(2, "class_il")
    full.add_task(0, [0, 1])
    assert full.mask(torch.tensor([0])) is None


def test_sgd_learner_masks_with_it():
    from clbench.learner import SGDLearner
    from clbench.scenario import ScenarioSpec

    learner = SGDLearner(device="cpu")
    spec = ScenarioSpec(n_tasks=2, n_outputs=4, input_shape=(1, 8, 8), protocol="class_il")
    learner.setup(spec, 0)
    learner.units_.add_task(0, [0, 1])
    assert allowed(learner.logit_mask(torch.tensor([0]))) == [[0, 1]]
