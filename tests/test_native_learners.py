"""The native learners added after the first five: each method's distinctive mechanism checked
against a hand computation (SI's path integral, MAS's output sensitivity, LwF's distillation,
A-GEM's projection, DER's stored logits, ER-ACE's asymmetric loss, GDumb's greedy balanced memory
and retraining from scratch, iCaRL's herding and nearest-mean classifier), and the conformance
battery for each."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from clbench.errors import UsageError
from clbench.learners.agem import AGEM, project
from clbench.learners.der import DER, DERpp
from clbench.learners.er_ace import ERACE
from clbench.learners.gdumb import GDumb
from clbench.learners.icarl import ICaRL, herding
from clbench.learners.lwf import LwF
from clbench.learners.mas import MAS
from clbench.learners.si import SI
from clbench.runner import run
from clbench.scenario import ScenarioSpec, Task
from clbench.testing import check_learner

from conftest import fit_tasks as _fit, small


# The conformance battery for every native learner runs in tests/test_learners.py.

def test_the_battery_checks_that_undeclared_protocols_are_refused():
    from dataclasses import dataclass
    from typing import ClassVar

    from clbench.learners.finetune import Finetune

    @dataclass
    class ClaimsClassILOnly(Finetune):   # declares class_il only, yet runs anywhere
        protocols: ClassVar[tuple[str, ...]] = ("class_il",)

    results = {r.name: r for r in check_learner(ClaimsClassILOnly(epochs=1), raise_on_failure=False)}
    assert "learns_under_task_il" not in results and "learns_under_class_il" in results
    assert not results["refuses_task_il"].passed and "ran under task_il without an error" in results["refuses_task_il"].detail


# -- a two-weight toy model ----------------------------------------------------------------------

TOY_SPEC = ScenarioSpec(n_tasks=1, n_outputs=2, input_shape=(1,), protocol="domain_il")


@pytest.fixture
def toy_model(monkeypatch):
    """build_backbone gives a 1-input, 2-output linear map without bias: two weights."""
    def build(name, input_shape, n_outputs, widths):
        model = torch.nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[0.3], [-0.2]]))
        return model
    monkeypatch.setattr("clbench.models.build_backbone", build)


def toy_task():
    x = torch.tensor([[1.0], [2.0], [-1.0], [0.5]])
    y = torch.tensor([0, 1, 0, 1])
    return Task(task_id=0, protocol="domain_il", classes=(0, 1), x_train=x, y_train=y)


def test_si_importance_is_the_path_integral_over_the_damped_squared_change(toy_model):
    lr, xi = 0.5, 0.01
    learner = SI(optimizer="sgd", lr=lr, epochs=3, batch_size=4, xi=xi, device="cpu")
    learner.setup(TOY_SPEC, 0)
    task = toy_task()
    learner.fit_task(task)
    # By hand: three full-batch SGD steps θ ← θ − lr g; ω = Σ −g·Δθ = lr Σ g²; Ω = ω / (Δ² + ξ).
    w = torch.tensor([[0.3], [-0.2]], requires_grad=True)
    start, omega = w.detach().clone(), torch.zeros(2, 1)
    for _ in range(3):
        g, = torch.autograd.grad(F.cross_entropy(task.x_train @ w.T, task.y_train), w)
        omega += lr * g ** 2
        with torch.no_grad():
            w -= lr * g
    expected = omega / ((w.detach() - start) ** 2 + xi)
    assert torch.allclose(learner.importance_, expected.reshape(-1), rtol=1e-5)
    assert torch.allclose(learner.anchor_, w.detach().reshape(-1))
    assert float(expected.min()) > 0


def test_si_penalty_is_c_times_importance_weighted_squared_distance(toy_model):
    learner = SI(optimizer="sgd", lr=0.5, epochs=2, batch_size=4, c=0.7, device="cpu")
    learner.setup(TOY_SPEC, 0)
    learner.fit_task(toy_task())
    task = toy_task()
    learner.begin_task(task)
    with torch.no_grad():
        learner.model_.weight.add_(torch.tensor([[0.1], [0.2]]))
    x, y = task.x_train, task.y_train
    got = learner.loss(x, y, None).detach()
    theta = learner.model_.weight.detach().reshape(-1)
    expected = F.cross_entropy(x @ learner.model_.weight.detach().T, y) + \
        0.7 * (learner.importance_ * (theta - learner.anchor_) ** 2).sum()
    assert float(got) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("batch", [1, 4])
def test_mas_importance_is_the_mean_absolute_gradient_of_the_squared_output_norm(toy_model, batch):
    # ‖W x‖² = x² (w1² + w2²): its gradient in w_i is 2 x² w_i, so Ω_i = 2 |w_i| mean(x²).
    learner = MAS(optimizer="sgd", lr=1e-9, epochs=1, batch_size=4, importance_batch_size=batch, device="cpu")
    learner.setup(TOY_SPEC, 0)
    task = toy_task()
    learner.fit_task(task)
    w = learner.anchor_
    expected = 2 * w.abs() * (task.x_train ** 2).mean()
    assert torch.allclose(learner.omega_, expected, rtol=1e-5)
    assert float(expected.min()) > 0


def test_mas_sums_importance_over_tasks_or_blends_it():
    sc = small("task_il")
    summed = _fit(MAS(epochs=1, importance_samples=64), sc, 2)
    first = _fit(MAS(epochs=1, importance_samples=64), sc, 1).omega_
    averaged = _fit(MAS(epochs=1, importance_samples=64, accumulate="average", alpha=0.25), sc, 2)
    second_sum = summed.omega_ - first
    assert torch.allclose(averaged.omega_, 0.25 * first + 0.75 * second_sum, atol=1e-6)
    with pytest.raises(UsageError, match="accumulate must be one of sum, average"):
        MAS(accumulate="mean")


@pytest.mark.parametrize("c", [1.0, 0.7, 5000.0])
def test_closed_form_penalty_gradient_is_autograds_bit_for_bit(c):
    """QuadraticPenalty's gradient equals autograd through c * (w * (θ − θ*) ** 2).sum() exactly,
    and follows in-place changes of the importance."""
    from clbench.gradients import QuadraticPenalty
    from clbench.models import build_backbone

    torch.manual_seed(1)
    model = build_backbone("mlp", (8,), 4, (16,))
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    weights, anchor = torch.rand(n), torch.randn(n)
    penalty = QuadraticPenalty()
    for _ in range(2):
        expected = torch.autograd.grad(c * (weights * (torch.cat([p.reshape(-1) for p in params]) - anchor) ** 2).sum(),
                                       params)
        value, got = penalty(params, c, weights, anchor)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))
        assert float(value) == pytest.approx(c * float((weights * (torch.cat([p.detach().reshape(-1) for p in params])
                                                                   - anchor) ** 2).sum()), rel=1e-5)
        weights.mul_(3.1)   # in place: the cached c·w must be renewed


def test_closed_form_gradients_accumulate_as_autograd_would():
    """Added to an existing gradient, given to a parameter without one, and never to a frozen one."""
    from clbench.gradients import add_to_gradients

    a, b, frozen = (torch.nn.Parameter(torch.ones(2)) for _ in range(3))
    frozen.requires_grad_(False)
    a.grad = torch.ones(2)
    add_to_gradients([a, b, frozen], [torch.full((2,), 2.0)] * 3)
    assert torch.equal(a.grad, torch.full((2,), 3.0)) and torch.equal(b.grad, torch.full((2,), 2.0))
    assert frozen.grad is None


@pytest.mark.parametrize("name", ["si", "mas"])
def test_penalised_step_uses_autograds_gradient_of_the_penalised_loss(name):
    """A training step of SI and MAS after a task applies exactly the gradient autograd gives for
    cross-entropy + penalty written as one expression (the penalty's part comes in closed form)."""
    sc = small("domain_il")
    learner = _fit(SI(epochs=1, c=0.7) if name == "si" else MAS(epochs=1, importance_samples=64, lam=0.3), sc, 1)
    learner.begin_task(sc[1].for_training())
    x, y = learner.x_[:16], learner.y_[:16]
    with torch.no_grad():   # away from the anchor (the weights at the task's end), so the penalty acts
        for p in learner.model_.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    twin = copy.deepcopy(learner.model_)
    c, weights = (0.7, learner.importance_) if name == "si" else (0.3, learner.omega_)
    loss = F.cross_entropy(twin(x), y) + c * (weights * (torch.cat([p.reshape(-1) for p in twin.parameters()])
                                                         - learner.anchor_) ** 2).sum()
    expected = torch.autograd.grad(loss, list(twin.parameters()))
    got = learner.train_step(x, y, learner.mask_)
    assert all(torch.equal(p.grad, e) for p, e in zip(learner.model_.parameters(), expected))
    assert float(got) == pytest.approx(float(loss.detach()), rel=1e-5)
    assert float(learner.penalty(list(twin.parameters()), c, weights, learner.anchor_)[0]) > 0


# -- LwF -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["class_il", "task_il"])
def test_lwf_loss_is_cross_entropy_plus_alpha_times_distillation_by_hand(protocol):
    sc = small(protocol)
    learner = _fit(LwF(epochs=1, alpha=0.7, temperature=2.0), sc, 2)
    learner.begin_task(sc[2].for_training())
    x, y = learner.x_[:16], learner.y_[:16]
    got = learner.loss(x, y, learner.mask_).detach()
    with torch.no_grad():
        new, old = learner.model_(x), learner.teacher_(x)

    def kd(units):  # −Σ p_old log p_new at T = 2, the batch mean
        p = torch.exp(old[:, units] / 2) / torch.exp(old[:, units] / 2).sum(1, keepdim=True)
        log_q = new[:, units] / 2 - torch.log(torch.exp(new[:, units] / 2).sum(1, keepdim=True))
        return -(p * log_q).sum(1).mean()

    if protocol == "class_il":  # one term over the four units of tasks 0 and 1
        distill = kd([0, 1, 2, 3])
    else:  # one term per old task, over its own units
        distill = kd(list(sc[0].classes)) + kd(list(sc[1].classes))
    ce = F.cross_entropy(new + learner.mask_, y)
    assert float(got) == pytest.approx(float(ce + 0.7 * distill), rel=1e-5)
    assert float(distill) > 0


def test_lwf_selects_runs_of_units_by_slice_and_others_by_index_and_follows_new_groups():
    sc = small("task_il")
    learner = _fit(LwF(epochs=1), sc, 2)
    learner.old_groups_ = [torch.tensor([2, 3]), torch.tensor([5, 1])]
    first = learner.unit_selectors()
    assert first[0] == slice(2, 4) and torch.equal(first[1], torch.tensor([5, 1]))
    logits, old = torch.randn(4, 10, requires_grad=True), torch.randn(4, 10)
    by_index = -sum((F.softmax(old[:, g] / 2, 1) * F.log_softmax(logits[:, g] / 2, 1)).sum(1).mean()
                    for g in learner.old_groups_)
    assert torch.allclose(learner.distillation(logits, learner.soft_targets(old)), by_index, rtol=1e-6)
    learner.old_groups_ = [torch.tensor([0, 1, 2])]      # a new task's groups: new selectors
    assert learner.unit_selectors() == [slice(0, 3)]


def test_lwf_runs_its_teacher_once_per_task_and_trains_as_if_it_ran_it_every_step(monkeypatch):
    """The teacher's outputs are computed once per task and read per batch: the weights after a
    3-epoch task equal those of a learner that runs the teacher on every batch."""
    from clbench.learner import SGDLearner

    sc = small("class_il")
    cached, direct = (_fit(LwF(epochs=3), sc, 1) for _ in range(2))
    calls = []
    forward = cached.teacher_.forward
    monkeypatch.setattr(cached.teacher_, "forward", lambda x: calls.append(len(x)) or forward(x))
    task = sc[1].for_training()
    torch.manual_seed(1)
    cached.fit_task(task)
    assert sum(calls) == len(task.y_train)  # one pass over the task, not one per epoch
    monkeypatch.setattr(LwF, "batches", SGDLearner.batches)  # no rows known: the teacher runs per batch
    torch.manual_seed(1)
    direct.fit_task(task)
    assert all(torch.equal(p, q) for p, q in zip(cached.model_.parameters(), direct.model_.parameters()))
    assert cached.teacher_targets is None and cached.batch_rows is None  # freed at the task's end


# -- A-GEM ---------------------------------------------------------------------------------------

def test_agem_projection_has_non_negative_dot_product_with_the_reference():
    gen = torch.Generator().manual_seed(0)
    projected = 0
    for _ in range(200):
        g, g_ref = torch.randn(50, generator=gen), torch.randn(50, generator=gen)
        out = project(g, g_ref)
        assert float(out @ g_ref) >= -1e-5
        if float(g @ g_ref) >= 0:
            assert torch.equal(out, g)
        else:
            projected += 1
            assert float(out @ g_ref) == pytest.approx(0.0, abs=1e-5)
            assert torch.allclose(out, g - (g @ g_ref) / (g_ref @ g_ref) * g_ref)
    assert 50 < projected < 150


def test_agem_step_follows_the_projected_gradient():
    sc = small("class_il")
    learner = _fit(AGEM(epochs=1, memory_per_task=40, sample_size=32), sc, 2)
    assert len(learner.memory_y_) == 80
    learner.begin_task(sc[2].for_training())
    x, y = learner.x_[:32], learner.y_[:32]
    state = learner.generator_.get_state()
    weights = list(learner.model_.parameters())

    def grad(xb, yb, mask):
        logits = learner.model_(xb)
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(
            F.cross_entropy(logits if mask is None else logits + mask, yb), weights)])

    g = grad(x, y, learner.mask_)
    idx = torch.randperm(80, generator=torch.Generator().set_state(state))[:32]
    g_ref = grad(learner.memory_x_[idx], learner.memory_y_[idx], learner.memory_mask_[idx])
    assert float(g @ g_ref) < 0  # this batch conflicts with the memory: the projection acts
    with torch.no_grad():
        before = float(F.cross_entropy(learner.model_(x) + learner.mask_, y))
    loss = learner.train_step(x, y, learner.mask_)
    stepped = torch.cat([p.grad.reshape(-1) for p in weights])   # the gradient the optimiser stepped with
    assert torch.allclose(stepped, project(g, g_ref), atol=1e-6)
    assert float(stepped @ g_ref) >= -1e-6
    assert float(loss) == pytest.approx(before, rel=1e-6)


