"""Mechanism tests of the Hope learner (docs/hope.md): the inner recurrence against reference
loops written from the equations, DGD against its closed form, the CMS level schedule, the
fine-tuning control, gradients reaching every meta parameter, no leaks, and the battery."""
from __future__ import annotations

import copy
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from clbench.errors import UsageError
from clbench.learner import DivergenceError
from clbench.learners.hope import Hope, has_cpp_compiler
from clbench.learners.hope_modules import SelfModTitans, chunk_tables, chunk_write, forward_substitution
from clbench.scenario import ScenarioSpec
from clbench.testing import check_learner

from conftest import small

TINY = dict(d=8, heads=2, n_blocks=1, cms_levels=2, cms_expansion=2, n_tokens=16)


def tiny(**fields) -> Hope:
    return Hope(**{**TINY, **fields})


def image_spec(protocol: str = "class_il") -> ScenarioSpec:
    return ScenarioSpec(n_tasks=5, n_outputs=10, input_shape=(1, 8, 8), protocol=protocol)


# -- the inner recurrence -----------------------------------------------------------------------
def reference_read(mod: SelfModTitans, x: torch.Tensor) -> torch.Tensor:
    """Token-by-token self-modifying Titans from docs/hope.md and its readings, with explicit weight matrices
    per example and head, inner gradients by autograd at each chunk's boundary state, and the
    decay as the explicit product W (α I − η â âᵀ)."""
    cfg = mod.cfg
    B, T, d = x.shape
    H, h = mod.heads, mod.head_dim
    names = mod.proj_names

    def mlp(w_in, w_out, z):                                  # z + W_out silu(W_in z), per (b, h)
        return z + torch.einsum("bhom,bhm->bho", w_out, F.silu(torch.einsum("bhmi,bhi->bhm", w_in, z)))

    def start(w_in0, w_out0, i):
        w_in, w_out = w_in0[:, i].expand(B, -1, -1, -1).clone(), w_out0[:, i].expand(B, -1, -1, -1).clone()
        return [w_in, w_out, torch.zeros_like(w_in), torch.zeros_like(w_out)]

    states = {n: start(mod.proj_in0, mod.proj_out0, i) for i, n in enumerate(names)}
    states["mem"] = start(mod.mem_in0, mod.mem_out0, 0)

    def conv_at(conv, values, t):                             # causal depthwise convolution at t
        width = conv.weight.shape[-1]
        out = conv.bias.clone()
        for i in range(width):
            s = t - (width - 1) + i
            if s >= 0:
                out = out + conv.weight[:, 0, i] * values[s]
        return out

    static = {n: [lin(x[:, s]) for s in range(T)] for n, lin in mod.static.items()}
    raw_seen = {n: [] for n in ("k", "v", "q") if n in names}
    l2 = lambda z: z / z.norm(dim=-1, keepdim=True)
    ys = []
    for t in range(T):
        if t % cfg.chunk_other == 0:
            snap_proj = {n: [w.clone() for w in states[n][:2]] for n in names}
        if t % cfg.chunk_mem == 0:
            snap_mem = [w.clone() for w in states["mem"][:2]]
        xt = x[:, t].view(B, H, h)
        raw = {n: mlp(*snap_proj[n], xt) for n in names}
        qkv = {}
        for n in ("q", "k", "v"):
            if n in names:
                raw_seen[n].append(raw[n].reshape(B, d))
                qkv[n] = conv_at(mod.conv[n], raw_seen[n], t).view(B, H, h)
            else:
                qkv[n] = conv_at(mod.conv[n], static[n], t).view(B, H, h)
        q, k, v = l2(qkv["q"]), l2(qkv["k"]), qkv["v"]
        eta = cfg.eta_max * torch.sigmoid((raw["eta"] * mod.eta_readout).sum(-1) + mod.eta_bias)
        alpha = (torch.sigmoid((raw["alpha"] * mod.alpha_readout).sum(-1) + mod.alpha_bias)
                 if cfg.retention else torch.ones_like(eta))
        ys.append(mlp(*snap_mem, q))
        eta, alpha = eta[..., None, None], alpha[..., None, None]
        for n, snap in [(n, snap_proj[n]) for n in names] + [("mem", snap_mem)]:
            w_in, w_out, s_in, s_out = states[n]
            target = mlp(*snap, v).detach()
            with torch.enable_grad():
                b_in, b_out = (w.detach().requires_grad_() for w in snap)
                if cfg.inner_objective == "l2":
                    loss = ((mlp(b_in, b_out, k.detach()) - target) ** 2).sum()
                else:
                    loss = -(mlp(b_in, b_out, k.detach()) * target).sum()
                g_in, g_out = torch.autograd.grad(loss, [b_in, b_out])
            act = F.silu(torch.einsum("bhmi,bhi->bhm", snap[0], k))
            a_out = l2(act)
            s_in = cfg.momentum * s_in - eta * g_in
            s_out = cfg.momentum * s_out - eta * g_out
            dgd = cfg.inner_optimizer == "dgd"
            decay_in = alpha * torch.eye(h) - (eta * k[..., :, None] * k[..., None, :] if dgd else 0)
            decay_out = alpha * torch.eye(act.shape[-1]) - (
                eta * a_out[..., :, None] * a_out[..., None, :] if dgd and cfg.hidden_decay == "dgd" else 0)
            states[n] = [w_in @ decay_in + s_in, w_out @ decay_out + s_out, s_in, s_out]
    return torch.stack(ys, 1).reshape(B, T, d)


