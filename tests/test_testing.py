"""check_learner must fail learners that break the contract, each for the right reason."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from clbench.learners.finetune import Finetune
from clbench.testing import check_learner


def failed(learner) -> set[str]:
    return {r.name for r in check_learner(learner, raise_on_failure=False) if not r.passed}


@dataclass
class CountingPredict(Finetune):
    def predict(self, x, task_id=None):
        self.calls_ = getattr(self, "calls_", 0) + 1
        return super().predict(x, task_id)


@dataclass
class NoisyPredict(Finetune):
    def predict(self, x, task_id=None):
        return super().predict(x, task_id) + torch.randn(len(x), self.spec_.n_outputs)


@dataclass
class LearnsWhileEvaluating(Finetune):
    def predict(self, x, task_id=None):
        with torch.enable_grad():  # a training step on test inputs: evaluation leaks into training
            logits = self.model_(x)
            self.optimizer_.zero_grad()
            logits.logsumexp(1).mean().backward()
            self.optimizer_.step()
        return logits.detach()


class StateAtConstruction(Finetune):
    def __init__(self):
        super().__init__()
        self.model_ = None


@dataclass
class WrongShape(Finetune):
    def predict(self, x, task_id=None):
        return super().predict(x, task_id)[:, :3]


@dataclass
class CrashesInPredict(Finetune):
    def predict(self, x, task_id=None):
        raise RuntimeError("boom")


class NotADataclass:
    def setup(self, spec, seed): ...
    def fit_task(self, task): ...
    def predict(self, x, task_id=None):
        return torch.zeros(len(x), 10)


def test_side_effects_in_predict_are_caught():
    assert "predict_has_no_side_effects" in failed(CountingPredict(epochs=1))


def test_nondeterministic_predict_is_caught():
    assert "predict_is_deterministic" in failed(NoisyPredict(epochs=1))


def test_learning_from_evaluation_is_caught():
    names = failed(LearnsWhileEvaluating(epochs=1))
    assert {"predict_has_no_side_effects", "evaluation_does_not_change_training"} <= names


@pytest.mark.slow  # runs the whole battery
def test_state_at_construction_is_caught():
    assert "no_learned_state_at_construction" in failed(StateAtConstruction())


def test_wrong_logit_shape_is_caught():
    assert "predict_returns_logits" in failed(WrongShape(epochs=1))


def test_plain_class_fails_fields_and_learning_is_a_warning_with_its_threshold():
    results = {r.name: r for r in check_learner(NotADataclass(), raise_on_failure=False)}
    assert not results["hyperparameters_are_fields"].passed
    learns = results["learns_under_class_il"]
    assert learns.passed and learns.warning and learns.verdict == "WARN"
    assert "threshold: above [0.6, 0.6, 0.6] (chance within a task + 0.1)" in learns.detail
    assert "low learning, not an interface fault" in learns.detail


def test_a_learner_that_learns_passes_the_learning_checks_with_the_threshold_shown():
    from clbench.learners.finetune import Finetune

    results = {r.name: r for r in check_learner(Finetune(epochs=2), raise_on_failure=False)}
    learns = results["learns_under_task_il"]
    assert learns.passed and not learns.warning and "threshold: above [0.6, 0.6, 0.6]" in learns.detail


def test_a_crashing_learner_gets_a_verdict_not_a_traceback():
    results = check_learner(CrashesInPredict(epochs=1), raise_on_failure=False)
    crashed = [r for r in results if not r.passed]
    assert crashed and all("boom" in r.detail for r in crashed)


def test_raise_on_failure_names_the_check():
    try:
        check_learner(CountingPredict(epochs=1))
    except AssertionError as err:
        assert "predict_has_no_side_effects" in str(err)
    else:
        raise AssertionError("check_learner did not raise")
