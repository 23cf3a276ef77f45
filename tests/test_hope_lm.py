"""hope-lm: Hope as a byte-level language model. Mechanism tests: reading a sequence in pieces
equals reading it whole (chunk size 1 included), no future leakage, in-context levels change
exactly at their period and step with the sum of their buffered gradients, persistent levels
step every P optimiser steps, every initial state receives gradient, a tiny model learns parity
and (aa)* (where a Transformer of its size does not), and the conformance battery."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clbench.errors import UsageError
from clbench.learners.hope_lm import GatedDeltaLM, HopeAttentionLM, HopeLM, TitansLM
from clbench.learners.hope_lm_modules import detached, fast_tensors
from clbench.learners.transformer import Transformer
from clbench.scenario import ScenarioSpec, text
from clbench.testing import check_learner

TINY = {"d": 16, "heads": 2, "n_blocks": 2, "cms_expansion": 2, "memory_expansion": 2}


@pytest.fixture(scope="module")
def stream():
    return text(["pydoc", "stdlib"], train_bytes=2048, eval_bytes=512, context=32, name="tiny-text")


def make(stream, seed: int = 0, **fields) -> HopeLM:
    learner = HopeLM(**{**TINY, **fields})
    learner.setup(stream.spec, seed)
    return learner


def batch(stream, n: int = 3):
    return stream[0].x_train[:n], stream[0].y_train[:n]


@pytest.mark.parametrize("chunk", [1, 4])
def test_reading_in_pieces_equals_reading_whole(stream, chunk: int) -> None:
    """Token-by-token (unit = chunk = 1: the sequential recurrence) or unit by unit, carrying the
    memories' state, gives the logits of one whole-sequence read with the same chunk sizes."""
    learner = make(stream, chunk_mem=chunk, chunk_other=chunk, unit=chunk, context_periods=(32,), cms_levels=2,
                   levels=(1, 1), level_lrs=(1e-3, 1e-3))
    x, _ = batch(stream)
    with torch.no_grad():
        whole = learner.model_(x)
        state = learner.model_.start(len(x))
        pieces = torch.cat([learner.model_.forward_unit(x[:, t:t + chunk], state, final=False)
                            for t in range(0, x.shape[1], chunk)], 1)
    assert torch.allclose(whole, pieces, atol=1e-5)
    assert not torch.allclose(whole[:, 8:], learner.model_(x[:, 8:])[:, :24], atol=1e-3)   # the state matters


@pytest.mark.parametrize("fields", [{}, {"mixer": "attention"}, {"carry": True}])
def test_no_future_leakage(stream, fields) -> None:
    """Changing bytes after position t leaves the logits up to t unchanged, in-context updates on."""
    learner = make(stream, unit=8, chunk_mem=4, chunk_other=8, context_periods=(8, 16), **fields)
    learner.train_step(*batch(stream, 4))
    x = stream[0].x_test[:4]
    for t in (5, 8, 19):
        changed = x.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 7) % 256
        a, b = learner.predict(x), learner.predict(changed)
        assert torch.allclose(a[:, :t + 1], b[:, :t + 1], atol=1e-5)
        assert not torch.allclose(a[:, t + 1:], b[:, t + 1:], atol=1e-3)


def unit_loss(learner: HopeLM, x, y, state):
    """One unit's next-byte loss read from `state` (mean over bytes, summed over sequences)."""
    logits = learner.model_.forward_unit(x, state, final=False)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(len(x), -1).mean(1).sum()


def unit_grads(learner: HopeLM, x, y, state, level: int):
    """Inner gradient of one unit's next-byte loss (summed over sequences) at `state`."""
    state = detached(state)
    return torch.autograd.grad(unit_loss(learner, x, y, state), fast_tensors(state, level), allow_unused=True)