def _random_titans(seed: int = 0, **fields) -> SelfModTitans:
    torch.manual_seed(seed)
    mod = SelfModTitans(tiny(eta_max=0.1, alpha_init=0.9, **fields))
    with torch.no_grad():                                     # spread η and α so that every term matters
        mod.eta_readout.mul_(4)
        mod.alpha_readout.mul_(4)
    return mod


CHUNKS = [(1, 1), (2, 4), (3, 5), (4, 2)]


@pytest.mark.parametrize(("chunk_mem", "chunk_other"), CHUNKS)
def test_chunked_memory_equals_the_reference_loop(chunk_mem, chunk_other):
    """Chunk 1 is the sequential recurrence; any C takes every gradient at the previous boundary."""
    mod = _random_titans(chunk_mem=chunk_mem, chunk_other=chunk_other)
    x = torch.randn(3, 11, 8)
    with torch.no_grad():
        got = mod.read(x)
    assert torch.allclose(got, reference_read(mod, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fields", [
    dict(inner_optimizer="gd"), dict(momentum=0.0), dict(retention=False), dict(hidden_decay="alpha"),
    dict(inner_objective="dot"), dict(adaptive_k=False, adaptive_v=False), dict(adaptive_q=True),
    dict(first_order=True), dict(fast_weights="explicit"), dict(fast_weights="explicit", first_order=True),
])
def test_every_inner_variant_equals_the_reference_loop(fields):
    mod = _random_titans(chunk_mem=2, chunk_other=3, **fields)
    x = torch.randn(2, 9, 8)
    with torch.no_grad():
        got = mod.read(x)
    assert torch.allclose(got, reference_read(mod, x), rtol=1e-4, atol=1e-5)


def test_memory_actually_changes_the_reads():
    """Guard against a silent no-op: with writes on, later reads differ from a frozen memory."""
    mod = _random_titans(chunk_mem=2, chunk_other=4)
    x = torch.randn(2, 8, 8)
    with torch.no_grad():
        live = mod.read(x)
        mod.cfg = copy.copy(mod.cfg)
        mod.cfg.memorize = False
        frozen = mod.read(x)
    assert torch.allclose(live[:, :2], frozen[:, :2])           # the first chunk reads the initial state
    assert (live[:, 2:] - frozen[:, 2:]).abs().max() > 1e-3


def test_zero_inner_learning_rate_and_no_retention_is_a_static_network():
    mod = _random_titans(chunk_mem=2, chunk_other=4, retention=False)
    mod.cfg.eta_max = 0.0
    x = torch.randn(2, 8, 8)
    with torch.no_grad():
        live = mod.read(x)
        mod.cfg.memorize = False
        assert torch.allclose(live, mod.read(x), atol=1e-6)