# -- DER / DER++ ---------------------------------------------------------------------------------

def test_der_stores_the_logits_of_the_step_and_matches_them():
    sc = small("class_il")
    learner = DER(epochs=1, alpha=0.3, buffer_size=500)
    learner.setup(sc.spec, 0)
    learner.begin_task(sc[0].for_training())
    x, y = learner.x_[:32], learner.y_[:32]
    with torch.no_grad():
        logits = learner.model_(x)
    first = learner.loss(x, y, learner.mask_)  # all units: mask_logits is False by default, as in the paper
    assert float(first.detach()) == pytest.approx(float(F.cross_entropy(logits, y).detach()), rel=1e-6)
    assert torch.equal(learner.buffer_x_, x) and torch.equal(learner.buffer_logits_, logits)
    with torch.no_grad():  # a step later the model has moved: the stored logits are its past
        for p in learner.model_.parameters():
            p.add_(0.05)
    x2, y2 = learner.x_[32:64], learner.y_[32:64]
    idx = torch.randint(32, (32,), generator=copy.deepcopy(learner.generator_))
    with torch.no_grad():
        expected = F.cross_entropy(learner.model_(x2), y2) + \
            0.3 * ((learner.model_(x[idx]) - logits[idx]) ** 2).mean()
    assert learner.loss(x2, y2, learner.mask_).item() == pytest.approx(expected.item(), rel=1e-5)
    assert len(learner.buffer_y_) == 64