def test_in_context_level_steps_every_period_with_the_sum_of_its_gradients(stream) -> None:
    """Level 2 (period 2 units) keeps its weights after unit 1, then moves by −lr·(g1 + g2);
    level 1 (period 1 unit) moves after every unit. Keeping only the last gradient would give
    −lr·g2, which this test tells apart."""
    learner = make(stream, unit=8, chunk_mem=4, chunk_other=8, context_periods=(8, 16), context_lr=0.5)
    x, y = batch(stream)
    state = learner.model_.start(len(x))
    w0 = [w.detach().clone() for w in fast_tensors(state, 1)]
    g1 = unit_grads(learner, x[:, :8], y[:, :8], state, level=1)
    learner.read(x[:, :8], y[:, :8], state, outer=False, final=False)
    after1 = [w.detach().clone() for w in fast_tensors(state, 1)]
    assert all(torch.equal(a, b) for a, b in zip(after1, w0))            # no step before the period
    assert any(not torch.equal(a, b) for a, b in zip(fast_tensors(state, 0), learner.model_.start(3)["fast"][0][0]))
    g2 = unit_grads(learner, x[:, 8:16], y[:, 8:16], state, level=1)
    learner.read(x[:, 8:16], y[:, 8:16], state, outer=False, final=False)
    after2 = [w.detach() for w in fast_tensors(state, 1)]
    for w, a, b, new in zip(w0, g1, g2, after2):
        a = torch.zeros_like(w) if a is None else a
        b = torch.zeros_like(w) if b is None else b
        assert torch.allclose(new, w - 0.5 * (a + b), atol=1e-5)
    moved = [(new - w).abs().max() for w, new in zip(w0, after2)]
    assert max(moved) > 1e-4
    only_last = [w - 0.5 * (torch.zeros_like(w) if b is None else b) for w, b in zip(w0, g2)]
    assert not all(torch.allclose(new, o, atol=1e-5) for new, o in zip(after2, only_last))
    assert all(buf is None for block in state["buffers"] for buf in block[1])   # the buffer was emptied


def test_a_training_read_takes_one_inner_backward_per_level_step(stream, monkeypatch) -> None:
    """In training a level's weights are fixed between its steps, so it steps by −lr·∂(Σ loss of
    its units)/∂W, taken in one backward pass when its period comes (not one per unit); a level
    whose period cannot come before a final read ends takes no gradient at all (a short last unit
    included)."""
    learner = make(stream, unit=8, chunk_mem=4, chunk_other=8, context_periods=(16, 32), context_lr=0.5)
    x, y = batch(stream)
    model = learner.model_
    reference = model.start(len(x))
    losses = [unit_loss(learner, x[:, t:t + 8], y[:, t:t + 8], reference) for t in (0, 8)]
    w0 = [w.detach().clone() for w in fast_tensors(reference, 0)]
    both = torch.autograd.grad(losses[0] + losses[1], fast_tensors(reference, 0), retain_graph=True)
    only_last = torch.autograd.grad(losses[1], fast_tensors(reference, 0))
    calls, grad = [], torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *args, **kwargs: calls.append(1) or grad(*args, **kwargs))
    state = model.start(len(x))
    learner.read(x, y, state, outer=True, final=True)        # 4 units: level 1 steps at 16; 32 is the end
    assert len(calls) == 1
    calls.clear()                            # 20 bytes: units of 8, 8 and 4; level 1 still steps at 16
    learner.read(x[:, :20], y[:, :20], model.start(len(x)), outer=True, final=True)
    assert len(calls) == 1
    stepped = [w.detach() for w in fast_tensors(state, 0)]
    assert all(torch.allclose(new, w - 0.5 * g, atol=1e-5) for new, w, g in zip(stepped, w0, both))
    assert not all(torch.allclose(new, w - 0.5 * g, atol=1e-5) for new, w, g in zip(stepped, w0, only_last))


def test_evaluation_learns_in_context_as_training_does(stream) -> None:
    """Levels whose periods span units take the same gradients at evaluation as in training,
    through the earlier units' memory writes too: evaluation cuts the graph only when no level
    has a pending loss (cut after every unit, it would miss unit 1's writes). Evaluation's inner
    gradients are constants, so the training side is `first_order`."""
    learner = make(stream, unit=8, chunk_mem=4, chunk_other=8, context_periods=(16, 32), eta_max=0.05, first_order=True)
    x, y = batch(stream)
    after = []
    for outer in (True, False):
        state = learner.model_.start(len(x), detached=not outer)
        learner.read(x, y, state, outer=outer, final=False)
        after.append([w.detach() for level in range(2) for w in fast_tensors(state, level)])
    start = [w.detach() for level in range(2) for w in fast_tensors(learner.model_.start(len(x)), level)]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*after))
    assert min((a - w).abs().max() for a, w in zip(after[0], start)) > 1e-4   # both levels stepped