def _explicit_layer(w0, a_hats, ds, etas, alphas, beta, decay=True):
    """W_t = W_{t−1}(α_t I − η_t â_t â_tᵀ) + S_t, S_t = β S_{t−1} − η_t d_t â_tᵀ, as matrices."""
    w, s, states = w0.clone(), torch.zeros_like(w0), [w0.clone()]
    eye = torch.eye(w0.shape[-1])
    for a, dv, eta, alpha in zip(a_hats, ds, etas, alphas):
        s = beta * s - eta * torch.outer(dv, a)
        w = w @ (alpha * eye - (eta * torch.outer(a, a) if decay else 0)) + s
        states.append(w.clone())
    return states


def _write_chunks(w0, a_hats, ds, etas, alphas, beta, chunks, decay=True):
    """The layer state at the end of each chunk, through `chunk_write` (batch, head, memory of 1)."""
    w, s, t, states = w0.view(1, 1, 1, *w0.shape), None, 0, []
    for size in chunks:
        a = a_hats[t:t + size].view(1, 1, 1, size, -1)
        eta = etas[t:t + size].view(1, 1, size)
        tables = chunk_tables(eta, alphas[t:t + size].log().view(1, 1, size), beta)
        w, s = chunk_write(w, s, a, ds[t:t + size].view(1, 1, 1, size, -1), a @ w.transpose(-1, -2),
                           eta, tables, beta, decay)
        t += size
        states.append((t, w[0, 0, 0]))
    return states


@pytest.mark.parametrize("chunks", [[1, 1, 1, 1, 1, 1], [3, 3], [2, 4], [6], [5, 1]])
@pytest.mark.parametrize("decay", [True, False])
def test_rank1_form_equals_the_explicit_matrix_product(chunks, decay):
    torch.manual_seed(1)
    T, O, I, beta = sum(chunks), 3, 5, 0.7
    w0 = torch.randn(O, I)
    a_hats = F.normalize(torch.randn(T, I), dim=-1)
    ds, etas = torch.randn(T, O), 0.5 * torch.rand(T)
    alphas = 0.5 + 0.5 * torch.rand(T)
    expected = _explicit_layer(w0, a_hats, ds, etas, alphas, beta, decay)
    for t, got in _write_chunks(w0, a_hats, ds, etas, alphas, beta, chunks, decay):
        assert torch.allclose(got, expected[t], atol=1e-5), t


def test_dgd_step_is_the_closed_form_argmin():
    """docs/hope.md: argmin_W ½||W x − u||² + ||W − W_t||²/(2η) = W_t(I − η' x xᵀ) + η' u xᵀ with
    η' = η/(1+η) for ||x|| = 1; one DGD write with step η', α = 1, no momentum and d = −u gives it."""
    torch.manual_seed(2)
    O, I, eta = 4, 6, 0.8
    w_t = torch.randn(O, I)
    x = F.normalize(torch.randn(I), dim=0)
    u = torch.randn(O)
    eta_prime = eta / (1 + eta)
    [(_, step)] = _write_chunks(w_t, x.view(1, I), -u.view(1, O), torch.tensor([eta_prime]), torch.ones(1), 0.0, [1])
    closed_form = w_t @ (torch.eye(I) - eta_prime * torch.outer(x, x)) + eta_prime * torch.outer(u, x)
    argmin = torch.linalg.solve((torch.outer(x, x) + torch.eye(I) / eta).T, (torch.outer(u, x) + w_t / eta).T).T
    assert torch.allclose(step, closed_form, atol=1e-5)
    assert torch.allclose(step, argmin, atol=1e-5)
    w = step.clone().requires_grad_()
    objective = 0.5 * ((w @ x - u) ** 2).sum() + ((w - w_t) ** 2).sum() / (2 * eta)
    (gradient,) = torch.autograd.grad(objective, w)
    assert gradient.abs().max() < 1e-5                          # a stationary point of the convex objective