def test_der_reservoir_keeps_the_buffer_size_and_derpp_adds_the_label_term():
    sc = small("class_il")
    der = _fit(DER(epochs=2, buffer_size=50), sc, 2)
    assert len(der.buffer_y_) == 50 and der.n_seen_ == 2 * sum(len(t.y_train) for t in sc[:2])
    assert set(der.buffer_task_.tolist()) == {0, 1}  # both tasks are represented
    assert DERpp().beta == 0.5 and DER().beta == 0.0
    at_end = _fit(DER(epochs=2, buffer_size=50, store="task_end"), sc, 2)  # offered once, after each task
    assert len(at_end.buffer_y_) == 50 and at_end.n_seen_ == sum(len(t.y_train) for t in sc[:2])
    with torch.no_grad():
        assert torch.allclose(at_end.buffer_logits_[at_end.buffer_task_ == 1],
                              at_end.model_(at_end.buffer_x_[at_end.buffer_task_ == 1]), atol=1e-5)
    final = {name: run(sc, cls(buffer_size=200), 0).matrix[-1].mean() for name, cls in (("der", DER), ("derpp", DERpp))}
    assert final["derpp"] > final["der"] + 0.1  # the memory's labels matter in class_il


def test_der_reservoir_write_equals_the_sample_by_sample_rule():
    """`add` writes a batch's kept samples at once; the buffer must be what Algorithm 2 of the
    paper leaves sample by sample, including when two samples of a batch draw the same slot (the
    later one wins)."""
    sc = small("class_il")
    learner = DER(buffer_size=4)
    learner.setup(sc.spec, 0)
    learner.begin_task(sc[0].for_training())
    gen = torch.Generator().manual_seed(3)
    reference = {"x": [], "y": [], "logits": []}
    collisions = 0
    for start in range(0, 256, 32):
        x, y = learner.x_[start:start + 32], learner.y_[start:start + 32]
        logits = torch.randn(32, sc.spec.n_outputs, generator=gen)
        draws = copy.deepcopy(learner.generator_)
        seen = learner.n_seen_
        learner.add(x, y, logits)
        free = max(0, 4 - len(reference["y"]))
        for i in range(min(free, 32)):
            for key, t in (("x", x), ("y", y), ("logits", logits)):
                reference[key].append(t[i])
        rest = torch.arange(min(free, 32), 32)
        slots = (torch.rand(len(rest), generator=draws) * (seen + rest + 1)).long()
        hit = [int(s) for s in slots if s < 4]
        collisions += len(hit) - len(set(hit))
        for i, slot in zip(rest.tolist(), slots.tolist()):
            if slot < 4:
                for key, t in (("x", x), ("y", y), ("logits", logits)):
                    reference[key][slot] = t[i]
    assert collisions > 0                                  # the case the batched write must get right
    assert torch.equal(learner.buffer_x_, torch.stack(reference["x"]))
    assert torch.equal(learner.buffer_y_, torch.stack(reference["y"]))
    assert torch.equal(learner.buffer_logits_, torch.stack(reference["logits"]))


