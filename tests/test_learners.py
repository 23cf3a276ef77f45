from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from clbench import metrics
from clbench.learner import SGDLearner
from clbench.learners.ewc import EWC
from clbench.learners.finetune import Finetune
from clbench.learners.joint import Joint
from clbench.learners.mas import MAS
from clbench.learners.replay import Replay
from clbench.registry import load_learner
from clbench.runner import run
from clbench.testing import check_learner

from conftest import fit_tasks as _fit, small


@pytest.mark.slow  # full training runs
@pytest.mark.parametrize("name", ["finetune", "joint", "ewc", "replay", "si", "mas", "lwf", "agem", "der", "derpp",
                                  "er-ace", "gdumb", "icarl"])  # hope: tests/test_hope.py, at test size
def test_builtin_learners_pass_the_conformance_battery(name):
    results = check_learner(load_learner(name)(), raise_on_failure=False)
    assert [r.name for r in results if not r.passed] == []
    assert len(results) >= 10


class RecordingEWC(EWC):
    """EWC that keeps each task's Fisher and weights, to check the penalty against its definition."""

    def setup(self, spec, seed):
        super().setup(spec, seed)
        self.record_ = []

    def estimate_fisher(self):
        fisher = super().estimate_fisher()
        self.record_.append((fisher, {n: p.detach().clone() for n, p in self.model_.named_parameters()}))
        return fisher


@pytest.mark.parametrize("online", [False, True])
def test_ewc_penalty_equals_the_sum_of_quadratic_terms(online):
    learner = _fit(RecordingEWC(epochs=1, online=online, gamma=0.5, fisher_samples=64), small("task_il"), 3)
    params = dict(learner.model_.named_parameters())
    with torch.no_grad():
        for p in params.values():
            p.add_(0.01)  # move away from the last anchor so every term counts
        if online:
            running = {n: 0 for n in params}
            for fisher, _ in learner.record_:
                running = {n: 0.5 * running[n] + fisher[n] for n in params}
            anchor = learner.record_[-1][1]
            expected = sum((running[n] * (params[n] - anchor[n]) ** 2).sum() for n in params)
        else:
            expected = sum((f[n] * (params[n] - a[n]) ** 2).sum() for f, a in learner.record_ for n in params)
        assert expected > 0
        assert torch.allclose(learner.penalty(), expected, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("cls, estimate", [(EWC, "estimate_fisher"), (MAS, "estimate_importance")])
def test_consolidation_after_the_last_task_is_skipped_and_changes_nothing(cls, estimate, monkeypatch):
    """No task follows the last one, so its Fisher (importance) would never be read: it is not
    estimated, and the accuracy matrix is the one of a run that estimates it."""
    sc = small("class_il", n_tasks=3)
    calls = []
    original = getattr(cls, estimate)
    monkeypatch.setattr(cls, estimate, lambda self: calls.append(len(self.x_)) or original(self))
    skipping = run(sc, cls(epochs=1), seed=0).matrix
    assert len(calls) == 2
    calls.clear()
    monkeypatch.setattr(SGDLearner, "later_tasks_follow", lambda self, task: True)
    estimating = run(sc, cls(epochs=1), seed=0).matrix
    assert len(calls) == 3
    np.testing.assert_array_equal(skipping, estimating)
    # a slice that starts later ends at its own last task, whatever that task's id
    calls.clear()
    monkeypatch.undo()
    monkeypatch.setattr(cls, estimate, lambda self: calls.append(len(self.x_)) or original(self))
    run(small("class_il", n_tasks=5)[2:4], cls(epochs=1), seed=0)
    assert len(calls) == 1


def test_consolidation_after_the_last_task_stays_for_a_model_with_batch_norm(monkeypatch):
    """The importance passes move batch-norm statistics, which evaluation uses: with such a model
    the last task's importance is still estimated (skipping it would change the model)."""
    def with_norm(name, input_shape, n_outputs, widths):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(input_shape)), 16),
                                   torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, n_outputs))
    monkeypatch.setattr("clbench.models.build_backbone", with_norm)
    sc = small("class_il", n_tasks=2)
    kept = _fit(MAS(epochs=1, importance_batch_size=32), sc, 2)
    assert kept.tasks_done_ == 2
    monkeypatch.setattr(SGDLearner, "later_tasks_follow", lambda self, task: task.task_id != 1)
    skipped = _fit(MAS(epochs=1, importance_batch_size=32), sc, 2)
    assert skipped.tasks_done_ == 1
    assert not torch.equal(kept.model_[2].running_mean, skipped.model_[2].running_mean)