# -- gradients to meta parameters -----------------------------------------------------------------
@pytest.mark.parametrize("first_order", [False, True])
def test_every_meta_parameter_and_initial_state_gets_a_gradient(first_order):
    torch.manual_seed(0)
    model = tiny(first_order=first_order, chunk_mem=2, chunk_other=4).build_model(image_spec())
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    F.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name
    mixer = model.blocks[0].mixer
    for state in (mixer.proj_in0, mixer.proj_out0, mixer.mem_in0, mixer.mem_out0):
        for i in range(state.shape[1]):                       # each memory's own initial state
            assert state.grad[:, i].abs().max() > 0, (mixer.proj_names + ["mem"])[i]


def test_first_order_changes_gradients_not_values():
    torch.manual_seed(0)
    full = tiny(chunk_mem=2, chunk_other=4).build_model(image_spec())
    first = copy.deepcopy(full)
    for block in first.blocks:
        block.mixer.cfg = tiny(chunk_mem=2, chunk_other=4, first_order=True)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    assert torch.allclose(full(x), first(x), atol=1e-6)
    F.cross_entropy(full(x), y).backward()
    F.cross_entropy(first(x), y).backward()
    a, b = full.blocks[0].mixer.proj_in0.grad, first.blocks[0].mixer.proj_in0.grad
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("first_order", [False, True])
def test_explicit_fast_weights_give_the_dual_forms_values_and_gradients(first_order):
    """The explicit matrices are the dual form's factors multiplied out: the same reads and the
    same gradients to every meta parameter (full unroll and first order), in float64."""
    grads = {}
    for form in ("dual", "explicit"):
        torch.manual_seed(0)
        mod = SelfModTitans(tiny(chunk_mem=2, chunk_other=3, first_order=first_order, fast_weights=form)).double()
        x = torch.randn(2, 9, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        out = mod.read(x)
        (out ** 2).sum().backward()
        grads[form] = (out.detach(), {n: p.grad for n, p in mod.named_parameters()})
    (dual_out, dual), (explicit_out, explicit) = grads["dual"], grads["explicit"]
    assert torch.allclose(dual_out, explicit_out, rtol=1e-10, atol=1e-12)
    read_only = {"gate.weight", "out_norm.weight", "out.weight"}      # the output gate is outside `read`
    assert {n for n, g in dual.items() if g is None} == {n for n, g in explicit.items() if g is None} == read_only
    for name, g in dual.items():
        assert name in read_only or torch.allclose(g, explicit[name], rtol=1e-9, atol=1e-12), name


# -- no leaks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mixer", ["selfmod", "attention"])
def test_no_information_flows_between_examples_of_a_batch(mixer):
    torch.manual_seed(0)
    learner = tiny(mixer=mixer, chunk_mem=2, chunk_other=4)
    learner.setup(image_spec(), 0)
    x = torch.randn(5, 1, 8, 8)
    changed = x.clone()
    changed[2] += torch.randn(1, 8, 8)
    before, after = learner.predict(x), learner.predict(changed)
    keep = [0, 1, 3, 4]
    assert torch.allclose(before[keep], after[keep], atol=1e-6)
    assert not torch.allclose(before[2], after[2])


@pytest.mark.parametrize("mixer", ["selfmod", "attention"])
def test_no_future_token_reaches_an_earlier_position(mixer):
    torch.manual_seed(0)
    model = tiny(mixer=mixer, chunk_mem=2, chunk_other=4).build_model(image_spec())
    z = torch.randn(2, 12, 8)
    with torch.no_grad():
        for t in (0, 4, 7, 10):
            changed = z.clone()
            changed[:, t + 1:] += torch.randn(2, 12 - t - 1, 8)
            before, after = model.tokens(z), model.tokens(changed)
            assert torch.allclose(before[:, :t + 1], after[:, :t + 1], atol=1e-6), t
            assert not torch.allclose(before[:, t + 1:], after[:, t + 1:])


@pytest.mark.slow  # trains Hope (make test-fast leaves it out)
def test_predict_leaves_the_learner_unchanged_and_training_unaffected():
    scenario = small("class_il")
    a, b = tiny(epochs=1, levels=(1, 2, 4, 8)), tiny(epochs=1, levels=(1, 2, 4, 8))
    for learner in (a, b):
        learner.setup(scenario.spec, 0)
    a.fit_task(scenario[0].for_training())
    b.fit_task(scenario[0].for_training())
    snapshot = copy.deepcopy(vars(a))
    a.predict(scenario[0].x_test)
    a.predict(scenario[1].x_test)
    for key in ("step_", "pending_"):
        assert vars(a)[key] == snapshot[key]
    for p, q in zip(a.model_.parameters(), snapshot["model_"].parameters()):
        assert torch.equal(p, q)
    for acc, old in zip(sum(a.accum_, []), sum(snapshot["accum_"], [])):
        assert torch.equal(acc, old)
    a.fit_task(scenario[1].for_training())
    b.fit_task(scenario[1].for_training())
    for p, q in zip(a.model_.parameters(), b.model_.parameters()):
        assert torch.equal(p, q)


# -- the CMS level schedule -----------------------------------------------------------------------
def _train_steps(learner, scenario, n_steps):
    """Yield after each stream step, feeding minibatches of the first task."""
    task = scenario[0]
    mask = None
    for step in range(n_steps):
        idx = torch.arange(step * 8, step * 8 + 8) % len(task.y_train)
        learner.train_step(task.x_train[idx], task.y_train[idx], mask)
        yield step + 1


def _level_values(learner):
    return [[p.detach().clone() for p in ps] for ps in learner.level_params_]


def test_a_level_changes_exactly_every_period_steps():
    scenario = small("domain_il")
    periods = (1, 2, 3, 5)
    learner = tiny(levels=periods, cms_levels=3, level_lrs=(1e-3,) * 4, backbone_level=4)
    learner.setup(scenario.spec, 0)
    assert all(learner.level_params_)
    before = _level_values(learner)
    for step in _train_steps(learner, scenario, 12):
        after = _level_values(learner)
        for level, period in enumerate(periods):
            changed = [not torch.equal(p, q) for p, q in zip(before[level], after[level])]
            if step % period == 0:
                assert all(changed), (step, level)
            else:
                assert not any(changed), (step, level)
        before = after
    assert learner.step_ == 12


def test_levels_hold_the_right_parameters():
    learner = tiny(cms_levels=2, levels=(1, 4, 16), level_lrs=(1e-3, 1e-3, 3e-4), backbone_level=3)
    learner.setup(small().spec, 0)
    names = {id(p): n for n, p in learner.model_.named_parameters()}
    level_names = [{names[id(p)] for p in ps} for ps in learner.level_params_]
    assert {"head.weight", "head.bias"} <= level_names[0]
    assert all(".cms.0." in n for n in level_names[0] - {"head.weight", "head.bias"})
    assert all(".cms.1." in n for n in level_names[1])
    assert any("encoder" in n for n in level_names[2]) and any("mem_in0" in n for n in level_names[2])
    assert not any(".cms." in n for n in level_names[2])


@pytest.mark.parametrize("same_lrs", [False, True])
def test_all_ones_levels_are_fine_tuning_of_the_same_architecture(same_lrs):
    """levels=(1, 1, 1, 1) reproduces plain fine-tuning: per-level AdamW (or, with equal rates,
    one AdamW over the whole model) stepping on every minibatch."""
    scenario = small("class_il")
    lrs = (1e-3,) * 4 if same_lrs else (1e-3, 2e-3, 5e-4, 3e-4)
    learner = tiny(levels=(1, 1, 1, 1), level_lrs=lrs, cms_levels=3, chunk_mem=4, chunk_other=8)
    learner.setup(scenario.spec, 0)
    model = copy.deepcopy(learner.model_)
    params = dict(model.named_parameters())
    if same_lrs:
        optimizers = [torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)]
    else:
        groups = [[p for n, p in params.items() if learner.level_of(n) == level] for level in range(4)]
        optimizers = [torch.optim.AdamW(g, lr=lr, weight_decay=0.0) for g, lr in zip(groups, lrs)]
    task = scenario[0]
    for step in _train_steps(learner, scenario, 6):
        idx = torch.arange((step - 1) * 8, step * 8) % len(task.y_train)
        device = next(model.parameters()).device  # the reference runs where the learner does (CPU or GPU)
        loss = F.cross_entropy(model(task.x_train[idx].to(device)), task.y_train[idx].to(device))
        for opt in optimizers:
            opt.zero_grad()
        loss.backward()
        for opt in optimizers:
            opt.step()
    for name, p in learner.model_.named_parameters():
        assert torch.allclose(p, params[name], atol=1e-6, rtol=0), name


