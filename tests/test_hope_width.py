"""Full-width projection memories of the Hope learner (`memory_width="full"`): M_k, M_v, M_η,
M_α map the whole width, beside the default per-head slices."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clbench.learners.hope import Hope
from clbench.learners.hope_modules import SelfModTitans
from clbench.scenario import ScenarioSpec

TINY = dict(d=8, heads=2, n_blocks=1, cms_levels=2, cms_expansion=2, n_tokens=16, chunk_mem=2, chunk_other=3)


def _titans(**fields) -> SelfModTitans:
    torch.manual_seed(0)
    mod = SelfModTitans(Hope(**{**TINY, "eta_max": 0.1, "alpha_init": 0.9, **fields}))
    with torch.no_grad():
        mod.eta_readout.mul_(4)
        mod.alpha_readout.mul_(4)
    return mod


def test_full_width_memories_map_the_whole_width():
    head, full = _titans(), _titans(memory_width="full")
    assert head.proj_in0.shape == (2, 4, 8, 4) and full.proj_in0.shape == (1, 4, 16, 8)
    assert full.proj_out0.shape == (1, 4, 8, 16) and full.mem_in0.shape == head.mem_in0.shape


def test_with_one_head_full_width_is_the_per_head_memory():
    """With one head the slice is the whole width: both settings build and compute the same."""
    head, full = _titans(heads=1), _titans(heads=1, memory_width="full")
    full.load_state_dict(head.state_dict())
    x = torch.randn(3, 10, 8)
    with torch.no_grad():
        assert torch.allclose(head.read(x), full.read(x), atol=1e-6)


@pytest.mark.parametrize("fields", [{}, dict(adaptive_k=False, adaptive_v=False), dict(adaptive_q=True)])
def test_full_width_memories_mix_the_heads(fields):
    """With q fixed (W_q = 0), head 0's reads depend on x only through its k, v, η, α: per-head
    memories see head 0's slice only, full-width memories the whole token."""
    reads = {}
    for width in ("head", "full"):
        mod = _titans(memory_width=width, **fields)
        with torch.no_grad():
            if "q" in mod.static:
                mod.static["q"].weight.zero_()
            x = torch.randn(2, 9, 8)
            changed = x.clone()
            changed[:, :, 4:] += torch.randn(2, 9, 4)             # head 1's slice only
            reads[width] = (mod.read(x)[..., :4], mod.read(changed)[..., :4])
    if not fields:                                                # static k, v and M_q mix heads anyway
        assert torch.allclose(*reads["head"], atol=1e-6)
    assert (reads["full"][0] - reads["full"][1]).abs().max() > 1e-4


@pytest.mark.parametrize("first_order", [False, True])
def test_full_width_initial_states_and_read_outs_get_gradients(first_order):
    torch.manual_seed(0)
    model = Hope(**TINY, memory_width="full", first_order=first_order).build_model(
        ScenarioSpec(n_tasks=5, n_outputs=10, input_shape=(1, 8, 8), protocol="class_il"))
    F.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.randint(0, 10, (4,))).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name
    mixer = model.blocks[0].mixer
    for i, name in enumerate(mixer.proj_names):
        assert mixer.proj_in0.grad[:, i].abs().max() > 0, name