def test_a_carried_sequence_hands_its_unstepped_gradients_to_the_next(stream) -> None:
    """With carry, a level whose period spans two windows (64 bytes of 32) buffers the first
    window's gradient when that window's graph ends, and steps at the end of the second."""
    learner = make(stream, unit=8, chunk_mem=4, chunk_other=8, context_periods=(8, 64), carry=True)
    x, y = stream[0].x_train, stream[0].y_train
    w0 = [w.detach().clone() for w in fast_tensors(learner.model_.start(4), 1)]
    learner.train_step(x[:4], y[:4])
    assert all(buf is not None and buf.abs().max() > 0 for block in learner.state_["buffers"] for buf in block[1])
    assert all(torch.equal(w, start) for w, start in zip(fast_tensors(learner.state_, 1), w0))
    learner.train_step(x[4:8], y[4:8])
    assert all(buf is None for block in learner.state_["buffers"] for buf in block[1])
    assert any(not torch.equal(w, start) for w, start in zip(fast_tensors(learner.state_, 1), w0))


def test_persistent_level_steps_exactly_every_period(stream) -> None:
    learner = make(stream, cms_levels=3, context_periods=(16,), levels=(1, 1, 3), level_lrs=(1e-3, 1e-3, 1e-2))
    x, y = batch(stream, 4)
    param = learner.model_.blocks[0].cms[2].mlp[0].weight
    previous, changed_at = param.detach().clone(), []
    for step in range(1, 8):
        learner.train_step(x, y)
        if not torch.equal(param, previous):
            changed_at.append(step)
        previous = param.detach().clone()
    assert changed_at == [3, 6]


@pytest.mark.parametrize("first_order", [False, True])
def test_a_carried_state_is_multiplied_out_at_each_sequence_boundary(stream, first_order: bool) -> None:
    """The dual form keeps a row per token written; a state carried across windows would grow
    with every window, so at a boundary the memories become explicit matrices, which read the
    next window as the rows did."""
    learner = make(stream, unit=8, chunk_mem=4, chunk_other=8, context_periods=(8, 16), carry=True,
                   first_order=first_order)
    x = stream[0].x_train
    for i in range(2):
        learner.train_step(x[4 * i:4 * i + 4], stream[0].y_train[4 * i:4 * i + 4])
        mixer = learner.state_["blocks"][0]["mixer"]
        layers = [layer for memories in (mixer["proj"], mixer["mem"]) for layer in (memories.w_in, memories.w_out)]
        assert all(layer.rows is None and layer.w is not None for layer in layers)
    model = learner.model_
    with torch.no_grad():
        state = model.start(4)
        for t in range(0, 32, 8):
            model.forward_unit(x[:4, t:t + 8], state, final=False)
        kept, boundary = detached(state), detached(state, boundary=True)
        assert kept["blocks"][0]["mixer"]["mem"].w_in.rows.shape[-2] == 32                 # a row per token written
        reads = [torch.cat([model.forward_unit(x[4:8, t:t + 8], s, final=False) for t in range(0, 32, 8)], 1)
                 for s in (kept, boundary)]
    assert torch.allclose(*reads, atol=1e-5)