def test_partial_accumulations_carry_across_tasks_unless_flushed():
    scenario = small("class_il")
    for flush in (False, True):
        learner = tiny(levels=(1, 4, 16, 1000), level_lrs=(1e-3,) * 4, epochs=1, flush_at_task_end=flush)
        learner.setup(scenario.spec, 0)
        with pytest.warns(UserWarning, match="level 4"):
            learner.fit_task(scenario[0].for_training())
        steps = learner.step_
        assert steps == math.ceil(len(scenario[0].y_train) / 32)
        if flush:
            assert learner.pending_ == [0, 0, 0, 0]
        else:
            assert learner.pending_ == [0, steps % 4, steps % 16, steps]
            assert any(acc.abs().sum() > 0 for acc in learner.accum_[3])


# -- the learner ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_check_learner_passes_on_a_small_hope():
    """The conformance battery (about 8 short runs: slow-marked, about a minute on 2 CPUs)."""
    check_learner(tiny(d=32, n_tokens=4, chunk_mem=1, chunk_other=2, epochs=4, levels=(1, 1, 2, 4)))


def test_other_input_kinds():
    torch.manual_seed(0)
    vector = tiny().build_model(ScenarioSpec(2, 4, (30,), "class_il"))
    assert vector(torch.randn(3, 30)).shape == (3, 4)
    text = tiny(input_kind="tokens", vocab_size=20, pad_token=0, max_text_tokens=12)
    model = text.build_model(ScenarioSpec(2, 4, (16,), "class_il"))
    tokens = torch.randint(1, 20, (3, 16))
    tokens[:, 9:] = 0                                          # right padding, cut at 12 tokens
    with torch.no_grad():
        logits = model(tokens)
        assert logits.shape == (3, 4)
        changed = tokens.clone()
        changed[:, 12:] = 5                                    # beyond max_text_tokens: ignored
        assert torch.allclose(model(changed), logits)
        z, mask = model.encoder(tokens)
        h = model.tokens(z)
        assert torch.allclose(model.head(h[:, :9].mean(1)), logits, atol=1e-6)   # pads left out of the mean