def test_ewc_with_zero_lambda_is_finetuning():
    sc = small("task_il")[:3]
    a = run(sc, EWC(lam=0.0, epochs=2), seed=0).matrix
    b = run(sc, Finetune(epochs=2), seed=0).matrix
    assert np.allclose(a, b)


@pytest.mark.slow  # full training runs
def test_ewc_strong_penalty_reduces_task_il_forgetting():
    sc = small("task_il")
    weak = run(sc, EWC(lam=0.0), seed=0).matrix
    strong = run(sc, EWC(lam=10000.0), seed=0).matrix
    assert metrics.forgetting(strong) < metrics.forgetting(weak)


@pytest.mark.parametrize("labels", ["sample", "argmax", "true"])
def test_fisher_label_modes_give_positive_fisher(labels):
    learner = _fit(EWC(epochs=1, fisher_labels=labels), small("class_il"), 1)
    total = sum(float(f.sum()) for f in learner.fisher_.values())
    assert total > 0


def test_replay_buffer_is_bounded_tensors_and_spans_tasks():
    sc = small("class_il")
    learner = _fit(Replay(epochs=1, buffer_size=100), sc, 5)
    assert isinstance(learner.buffer_x_, torch.Tensor) and learner.buffer_x_.shape == (100, 1, 8, 8)
    assert len(learner.buffer_y_) == len(learner.buffer_task_) == 100
    # reservoir sampling keeps every task roughly in proportion (each ~20 of 100)
    counts = torch.bincount(learner.buffer_task_, minlength=5)
    assert counts.min() >= 8, counts
    # stored samples are real training samples with their labels
    x0 = sc[int(learner.buffer_task_[0])].x_train
    assert any(torch.equal(learner.buffer_x_[0], x) for x in x0)


def test_class_balanced_replay_keeps_equal_shares():
    learner = _fit(Replay(epochs=1, buffer_size=100, class_balanced=True), small("class_il"), 5)
    counts = torch.bincount(learner.buffer_y_, minlength=10)
    assert counts.tolist() == [10] * 10


def test_class_balanced_replay_keeps_every_task_in_domain_il():
    """In domain-IL every task brings all classes: each task keeps an equal share of each class,
    rather than the first task's samples filling the memory for good."""
    learner = _fit(Replay(epochs=1, buffer_size=100, class_balanced=True), small("domain_il"), 2)
    pairs = torch.bincount(learner.buffer_task_ * 2 + learner.buffer_y_.cpu(), minlength=4)  # labels 0, 1 per task
    assert pairs.tolist() == [25] * 4


@pytest.mark.slow  # full training runs
def test_replay_beats_finetuning_in_class_il():
    sc = small("class_il")
    ft = run(sc, Finetune(), seed=0).matrix
    er = run(sc, Replay(buffer_size=200), seed=0).matrix
    assert metrics.acc(er) > metrics.acc(ft) + 0.4


@pytest.mark.slow  # full training runs
def test_joint_trains_on_all_seen_data_and_barely_forgets():
    sc = small("class_il")
    learner = _fit(Joint(epochs=1), sc, 3)
    assert len(learner.all_y_) == sum(len(t.y_train) for t in sc[:3])
    R = run(sc, Joint(), seed=0).matrix
    assert metrics.acc(R) > 0.85 and metrics.forgetting(R) < 0.1


def test_joint_from_scratch_reinitialises():
    sc = small("task_il")
    a = _fit(Joint(epochs=1, from_scratch=True), sc, 2)
    b = _fit(Joint(epochs=1, from_scratch=False), sc, 2)
    assert not torch.equal(a.model_[1].weight, b.model_[1].weight)