@pytest.mark.parametrize("first_order", [False, True])
def test_every_initial_state_and_read_out_gets_gradient(stream, first_order: bool) -> None:
    learner = make(stream, unit=8, chunk_mem=4, chunk_other=8, context_periods=(8, 16), first_order=first_order)
    x, y = batch(stream)
    loss, _ = learner.read(x, y, learner.model_.start(len(x)), outer=True, final=True)
    loss.backward()
    dead = [name for name, p in learner.model_.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


@pytest.mark.parametrize(("cls", "fields"), [(HopeLM, {}), (HopeAttentionLM, {}), (TitansLM, {}), (GatedDeltaLM, {}),
                                             (HopeLM, {"fast_weights": "explicit", "carry": True}),
                                             (HopeLM, {"context_periods": (48, 16)}),   # slower level first
                                             (HopeLM, {"context_periods": (16, 48), "carry": True})])
def test_variants_train_and_predict(stream, cls, fields) -> None:
    learner = cls(**TINY, **fields)
    learner.setup(stream.spec, 0)
    loss = learner.train_step(*batch(stream, 4))
    assert torch.isfinite(loss)
    assert learner.predict(stream[0].x_test[:2]).shape == (2, 32, 256)


def test_bad_fields_are_refused() -> None:
    with pytest.raises(UsageError, match="context_periods"):
        HopeLM(context_periods=(24,))
    with pytest.raises(UsageError, match="unit"):
        HopeLM(unit=12)


@pytest.mark.slow
def test_check_learner_passes() -> None:
    check_learner(HopeLM(**TINY, level_lrs=(1e-2,) * 4))


def running_parity(n: int, length: int, generator: torch.Generator):
    """Random bit strings (bytes 0 and 1) and, at every position, the parity of the bits so far."""
    bits = torch.randint(0, 2, (n, length), generator=generator)
    return bits, bits.cumsum(1) % 2


def running_even_as(n: int, length: int, generator: torch.Generator):
    """Strings of a's (byte 97) and, at every position, whether the prefix so far is in (aa)*
    (1 after an even number of a's): counting modulo 2 over a constant input."""
    return torch.full((n, length), 97), (torch.arange(1, length + 1) % 2 == 0).long().expand(n, length)


def language_accuracy(learner, language, steps: int, train, seed: int = 0) -> torch.Tensor:
    """Train `learner` (initialised from `seed`) on fresh batches of 32 strings of 8 symbols from
    `language`, then its accuracy per position on 512 held-out strings."""
    learner.setup(ScenarioSpec(n_tasks=1, n_outputs=256, input_shape=(8,), protocol="domain_il"), seed)
    data = torch.Generator().manual_seed(1)
    for _ in range(steps):
        train(learner, *language(32, 8, data))
    x, y = language(512, 8, torch.Generator().manual_seed(2))
    with torch.no_grad():
        return (learner.predict(x).argmax(-1) == y).float().mean(0)


def tiny_hope(eta_max: float) -> HopeLM:
    """One block, d = 16, no in-context CMS level and chunks of one token (the memory is read
    after every write): the formal-language tests' Hope-LM."""
    return HopeLM(d=16, heads=2, n_blocks=1, cms_levels=1, levels=(1,), level_lrs=(1e-3,), cms_expansion=2,
                  memory_expansion=2, chunk_mem=1, chunk_other=1, unit=8, context_periods=(), eta_max=eta_max)


def learns_beyond_the_window(eta_max: float, language) -> bool:
    """Whether the tiny Hope-LM, from one of three initialisations, is more than 90% right at
    positions 5-8 (beyond its convolutions' window): restarts, as formal-language studies use,
    because one initialisation can stall: on (aa)*, seed 0 learned on one machine and stalled on
    another, an AVX-512 CPU (75% right, loss ~0.3 from step 1000 to 3000), where seeds 1 and 2
    learned (loss < 0.01 by step 1000). With a single seed the test hung on the CPU's rounding."""
    for seed in (0, 1, 2):
        learned = language_accuracy(tiny_hope(eta_max), language, 1500, train_hope, seed)
        if learned[4:].mean() > 0.9:
            return True
        print(f"seed {seed}: accuracy per position {learned.tolist()}")
    return False


def train_hope(learner, x, y) -> None:
    learner.train_step(x, y)


def train_transformer(learner, x, y) -> None:
    learner.train_step(x, y, None)


@pytest.mark.slow
def test_a_tiny_hope_lm_learns_parity_where_a_transformer_of_its_size_does_not() -> None:
    """The formal-language check: running parity of 8 bits needs a state that flips with every 1,
    which a recurrent memory can carry and a 1-layer Transformer of the same width cannot learn
    (it stays near chance beyond the first bits). Hope-LM with a larger inner rate than hope-lm's
    (eta_max 0.05: 1 gave NaN at the first step, 0.1 diverged after a few hundred)."""
    assert learns_beyond_the_window(0.05, running_parity)
    baseline = language_accuracy(Transformer(widths=(16, 1, 2), lr=1e-3), running_parity, 1500, train_transformer)
    assert baseline[4:].mean() < 0.75, baseline


@pytest.mark.slow
def test_a_tiny_hope_lm_learns_even_as_where_a_transformer_cannot() -> None:
    """(aa)*: over a string of a's, is the prefix of even length? Positions 5-8 lie beyond the
    causal convolutions' 4-token window, so only a state carried through the sequence tells them
    apart. A Transformer with rotary positions reads identical value vectors at every position of
    a constant input, so it gives the same prediction everywhere: exactly half right. eta_max
    0.02 (0.03 and 0.05 diverged within 410 steps on this constant input)."""
    assert learns_beyond_the_window(0.02, running_even_as)
    transformer = Transformer(widths=(16, 1, 2), lr=1e-3)
    baseline = language_accuracy(transformer, running_even_as, 1500, train_transformer)
    assert baseline.tolist() == [1.0, 0.0] * 4 or baseline.tolist() == [0.0, 1.0] * 4, baseline