def test_nan_loss_raises_divergence():
    scenario = small("class_il")
    learner = tiny(epochs=1, levels=(1, 2, 4, 8))
    learner.setup(scenario.spec, 0)
    task = scenario[0].for_training()
    broken = type(task)(task.task_id, task.protocol, task.classes, task.x_train * float("nan"), task.y_train)
    with pytest.raises(DivergenceError):
        learner.fit_task(broken)


@pytest.mark.parametrize("fields", [
    dict(levels=(1, 0, 4, 8)), dict(level_lrs=(1e-3,)), dict(cms_levels=5), dict(head_level=0),
    dict(mixer="rnn"), dict(inner_optimizer="adam"), dict(d=10, heads=4), dict(momentum=1.0),
    dict(selfmod=False, mixer="attention"),
])
def test_invalid_fields_are_usage_errors(fields):
    with pytest.raises(UsageError):
        Hope(**fields)


@pytest.mark.parametrize("fields", [
    dict(levels=(1, 1, 1, 1)), dict(selfmod=False), dict(mixer="attention"), dict(inner_optimizer="gd"),
    dict(momentum=0.0), dict(retention=False), dict(cms_levels=2), dict(cms_levels=1),
    dict(adaptive_k=False, adaptive_v=False), dict(adaptive_q=True), dict(inner_objective="dot"),
    dict(first_order=True), dict(memorize=False), dict(hidden_decay="alpha"),
])
@pytest.mark.slow  # trains Hope (make test-fast leaves it out)
def test_every_ablation_builds_and_trains(fields):
    scenario = small("task_il")
    learner = tiny(**{"epochs": 1, "levels": (1, 2, 2, 4), **fields})
    learner.setup(scenario.spec, 0)
    learner.fit_task(scenario[0].for_training())
    assert learner.predict(scenario[0].x_test[:4], task_id=0).shape == (4, scenario.n_outputs)