def test_derpp_one_forward_pass_gives_the_loss_and_gradients_of_three():
    """The current and both memory batches go through the model together (no batch norm here):
    the loss and its gradients equal those of three separate passes, with the memory batches drawn
    in the same order; a ResNet backbone (batch norm) keeps separate passes."""
    sc = small("class_il")
    learner = _fit(DERpp(epochs=1, buffer_size=60, mask_logits=True), sc, 1)
    learner.begin_task(sc[1].for_training())
    x, y = learner.x_[:32], learner.y_[:32]
    twin = copy.deepcopy(learner)  # the same weights, memory and generator state
    twin.one_pass_ = False
    assert learner.one_pass_
    draws = copy.deepcopy(learner.generator_)
    match, picked = (torch.randint(len(learner.buffer_y_), (32,), generator=draws) for _ in range(2))
    with torch.no_grad():
        model, memory = learner.model_, learner.buffer_x_
        by_hand = (F.cross_entropy(model(x) + learner.mask_, y)
                   + 0.1 * F.mse_loss(model(memory[match]), learner.buffer_logits_[match])
                   + 0.5 * F.cross_entropy(model(memory[picked]) + learner.logit_mask(learner.buffer_task_[picked]),
                                           learner.buffer_y_[picked]))
    fused = learner.loss(x, y, learner.mask_)
    fused_grads = torch.autograd.grad(fused, list(learner.model_.parameters()))
    separate = twin.loss(x, y, twin.mask_)
    assert fused.item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert separate.item() == pytest.approx(by_hand.item(), rel=1e-5)
    for a, b in zip(fused_grads, torch.autograd.grad(separate, list(twin.model_.parameters()))):
        assert torch.allclose(a, b, atol=1e-6)
    with_norm = DERpp(backbone="reduced-resnet18")
    with_norm.setup(ScenarioSpec(n_tasks=2, n_outputs=4, input_shape=(3, 8, 8), protocol="class_il"), 0)
    assert not with_norm.one_pass_