def test_divergence_is_reported():
    from clbench.learner import DivergenceError

    with pytest.raises(DivergenceError, match="loss became"):
        run(small("domain_il", builder="permuted")[:2], EWC(optimizer="sgd", lr=10.0, lam=1e6), seed=0)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_direct_fused_adam_step_is_bit_identical_to_step(weight_decay):
    """`optimizer_step` calls Adam's fused kernel itself; weights and state must equal `step()`'s exactly."""
    from clbench.optim import _fused_adam_step, build_optimizer, clear_gradients, optimizer_step
    from clbench.models import build_backbone

    torch.manual_seed(0)
    model = build_backbone("mlp", (8,), 4, (16,))
    twin = build_backbone("mlp", (8,), 4, (16,))
    twin.load_state_dict(model.state_dict())
    opts = [build_optimizer("adam", m.parameters(), 0.01, weight_decay=weight_decay) for m in (model, twin)]
    if not opts[0].param_groups[0].get("fused"):
        pytest.skip("this torch has no fused Adam for the CPU")
    x, y = torch.randn(64, 8), torch.randint(0, 4, (64,))
    for i in range(6):
        if i == 3:   # a restored checkpoint: new state tensors, which the direct call must use
            opts[0].load_state_dict(copy.deepcopy(opts[0].state_dict()))
        for m, opt, step in ((model, opts[0], optimizer_step), (twin, opts[1], lambda o: o.step())):
            clear_gradients(opt) if step is optimizer_step else opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(m(x[8 * i:8 * i + 8]), y[8 * i:8 * i + 8]).backward()
            step(opt)
    assert _fused_adam_step(opts[0]) is not None   # after the first step() the kernel is called directly
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)
        assert all(torch.equal(opts[0].state[p][k], opts[1].state[q][k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), build_backbone("mlp", (8,), 4, (16,)).parameters()))


def test_optimizer_step_falls_back_to_step_where_the_kernel_call_does_not_apply():
    """SGD, a parameter without a gradient, or a registered hook: `step()` runs (the hook fires)."""
    from clbench.optim import build_optimizer, optimizer_step

    w = torch.nn.Parameter(torch.ones(3))
    unused = torch.nn.Parameter(torch.ones(2))
    opt = build_optimizer("adam", [w, unused], 0.1)
    calls = []
    opt.register_step_post_hook(lambda *a: calls.append(1))
    (w ** 2).sum().backward()
    optimizer_step(opt)
    assert calls == [1] and not torch.equal(w, torch.ones(3)) and torch.equal(unused, torch.ones(2))
    sgd = build_optimizer("sgd", [w], 0.5)
    w.grad = torch.ones(3)
    before = w.detach().clone()
    optimizer_step(sgd)
    assert torch.equal(w.detach(), before - 0.5)


def test_a_torch_whose_private_kernel_differs_falls_back_to_step_for_good(monkeypatch):
    """If the direct call raises (another torch's kernel signature), the step counts are restored,
    `step()` does the step, and later steps go through `step()` too: the same weights as step() alone."""
    from clbench import optim

    monkeypatch.setitem(optim._DIRECT_KERNEL, "usable", True)
    torch.manual_seed(0)
    model, twin = torch.nn.Linear(4, 2), torch.nn.Linear(4, 2)
    twin.load_state_dict(model.state_dict())
    opts = [optim.build_optimizer("adam", m.parameters(), 0.01) for m in (model, twin)]
    if not opts[0].param_groups[0].get("fused"):
        pytest.skip("this torch has no fused Adam for the CPU")
    real, refused = torch._fused_adam_, []

    def kernel(*args, **kwargs):  # refuses the first call made once patched (the direct one), then is the real one
        if not refused:
            refused.append(1)
            raise TypeError("_fused_adam_() got an unexpected keyword argument 'maximize'")
        return real(*args, **kwargs)

    x = torch.randn(8, 4)
    for i in range(4):
        if i == 1:  # the direct call is used from the second step on (the first creates the state)
            monkeypatch.setattr(torch, "_fused_adam_", kernel)        # what Adam.step calls
            monkeypatch.setattr(optim.torch, "_fused_adam_", kernel)  # clbench's lazily bound torch keeps its own copy
        for m, opt in zip((model, twin), opts):
            opt.zero_grad(set_to_none=True)
            m(x).sum().backward()
            optim.optimizer_step(opt) if opt is opts[0] else opt.step()
    assert refused == [1] and optim._DIRECT_KERNEL["usable"] is False
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q) and torch.equal(opts[0].state[p]["step"], opts[1].state[q]["step"])