def test_forward_substitution_solves_the_unit_lower_systems_as_lapack_does():
    """The compiled path's written-out solve: a system shared by the memories (L with one memory)
    and one per memory, chunks of the two default sizes."""
    g = torch.Generator().manual_seed(0)
    for lower_shape, rhs_shape in (((2, 3, 1, 8, 8), (2, 3, 5, 8, 7)), ((2, 3, 5, 4, 4), (2, 3, 5, 4, 6))):
        lower = torch.randn(*lower_shape, generator=g, dtype=torch.float64).tril(-1)
        rhs = torch.randn(*rhs_shape, generator=g, dtype=torch.float64)
        expected = torch.linalg.solve_triangular(lower.expand(*rhs_shape[:3], *lower_shape[-2:]), rhs,
                                                 upper=False, unitriangular=True)
        torch.testing.assert_close(forward_substitution(lower, rhs), expected, rtol=1e-10, atol=1e-10)


# -- compile ------------------------------------------------------------------------------------
def test_compile_and_fast_weights_are_recorded_only_when_set():
    from clbench.configs import resolve
    from clbench.fields import field_values

    assert "compile" not in field_values(Hope())
    assert field_values(Hope(compile=True))["compile"] is True
    scenario = {"builder": "split", "dataset": "digits", "n_tasks": 5, "protocol": "task_il"}
    eager, compiled = (resolve(scenario, "hope", overrides, 0) for overrides in ({}, {"compile": True}))
    assert eager != compiled and "compile" not in eager["learner"]["fields"]
    assert "fast_weights" not in field_values(Hope()) and "fast_weights" not in eager["learner"]["fields"]
    assert resolve(scenario, "hope", {"fast_weights": "explicit"}, 0)["learner"]["fields"]["fast_weights"] == "explicit"


def test_compile_without_a_cpp_compiler_is_a_usage_error(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UsageError, match="C\\+\\+ compiler"):
        tiny(compile=True, device="cpu").setup(image_spec(), 0)


def test_hope_lm_refuses_compile():
    from clbench.learners.hope_lm import HopeLM

    with pytest.raises(UsageError, match="compile"):
        HopeLM(compile=True)


@pytest.mark.slow  # compiles a tiny Hope with inductor (about 4 minutes the first time on a 2-core machine)
@pytest.mark.skipif(not has_cpp_compiler(), reason="no C++ compiler for torch.compile on the CPU")
def test_a_compiled_hope_trains_and_predicts_as_the_eager_one():
    scenario = small("class_il")
    task = scenario[0].for_training()
    eager, compiled = tiny(epochs=1), tiny(epochs=1, compile=True)
    for learner in (eager, compiled):
        learner.setup(scenario.spec, 0)
    assert list(compiled.model_.state_dict()) == list(eager.model_.state_dict())
    batches = [slice(0, 32), slice(32, 45), slice(45, 77)]        # the second is padded to 32 when compiled
    losses = [[learner.train_step(task.x_train[rows], task.y_train[rows], None).item() for rows in batches]
              for learner in (eager, compiled)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    for p, q in zip(eager.model_.parameters(), compiled.model_.parameters()):
        assert torch.allclose(p, q, atol=1e-5)
    assert torch.allclose(eager.predict(scenario[0].x_test), compiled.predict(scenario[0].x_test), atol=1e-4)