def test_derpp_shared_memory_batch_uses_one_memory_batch_for_both_terms():
    """`shared_memory_batch`: the β cross-entropy is taken on the α term's memory batch (one draw,
    Avalanche's DER), not on a second, independent one; it is recorded only when set."""
    from clbench.fields import field_values

    sc = small("class_il")
    learner = _fit(DERpp(epochs=1, buffer_size=60, store="task_end", shared_memory_batch=True), sc, 1)
    learner.begin_task(sc[1].for_training())
    x, y = learner.x_[:32], learner.y_[:32]
    draws = copy.deepcopy(learner.generator_)
    rows = torch.randint(len(learner.buffer_y_), (32,), generator=draws)
    with torch.no_grad():
        model, memory = learner.model_, learner.buffer_x_[rows]
        shared = (F.cross_entropy(model(x), y) + 0.1 * F.mse_loss(model(memory), learner.buffer_logits_[rows])
                  + 0.5 * F.cross_entropy(model(memory), learner.buffer_y_[rows]))
        second = torch.randint(len(learner.buffer_y_), (32,), generator=draws)
        independent = (F.cross_entropy(model(x), y) + 0.1 * F.mse_loss(model(memory), learner.buffer_logits_[rows])
                       + 0.5 * F.cross_entropy(model(learner.buffer_x_[second]), learner.buffer_y_[second]))
    state = copy.deepcopy(learner.generator_.get_state())
    assert learner.loss(x, y, learner.mask_).item() == pytest.approx(shared.item(), rel=1e-5)
    assert abs(shared.item() - independent.item()) > 1e-4  # the two forms differ on this batch
    once = torch.Generator().set_state(state)
    torch.randint(len(learner.buffer_y_), (32,), generator=once)
    assert torch.equal(learner.generator_.get_state(), once.get_state())  # one draw a step, not two
    assert "shared_memory_batch" not in field_values(DERpp()) and field_values(learner)["shared_memory_batch"]


