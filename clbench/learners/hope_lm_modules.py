"""The network of the `hope-lm` learner (clbench/learners/hope_lm.py): a byte-level Hope language
model run over a sequence one unit of tokens at a time, with in-context CMS levels whose fast
weights learn inside each sequence.

The token mixers (self-modifying Titans, attention) and the CMS blocks are those of the `hope`
classification learner (`hope_modules`); this module adds what a language model needs: a tied
byte embedding, a streaming state per sequence (the mixers' memories, an attention cache, the
in-context levels' fast weights and their gradient buffers) and the next-token read-out.

Shapes: B sequences, U tokens in one unit, d width, m = cms_expansion · d.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clbench.learners.hope_modules import EPS, CausalAttention, CMSBlock, FastLayer, SelfModTitans

VOCABULARY = 256


def attend_chunk(attention: CausalAttention, x: torch.Tensor, cache: list[torch.Tensor] | None):
    """`attention` over the next U tokens x (B, U, d) given the keys and values of the earlier
    tokens of the same sequences (`cache`, None at the start). Returns (output, new cache)."""
    B, U, d = x.shape
    q, k, v = attention.qkv(x).view(B, U, 3, attention.heads, d // attention.heads).permute(2, 0, 3, 1, 4)
    if cache is not None:
        k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
    before = k.shape[2] - U
    allowed = torch.arange(k.shape[2], device=x.device)[None, :] <= before + torch.arange(U, device=x.device)[:, None]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])    # written out: the full unroll
    y = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v  # differentiates it twice
    return attention.out(y.transpose(1, 2).reshape(B, U, d)), [k, v]


def fast_mlp(level: CMSBlock, h: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """A CMS block `h + MLP(RMSNorm(h))` with per-sequence weights (W1 (B, m, d), b1 (B, m),
    W2 (B, d, m), b2 (B, d)) in place of its own (which are their initial state)."""
    w1, b1, w2, b2 = weights
    hidden = F.silu(torch.baddbmm(b1.unsqueeze(1), level.norm(h), w1.transpose(1, 2)))
    return h + torch.baddbmm(b2.unsqueeze(1), hidden, w2.transpose(1, 2))


def _detach(value: Any, collapse: bool) -> Any:
    """A copy of a streaming state cut from the autograd graph (tensors, lists, dicts, memories);
    `collapse`: memory layers in the dual form become explicit (`FastLayer.collapsed`)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, dict):
        return {k: _detach(v, collapse) for k, v in value.items()}
    if isinstance(value, list):
        return [_detach(v, collapse) for v in value]
    if collapse and isinstance(value, FastLayer):
        return value.collapsed()
    if hasattr(value, "__dict__") and not isinstance(value, nn.Module):
        copy = object.__new__(type(value))
        copy.__dict__.update({k: _detach(v, collapse) if k != "cfg" else v for k, v in value.__dict__.items()})
        return copy
    return value


class HopeLMBlock(nn.Module):
    """`h = z + mixer(RMSNorm(z))` (gated output for the self-modifying memory), then the CMS
    chain, fastest level first; the first `n_context` levels run on per-sequence fast weights."""

    def __init__(self, cfg: Any):
        super().__init__()
        if cfg.selfmod:
            self.mixer_norm = nn.RMSNorm(cfg.d, eps=EPS)
            self.mixer = CausalAttention(cfg) if cfg.mixer == "attention" else SelfModTitans(cfg)
        else:
            self.mixer = None
        self.cms = nn.ModuleList(CMSBlock(cfg) for _ in range(cfg.cms_levels))

    def forward_unit(self, z: torch.Tensor, state: dict[str, Any], fast: list[list[torch.Tensor]],
                     final: bool) -> torch.Tensor:
        if self.mixer is not None:
            x = self.mixer_norm(z)
            if isinstance(self.mixer, SelfModTitans):
                y, state["mixer"] = self.mixer.stream(x, state.get("mixer"), final)
                z = z + self.mixer.out(self.mixer.out_norm(y) * F.silu(self.mixer.gate(x)))
            else:
                y, state["mixer"] = attend_chunk(self.mixer, x, state.get("mixer"))
                z = z + y
        for index, level in enumerate(self.cms):
            z = fast_mlp(level, z, fast[index]) if index < len(fast) else level(z)
        return z


class HopeLM(nn.Module):
    """Byte embedding, `n_blocks` HopeLMBlocks, RMSNorm and the output tied to the embedding.
    `start` makes a sequence's state, `forward_unit` reads the next unit of tokens and returns
    their next-byte logits (B, U, 256); `forward` runs whole sequences without in-context updates."""

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(VOCABULARY, cfg.d)
        nn.init.normal_(self.embedding.weight, std=0.02)     # near-uniform logits at the start
        self.blocks = nn.ModuleList(HopeLMBlock(cfg) for _ in range(cfg.n_blocks))
        self.norm = nn.RMSNorm(cfg.d, eps=EPS)

    @property
    def n_context(self) -> int:
        """How many CMS levels per block are in-context (fast weights per sequence)."""
        return min(self.cfg.cms_levels, len(self.cfg.context_periods))

    def start(self, batch: int, detached: bool = False) -> dict[str, Any]:
        """A new sequence's state: mixers empty, in-context weights at their meta-learned initial
        states (the CMS blocks' own parameters; `detached`: as fresh leaves, for evaluation)."""
        fast = []
        for block in self.blocks:
            per_block = []
            for level in list(block.cms)[:self.n_context]:
                weights = []
                for p in (level.mlp[0].weight, level.mlp[0].bias, level.mlp[2].weight, level.mlp[2].bias):
                    w = p.expand(batch, *p.shape)
                    weights.append(w.detach().clone().requires_grad_(True) if detached else w)
                per_block.append(weights)
            fast.append(per_block)
        return {"blocks": [{} for _ in self.blocks], "fast": fast,
                "buffers": [[[None] * 4 for _ in b] for b in fast], "position": 0}

    def forward_unit(self, tokens: torch.Tensor, state: dict[str, Any], final: bool) -> torch.Tensor:
        z = self.embedding(tokens)
        for block, block_state, fast in zip(self.blocks, state["blocks"], state["fast"]):
            z = block.forward_unit(z, block_state, fast, final)
        return self.norm(z) @ self.embedding.weight.t()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, 256) of whole sequences read in one unit (no in-context CMS update)."""
        return self.forward_unit(tokens, self.start(tokens.shape[0]), final=True)


def fast_tensors(state: dict[str, Any], level: int) -> list[torch.Tensor]:
    """The fast weights of in-context level `level` across all blocks, flattened."""
    return [w for block in state["fast"] for w in block[level]]


def detached(state: dict[str, Any], boundary: bool = False) -> dict[str, Any]:
    """The state cut from the graph, its fast weights leaves that require gradients, so the next
    unit or sequence can still take their inner gradients. `boundary`: the state is carried to the
    next sequence: the memories leave the dual form, whose rows (one per token written) would
    otherwise grow with every sequence read (a carried run's steps grew from 1.4 s to 8.1 s over its
    first 12 windows, batch 4), and every weight is a copy, not a view of a parameter. (An attention
    mixer's cache still grows: Hope-Attention with carry attends to every earlier window.)"""
    out = _detach(state, collapse=boundary)
    # at a boundary a copy: a level that has not stepped still views its parameters, which the outer step changes
    out["fast"] = [[[(w.clone() if boundary else w).requires_grad_(True) for w in level] for level in block]
                   for block in out["fast"]]
    return out