# -- ER-ACE --------------------------------------------------------------------------------------

def test_er_ace_masks_the_incoming_batch_to_its_own_classes():
    sc = small("class_il")
    learner = _fit(ERACE(epochs=1, buffer_size=100, replay_batch_size=16), sc, 1)
    learner.begin_task(sc[1].for_training())
    assert set(learner.buffer_task_.tolist()) == {0, 1}  # the memory holds the current task too
    x, y = learner.x_[:32], learner.y_[:32]
    idx = torch.randint(len(learner.buffer_y_), (16,), generator=copy.deepcopy(learner.generator_))
    with torch.no_grad():
        out = learner.model_(x)
        units = sorted(set(y.tolist()))
        incoming = F.cross_entropy(out[:, units], torch.tensor([units.index(v) for v in y.tolist()]))
        memory = F.cross_entropy(learner.model_(learner.buffer_x_[idx]) + learner.mask_, learner.buffer_y_[idx])
    assert learner.loss(x, y, learner.mask_).item() == pytest.approx((incoming + memory).item(), rel=1e-5)
    plain = F.cross_entropy(out + learner.mask_, y)
    assert abs(float(plain) - float(incoming)) > 1e-3


# -- GDumb ---------------------------------------------------------------------------------------

def test_gdumb_greedy_sampler_by_hand():
    learner = GDumb(buffer_size=4)
    learner.setup(ScenarioSpec(n_tasks=1, n_outputs=3, input_shape=(1,), protocol="class_il"), 0)
    x = torch.arange(6.0).unsqueeze(1)
    learner.add(x, torch.tensor([0, 0, 0, 1, 1, 2]), 0)
    # 0, 0, 0, 1 fill it; the second 1 (below 4/2) replaces a 0; the 2 (below 4/3) replaces one of
    # the largest classes (0 and 1 tie at 2: the lower label, 0).
    assert sorted(learner.memory_y_.tolist()) == [0, 1, 1, 2]
    assert {4.0, 5.0, 3.0} <= set(learner.memory_x_.squeeze(1).tolist())


def test_gdumb_memory_is_class_balanced_and_it_retrains_from_scratch():
    class Recording(GDumb):
        def begin_task(self, task):
            super().begin_task(task)
            self.starts_.append({k: v.clone() for k, v in self.model_.state_dict().items()})
            self.optimizer_states_.append(len(self.optimizer_.state))

        def setup(self, spec, seed):
            super().setup(spec, seed)
            self.starts_, self.optimizer_states_ = [], []

    sc = small("class_il")
    learner = _fit(Recording(epochs=1, buffer_size=50), sc, 5)
    counts = torch.bincount(learner.memory_y_, minlength=10)
    assert counts.tolist() == [5] * 10
    for start in learner.starts_:
        assert all(torch.equal(start[k], learner.initial_state_[k]) for k in start)
    assert learner.optimizer_states_ == [0] * 5
    # Trained on the memory only: the same memory and seed give the same model whatever came before.
    assert not all(torch.equal(a, b) for a, b in zip(learner.starts_[0].values(), learner.model_.state_dict().values()))


# -- iCaRL ---------------------------------------------------------------------------------------

def test_icarl_herding_picks_the_hand_computed_exemplars():
    # Unit vectors a, b, c, d; mean (0.52, 0.64). Step 1: c is nearest (0.283). Step 2: (c + d)/2
    # is nearest (0.141). Step 3: (c + d + a)/3 at 0.211 beats b's 0.267. Ordering by distance to
    # the mean alone would give c, d, b, a instead.
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [0.28, 0.96]])
    assert herding(points, 4).tolist() == [2, 3, 0, 1]
    assert herding(points, 2).tolist() == [2, 3]


def test_icarl_keeps_equal_exemplar_sets_and_classifies_by_nearest_mean():
    sc = small("class_il")
    learner = _fit(ICaRL(epochs=2, memory_size=40), sc, 2)
    assert sorted(learner.exemplars_) == [0, 1, 2, 3]
    assert {len(e) for e in learner.exemplars_.values()} == {10}
    x = sc[1].x_test
    with torch.no_grad():
        learner.model_.eval()
        feats = F.normalize(learner.model_[:-1](x), dim=1)
        means = torch.stack([F.normalize(F.normalize(learner.model_[:-1](learner.exemplars_[c]), dim=1).mean(0), dim=0)
                             for c in range(4)])
    expected = torch.cdist(feats, means).argmin(1)
    scores = learner.predict(x)
    assert torch.equal(scores.argmax(1), expected)
    assert torch.allclose(scores[:, :4], -torch.cdist(feats, means) ** 2, atol=1e-5)
    assert bool((scores[:, 4:] < -1e8).all())


def test_icarl_refuses_domain_il_in_one_line():
    with pytest.raises(UsageError, match="learner 'icarl' is defined under class_il and task_il only, not domain_il") as err:
        run(small("domain_il"), ICaRL(epochs=1), 0)
    assert "\n" not in str(err.value)
    from clbench.configs import resolve
    from clbench.scenario_names import scenario_config

    with pytest.raises(UsageError, match="not domain_il"):   # refused before anything runs
        resolve(scenario_config("split-digits", "domain_il"), "icarl", {}, 0)
    assert resolve(scenario_config("split-digits", "task_il"), "icarl", {}, 0)["learner"]["name"] == "icarl"


def test_suites_leave_out_the_protocols_a_learner_is_not_defined_under(tmp_path):
    from clbench.suite_file import load_suite

    path = tmp_path / "s.toml"
    path.write_text('seeds = [0, 1]\n[[scenario]]\nname = "split-digits"\n'
                    'protocol = ["class_il", "task_il", "domain_il"]\n'
                    '[learner.icarl]\nepochs = 1\n[learner.lwf]\nepochs = 1\n')
    suite = load_suite(path)
    pairs = {(r.config["learner"]["name"], r.config["scenario"]["protocol"]) for r in suite.runs}
    assert len(suite.runs) == 10 and ("icarl", "domain_il") not in pairs and ("lwf", "domain_il") in pairs
    assert suite.left_out == ("icarl split-digits/domain_il",)
