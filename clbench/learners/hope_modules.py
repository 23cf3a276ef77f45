"""The networks of the `hope` learner (clbench/learners/hope.py): encoder, self-modifying Titans
memory, Hope-Attention, Continuum Memory System blocks and the classifier around them.

Written from docs/hope.md; equation numbers refer to arXiv 2512.24695.
Every module takes `cfg`, an object with the fields of `clbench.learners.hope.Hope`, so that
the defaults live in one place.

Shapes: B batch, T tokens, d width, H heads, h = d / H head width, M memories stacked in one
tensor, C tokens in one chunk, m = expansion · h hidden width of a memory.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6


def l2norm(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(EPS)


# -- the inner (in-context) update, the paper's self-modifying Titans and readings 1-7 of docs/hope.md --
#
# Every example has its own fast weights. Per token t of a chunk that starts at b, with the inner
# gradient g_t = d_t â_tᵀ taken at the boundary state W_b and â_t the layer's unit-norm input
# (readings 1, 2 and 4 of docs/hope.md):
#     S_t = β S_{t−1} − η_t d_t â_tᵀ,        W_t = α_t W_{t−1} − η_t (W_{t−1} â_t) â_tᵀ + S_t.
# Only the states at chunk boundaries are ever read, so a chunk of C tokens is applied in closed
# form. With local times τ = 0..C (τ = 0 the boundary),
#     P[τ,s] = Π_{i=s+1..τ} α_i,   Q[τ,j] = Σ_{s=j..τ} P[τ,s] β^{s−j},   R[τ] = Σ_{s=1..τ} P[τ,s] β^s,
#     W_C = P[C,0] W_b + R[C] S_b − Σ_j η_j (P[C,j] u_j + Q[C,j] d_j) â_jᵀ,
#     S_C = β^C S_b − Σ_j β^{C−j} η_j d_j â_jᵀ,
# where u_t = W_{t−1} â_t = P[t−1,0] W_b â_t + R[t−1] S_b â_t − Σ_{j<t} η_j (P[t−1,j] u_j + Q[t−1,j] d_j) â_jᵀ â_t
# solves a unit lower-triangular C×C system: all rank-1, no h×h matrix is formed. Without DGD
# ("gd") the u terms are absent: W_t = α_t W_{t−1} + S_t.


_compiling = getattr(torch.compiler, "is_compiling", lambda: False)


def _constants(n: int, beta: float, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The masks and powers of β that every chunk of n tokens uses: made once, not per chunk, in
    eager mode; under torch.compile made inside the graph, which is traced once anyway (the cache
    would only draw a warning from dynamo)."""
    if _compiling():
        return _make_constants(n, beta, device, dtype)
    return _cached_constants(n, beta, device, dtype)


def _make_constants(n: int, beta: float, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gap = torch.arange(n, device=device, dtype=dtype)
    gap = gap[:, None] - gap[None, :]
    return {"lower": torch.ones(n + 1, n + 1, dtype=torch.bool, device=device).tril(),
            "strict": torch.ones(n, n, dtype=torch.bool, device=device).tril(-1),
            "powers": torch.where(gap >= 0, beta ** gap.clamp_min(0), torch.zeros_like(gap)),
            "rising": beta ** torch.arange(1, n + 1, device=device, dtype=dtype),         # β^1 .. β^C
            "tail": beta ** torch.arange(n - 1, -1, -1, device=device, dtype=dtype)}      # β^{C−j}


_cached_constants = functools.lru_cache(maxsize=64)(_make_constants)


def small_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for the memories' small per-example products (sizes of a few to a few dozen). Eagerly,
    the matrix product. Under torch.compile, the broadcast product summed over the inner axis, which
    inductor fuses into one loop: a batched GEMM library spends most of its time per matrix at these
    sizes (e.g. 512 products of 8×8 by 8×32 at a few GFLOP/s)."""
    if _compiling():
        return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)
    return a @ b


def chunk_tables(eta: torch.Tensor, log_alpha: torch.Tensor, beta: float):
    """P (B, H, 1, C+1, C+1), Q (B, H, 1, C+1, C) and R (B, H, 1, C+1) of one chunk from its
    η and log α (B, H, C); the extra axis broadcasts over memories."""
    const = _constants(eta.shape[-1], beta, eta.device, eta.dtype)
    cum = F.pad(log_alpha.cumsum(-1), (1, 0))
    P = torch.where(const["lower"], cum[..., :, None] - cum[..., None, :], float("-inf")).exp()
    R = P[..., 1:] @ const["rising"]
    return P.unsqueeze(2), (P[..., 1:] @ const["powers"]).unsqueeze(2), R.unsqueeze(2)


def forward_substitution(lower: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """X with (I + L) X = rhs, row by row (X_i = rhs_i − Σ_{j<i} L_ij X_j), for torch.compile: a
    chunk has a few rows, and written out the solve fuses with the operations around it, where
    inductor calls the library's triangular solve as an external kernel and materialises its
    inputs and outputs (the default compiled Hope step: 35.6 ms instead of 42.4)."""
    rows = [rhs[..., 0, :]]
    for i in range(1, rhs.shape[-2]):
        done = torch.stack(rows, -2)                                   # (..., i, O)
        rows.append(rhs[..., i, :] - (lower[..., i, :i].unsqueeze(-1) * done).sum(-2))
    return torch.stack(rows, -2)


def unit_lower_solve(lower: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """X with (I + L) X = rhs for strictly lower-triangular L (B, H, 1|M, C, C), rhs (B, H, M, C, O).
    A system shared by the memories (L with one memory) is solved once for all of them."""
    if _compiling():
        return forward_substitution(lower, rhs)
    B, H, n_mem, n, width = rhs.shape
    if lower.shape[2] == 1 and n_mem > 1:
        stacked = rhs.transpose(2, 3).reshape(B, H, 1, n, n_mem * width)
        x = torch.linalg.solve_triangular(lower, stacked, upper=False, unitriangular=True)
        return x.view(B, H, n, n_mem, width).transpose(2, 3)
    return torch.linalg.solve_triangular(lower.expand(B, H, n_mem, n, n), rhs, upper=False, unitriangular=True)


def chunk_left(a_hat, d, boundary_a, s_a, eta, tables, decay: bool):
    """The write factors of one chunk: `left` (B, H, M, C, O) with W_C = P[C,0] W_b + R[C] S_b − leftᵀ â.
    â (B, H, 1|M, C, I) unit inputs, d (B, H, M, C, O) gradient factors, `boundary_a` = W_b â_t,
    `s_a` = S_b â_t (None for a zero momentum), η (B, H, C), `tables` from `chunk_tables`."""
    P, Q, R = tables
    n = a_hat.shape[-2]
    e = eta.unsqueeze(2)                                              # (B, H, 1, C)
    if not decay:
        return (e * Q[..., n, :]).unsqueeze(-1) * d
    rhs = P[..., :-1, 0, None] * boundary_a                           # rows t = 1..C use τ = t − 1
    if s_a is not None:
        rhs = rhs + R[..., :-1, None] * s_a
    gram = small_mm(a_hat, a_hat.transpose(-1, -2))
    strict = _constants(n, 0.0, d.device, d.dtype)["strict"]
    rhs = rhs - small_mm(torch.where(strict, gram * (e.unsqueeze(-2) * Q[..., :-1, :]), 0.0), d)
    u = unit_lower_solve(torch.where(strict, gram * (e.unsqueeze(-2) * P[..., :-1, 1:]), 0.0), rhs)
    return (e * P[..., n, 1:]).unsqueeze(-1) * u + (e * Q[..., n, :]).unsqueeze(-1) * d


def momentum_rows(d, eta, beta: float):
    """The momentum written by one chunk, as factors on its rows: S_C = β^C S_b + (these)ᵀ â."""
    tail = _constants(d.shape[-2], beta, d.device, d.dtype)["tail"]                    # β^{C−j}
    return -(eta.unsqueeze(2) * tail).unsqueeze(-1) * d


def chunk_write(w, s, a_hat, d, boundary_a, eta, tables, beta: float, decay: bool, first_order: bool = False):
    """One layer's fast weights after a chunk, in the closed form above, as explicit matrices
    (`FastLayer`'s explicit form, and the reference for its dual form, which keeps the same state as factors).

    w (B|1, H, M, O, I) is the boundary state W_b, s the momentum S_b (None for zero); â (B, H,
    1|M, C, I) the unit inputs; d (B, H, M, C, O) the gradient factors; `boundary_a` = W_b â_t
    (a by-product of the inner gradient); η (B, H, C); `tables` from `chunk_tables`. With
    `first_order`, W_b and S_b enter the write detached: the new state is W_b plus a write that
    depends on the chunk's own inputs only (reading 7 of docs/hope.md). Returns (W_C, S_C).
    """
    P, _, R = tables
    n = a_hat.shape[-2]
    w_fixed = w.detach() if first_order else w
    s_fixed = None if s is None else (s.detach() if first_order else s)
    s_a = None if s_fixed is None else a_hat @ s_fixed.transpose(-1, -2)
    left = chunk_left(a_hat, d, boundary_a, s_a, eta, tables, decay)
    carry = P[..., n, 0, None, None]
    w_new = w + (carry - 1) * w_fixed if first_order else carry * w
    if s_fixed is not None:
        w_new = w_new + R[..., n, None, None] * s_fixed
    w_new = w_new - left.transpose(-1, -2) @ a_hat
    s_new = momentum_rows(d, eta, beta).transpose(-1, -2) @ a_hat
    if s_fixed is not None:
        s_new = s_new + beta ** n * s_fixed
    return w_new, s_new


def _apply(w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """z Wᵀ for row vectors z (B, H, 1|M, C, I) and weights W shared by the batch (H, M, O, I)."""
    if z.shape[2] == 1:
        return torch.einsum("bhci,hmoi->bhmco", z.squeeze(2), w)
    return torch.einsum("bhmci,hmoi->bhmco", z, w)


class FastLayer:
    """One layer of a group of memories through one batch of sequences. By default in the dual form,
    where its per-example fast weights are never formed. The state is kept as

        W = c · W_0 + c' · sg(W_0) + Pᵀ A + Dᵀ sg(A),        S = Σᵀ sg?(A)

    with W_0 (H, M, O, I) the meta-learned initial state shared by the batch, A (B, H, 1|M, t, I)
    the unit inputs â of every token written so far (t grows by C per chunk), P, D, Σ (B, H, M, t, O)
    their coefficients, c, c' (B, H, M, 1, 1) scalars and sg the stop-gradient. A read is then one
    shared matrix product and two small Gram matrices: W z = c W_0 z + (z Aᵀ) P + ... A chunk's
    write rescales the coefficients and appends the chunk's rows (`chunk_left`). D, c' and the
    detached momentum serve `first_order` (the boundary state enters each write detached); they
    stay empty otherwise, and the values equal the explicit form's (`chunk_write`) exactly.

    A read of the dual form costs O(t) per token, so a sequence costs O(T²): cheapest while t is
    below about I·O/(I+O) rows, as in the classifier's 16 tokens. With `explicit` the layer keeps W
    and S as per-example matrices (B, H, M, O, I) written by `chunk_write`, O(1) per token: the
    cheaper form for a language model's long sequences (same values, other rounding)."""

    def __init__(self, w0: torch.Tensor, first_order: bool, explicit: bool = False):
        self.w0, self.first_order, self.explicit = w0, first_order, explicit
        self.c = self.c_dead = None            # None: c = 1, c' = 0
        self.rows = self.P = self.D = self.S = None
        self.w = self.s = None                 # explicit: W and S per example (B, H, M, O, I); None: W_0, 0

    def apply(self, z: torch.Tensor, fixed: bool = False) -> torch.Tensor:
        """z Wᵀ, z (B, H, 1|M, C, I) -> (B, H, M, C, O); with `fixed`, W is seen detached."""
        if self.w is not None:
            return small_mm(z, (self.w.detach() if fixed else self.w).transpose(-1, -2))
        if fixed:
            out = _apply(self.w0.detach(), z)
            scale = self._total_c()
            if scale is not None:
                out = out * scale.detach()
            if self.rows is not None:
                coef = self.P if self.D is None else self.P + self.D
                out = out + small_mm(small_mm(z, self.rows.detach().transpose(-1, -2)), coef.detach())
            return out
        out = _apply(self.w0, z)
        if self.c is not None:
            out = out * self.c
        if self.c_dead is not None:
            out = out + self.c_dead * _apply(self.w0.detach(), z)
        if self.rows is not None:
            out = out + small_mm(small_mm(z, self.rows.transpose(-1, -2)), self.P)
            if self.D is not None:
                out = out + small_mm(small_mm(z, self.rows.detach().transpose(-1, -2)), self.D)
        return out

    def times(self, e: torch.Tensor) -> torch.Tensor:
        """e W for row vectors e (B, H, M, C, O) -> (B, H, M, C, I) (W seen detached with first_order)."""
        if self.w is not None:
            return small_mm(e, self.w.detach() if self.first_order else self.w)
        w0 = self.w0.detach() if self.first_order else self.w0
        out = torch.einsum("bhmco,hmoi->bhmci", e, w0)
        scale = self._total_c() if self.first_order else self.c
        if scale is not None:
            out = out * (scale.detach() if self.first_order else scale)
        if self.rows is not None:
            if self.first_order:
                coef = (self.P if self.D is None else self.P + self.D).detach()
                out = out + small_mm(small_mm(e, coef.transpose(-1, -2)), self.rows.detach())
            else:
                out = out + small_mm(small_mm(e, self.P.transpose(-1, -2)), self.rows)
        return out

    def collapsed(self) -> FastLayer:
        """This layer's current weights, copied, detached and in the explicit form (for a state
        carried to the next sequence: the dual form's rows would grow with every sequence read,
        and its initial state is a view of a parameter that the outer step changes)."""
        layer = FastLayer(self.w0.detach().clone() if self.w is None else None, self.first_order, explicit=True)
        with torch.no_grad():
            if self.w is not None:
                layer.w, layer.s = self.w.clone(), None if self.s is None else self.s.clone()
            elif self.rows is not None:
                scale = self._total_c()
                coef = self.P if self.D is None else self.P + self.D
                layer.w = (layer.w0 if scale is None else scale * layer.w0) + coef.transpose(-1, -2) @ self.rows
                layer.s = self.S.transpose(-1, -2) @ self.rows
        return layer

    def _total_c(self):
        if self.c_dead is None:
            return self.c
        return self.c_dead + (1 if self.c is None else self.c)

    def write(self, a_hat, d, boundary_a, eta, tables, beta: float, decay: bool) -> None:
        """One chunk's write: `chunk_write` on the explicit matrices, or its closed form applied to the factors."""
        if self.explicit:
            w = self.w0.unsqueeze(0) if self.w is None else self.w
            self.w, self.s = chunk_write(w, self.s, a_hat, d, boundary_a, eta, tables, beta, decay, self.first_order)
            return
        P, _, R = tables
        n = a_hat.shape[-2]
        carry, r = P[..., n, 0, None, None], R[..., n, None, None]                     # (B, H, 1, 1, 1)
        S = None if self.S is None else (self.S.detach() if self.first_order else self.S)
        rows = None if self.rows is None else (self.rows.detach() if self.first_order else self.rows)
        s_a = None if S is None else small_mm(small_mm(a_hat, rows.transpose(-1, -2)), S)
        left = chunk_left(a_hat, d, boundary_a, s_a, eta, tables, decay)
        new_s = momentum_rows(d, eta, beta)
        if self.first_order:                  # W ← W + (carry − 1) sg(W) + R sg(S) − leftᵀ â
            total = self._total_c()
            self.c_dead = (0 if self.c_dead is None else self.c_dead) + (carry - 1) * (
                1 if total is None else total.detach())
            if self.rows is not None:
                coef = (self.P if self.D is None else self.P + self.D).detach()
                self.D = (0 if self.D is None else self.D) + (carry - 1) * coef + r * S
                self.S = beta ** n * S
        else:                                 # W ← carry W + R S − leftᵀ â
            self.c = carry if self.c is None else carry * self.c
            if self.rows is not None:
                self.P = carry * self.P + r * self.S
                self.S = beta ** n * self.S
        self._append(a_hat, -left, new_s)

    def _append(self, a_hat, p_rows, s_rows) -> None:
        if self.rows is None:
            self.rows, self.P, self.S = a_hat, p_rows, s_rows
            if self.first_order:
                self.D = torch.zeros_like(p_rows)
            return
        if self.rows.shape[2] != a_hat.shape[2]:                # rows shared by the memories, or not
            self.rows = self.rows.expand(-1, -1, a_hat.shape[2], -1, -1)
            a_hat = a_hat.expand(-1, -1, self.rows.shape[2], -1, -1)
        self.rows = torch.cat([self.rows, a_hat], -2)
        self.P = torch.cat([self.P, p_rows], -2)
        self.S = torch.cat([self.S, s_rows], -2)
        if self.D is not None:
            self.D = torch.cat([self.D, torch.zeros_like(p_rows)], -2)


class Memories:
    """A group of M memories `M(z) = z + W_out silu(W_in z)` sharing a chunk size, through one
    batch of sequences: per-example fast weights W_in (m × h) and W_out (h × m) per head and
    memory, and their momenta, starting from the meta-learned initial states (H, M, ·, ·), kept
    in the form `cfg.fast_weights` names (`FastLayer`)."""

    def __init__(self, w_in0, w_out0, cfg: Any):
        explicit = cfg.fast_weights == "explicit"
        self.w_in = FastLayer(w_in0, cfg.first_order, explicit)
        self.w_out = FastLayer(w_out0, cfg.first_order, explicit)
        self.cfg = cfg

    def forward(self, z, fixed: bool = False):
        """(M(z), pre-activation, activation) at the current state; z (B, H, 1|M, C, h).
        With `fixed`, the state is seen detached (first-order writes)."""
        pre = self.w_in.apply(z, fixed)
        act = F.silu(pre)
        return z + self.w_out.apply(act, fixed), pre, act

    def write(self, k, v, eta, tables, read: torch.Tensor | None = None):
        """One chunk of inner updates from the current (boundary) state M_b: targets v̂ = M_b(v),
        inner gradients of ℒ(M; k, v̂) at M_b, then the DGD + momentum recurrence over the chunk.
        Returns M_b(read) when `read` is given, computed in the same pass.

        ℒ = ||M(k) − v̂||² ("l2") or −⟨M(k), v̂⟩ ("dot"). v̂ is a fixed target of the inner loss
        (reading 6 of docs/hope.md): it enters the closed-form gradient only through the error signal, and the
        outer gradient still flows through it to v. The gradient w.r.t. W_in is δ kᵀ and w.r.t.
        W_out is e aᵀ = (e ||a||) âᵀ: rank-1, with the layer's unit input as â (reading 2 of docs/hope.md).
        k, v, read (B, H, C, h); η (B, H, C).
        """
        cfg, n = self.cfg, k.shape[-2]
        result = None
        if read is not None and cfg.first_order:                      # reads see the state attached
            result, read = self.forward(read.unsqueeze(2))[0], None
        inputs = [v, k] if read is None else [read, v, k]
        out, pre, act = self.forward(torch.cat(inputs, -2).unsqueeze(2), fixed=cfg.first_order)
        first = out.shape[-2] - 2 * n
        if read is not None:
            result = out[..., :first, :]
        v_hat, out = out[..., first:first + n, :], out[..., first + n:, :]
        pre, act = pre[..., first + n:, :], act[..., first + n:, :]
        err = 2 * (out - v_hat) if cfg.inner_objective == "l2" else -v_hat     # ∂ℒ/∂M(k)
        act_norm = act.norm(dim=-1, keepdim=True).clamp_min(EPS)
        sig = torch.sigmoid(pre)
        delta = self.w_out.times(err) * (sig * (1 + pre * (1 - sig)))
        dgd = cfg.inner_optimizer == "dgd"
        k = k.unsqueeze(2)
        self.w_in.write(k, delta, pre, eta, tables, cfg.momentum, dgd)
        self.w_out.write(act / act_norm, err * act_norm, (out - k) / act_norm, eta, tables, cfg.momentum,
                         dgd and cfg.hidden_decay == "dgd")
        return result


def causal_conv(conv: nn.Conv1d, x: torch.Tensor, history: torch.Tensor | None = None):
    """Depthwise causal convolution over tokens, written out (faster than conv1d at this size).
    x (B, d, L); history (B, d, w−1) holds the inputs before x (zeros at the start).
    Returns (y, new history)."""
    width, length = conv.kernel_size[0], x.shape[-1]
    if history is None:
        history = x.new_zeros(x.shape[0], x.shape[1], width - 1)
    full = torch.cat([history, x], dim=-1)
    y = conv.bias[:, None] + sum(conv.weight[:, 0, i, None] * full[..., i:i + length] for i in range(width))
    return y, full[..., full.shape[-1] - (width - 1):]


# -- token mixers -------------------------------------------------------------------------------
class SelfModTitans(nn.Module):
    """Self-modifying Titans (§4, arXiv Eqs. 76-93) with the clbench readings of §7.

    Per head, residual 2-layer memories M_k, M_v, M_η, M_α (the "projection" memories, updated
    every `chunk_other` tokens) and M_mem (every `chunk_mem` tokens), each starting from its
    meta-learned initial state at every example. q = l2norm(conv(x W_q)), k = l2norm(conv(M_k(x))),
    v = conv(M_v(x)), η = η_max·sigmoid(read-out of M_η(x)), α = sigmoid(read-out of M_α(x)); every
    memory regresses k onto its self-generated target v̂ = M(v) by DGD with momentum and retention
    α. Reads, k, v, η, α and all inner gradients of a chunk use the state at the chunk's start
    (`t − t mod C`, reading 1 of docs/hope.md); the decay/momentum recurrence runs over every token. The
    projection memories never read M_mem, so they run first over the whole sequence, then M_mem.
    Output (Titans-style gate): W_o (RMSNorm(y) ⊙ silu(x W_g)).

    `memory_width="full"`: M_k, M_v, M_η, M_α (and M_q) map the whole width d, as in the paper,
    instead of each head's slice (hidden width memory_expansion · d); their outputs are then cut
    into heads. Their writes use the whole-width k (unit norm over d) and v, and one η and α per
    token: the mean of the heads' η and the geometric mean of their α. M_mem stays per head.
    """

    def __init__(self, cfg: Any):
        super().__init__()
        d, heads = cfg.d, cfg.heads
        self.cfg, self.heads, self.head_dim = cfg, heads, d // heads
        h, m = self.head_dim, cfg.memory_expansion * (d // heads)
        self.proj_names = [n for n, on in (("k", cfg.adaptive_k), ("v", cfg.adaptive_v), ("q", cfg.adaptive_q),
                                           ("eta", True), ("alpha", cfg.retention)) if on]
        n_proj = len(self.proj_names)
        # meta-learned initial states M_□,0, per head and memory (docs/hope.md: "all initial states"); with
        # full-width memories the projection memories are one "head" of width d
        self.full_width = cfg.memory_width == "full"
        p_heads, p_h, p_m = (1, d, cfg.memory_expansion * d) if self.full_width else (heads, h, m)
        self.proj_in0 = nn.Parameter(torch.randn(p_heads, n_proj, p_m, p_h) / math.sqrt(p_h))
        self.proj_out0 = nn.Parameter(torch.randn(p_heads, n_proj, p_h, p_m) / math.sqrt(p_m))
        self.mem_in0 = nn.Parameter(torch.randn(heads, 1, m, h) / math.sqrt(h))
        self.mem_out0 = nn.Parameter(torch.randn(heads, 1, h, m) / math.sqrt(m))
        # static projections where a memory is switched off (docs/hope.md, ablations: adaptive_k/v=False; q static by default)
        self.static = nn.ModuleDict({n: nn.Linear(d, d, bias=False)
                                     for n in ("k", "v", "q") if n not in self.proj_names})
        self.conv = nn.ModuleDict({n: nn.Conv1d(d, d, cfg.conv_window, groups=d) for n in ("q", "k", "v")})
        # outer-level read-outs of η and α per head (reading 5 of docs/hope.md)
        self.eta_readout = nn.Parameter(torch.randn(heads, h) / h)
        self.eta_bias = nn.Parameter(torch.zeros(heads))
        self.alpha_readout = nn.Parameter(torch.randn(heads, h) / h)
        self.alpha_bias = nn.Parameter(torch.full((heads,), math.log(cfg.alpha_init / (1 - cfg.alpha_init))))
        self.gate = nn.Linear(d, d, bias=False)
        self.out_norm = nn.RMSNorm(d, eps=EPS)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.out_norm(self.read(x)) * F.silu(self.gate(x)))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:      # (B, d, C) -> (B, H, C, h)
        return x.view(x.shape[0], self.heads, self.head_dim, x.shape[-1]).transpose(-1, -2)

    def _channels(self, x: torch.Tensor) -> torch.Tensor:   # (B, H, C, h) -> (B, d, C)
        return x.transpose(-1, -2).reshape(x.shape[0], -1, x.shape[2])

    def read(self, x: torch.Tensor) -> torch.Tensor:
        """The memory read-outs y_t = M_mem(q_t) for a (B, T, d) sequence, before the output gate."""
        return self.stream(x)[0]

    def start(self) -> dict[str, Any]:
        """The state of a new sequence: every memory at its meta-learned initial state, no history."""
        return {"proj": Memories(self.proj_in0, self.proj_out0, self.cfg),
                "mem": Memories(self.mem_in0, self.mem_out0, self.cfg),
                "history": {n: None for n in ("k", "v", "q") if n in self.proj_names},
                "static": {n: None for n in self.static}}

    def stream(self, x: torch.Tensor, state: dict[str, Any] | None = None,
               final: bool = True) -> tuple[torch.Tensor, dict[str, Any]]:
        """Read-outs (B, T, d) of the next T tokens of sequences whose earlier tokens left `state`
        (None: a new sequence), and the state after them. A sequence may be fed in pieces whose
        lengths are multiples of both chunk sizes: the result is the same as in one piece. With
        `final`, no piece follows, so the last chunks' writes (never read) are skipped."""
        cfg = self.cfg
        B, T, d = x.shape
        state = self.start() if state is None else state
        write = cfg.memorize
        xh = x.view(B, T, self.heads, self.head_dim).transpose(1, 2)          # (B, H, T, h)
        full = self.full_width
        if full:                                                  # one "head" of width d
            xh = x.unsqueeze(1)                                   # (B, 1, T, d)
        split = lambda t: t.view(B, 1, t.shape[2], self.heads, self.head_dim).squeeze(1).transpose(1, 2)
        merge = lambda t: t.transpose(1, 2).reshape(B, 1, t.shape[2], d)    # (B, H, C, h) -> (B, 1, C, d)
        # 1. the projection memories, chunk by chunk: k, v, (q), η, α of every token
        seqs = {}
        for n, lin in self.static.items():
            y, state["static"][n] = causal_conv(self.conv[n], lin(x).transpose(1, 2), state["static"][n])
            seqs[n] = self._heads(y)
        proj, history = state["proj"], state["history"]
        parts: dict[str, list[torch.Tensor]] = {n: [] for n in [*history, "eta", "log_alpha"]}
        for t0 in range(0, T, cfg.chunk_other):
            n = min(cfg.chunk_other, T - t0)
            out = dict(zip(self.proj_names, proj.forward(xh[:, :, None, t0:t0 + n])[0].unbind(2)))
            for name in history:
                y, history[name] = causal_conv(self.conv[name], self._channels(out[name]), history[name])
                out[name] = self._heads(y)
            if full:
                out.update({name: split(out[name]) for name in ("eta", "alpha") if name in out})
            out["eta"] = cfg.eta_max * torch.sigmoid((out["eta"] * self.eta_readout[:, None]).sum(-1)
                                                     + self.eta_bias[:, None])
            out["log_alpha"] = (F.logsigmoid((out["alpha"] * self.alpha_readout[:, None]).sum(-1)
                                             + self.alpha_bias[:, None]) if cfg.retention else torch.zeros_like(out["eta"]))
            for name, chunks in parts.items():
                chunks.append(out[name])
            if write and (not final or t0 + n < T):              # the last chunk's write is never read
                k = out["k"] if "k" in out else seqs["k"][:, :, t0:t0 + n]
                v = out["v"] if "v" in out else seqs["v"][:, :, t0:t0 + n]
                eta, log_alpha = out["eta"], out["log_alpha"]
                if full:
                    k, v = merge(k), merge(v)
                    eta, log_alpha = eta.mean(1, keepdim=True), log_alpha.mean(1, keepdim=True)
                proj.write(l2norm(k), v, eta, chunk_tables(eta, log_alpha, cfg.momentum))
        seqs.update({n: torch.cat(p, 2) for n, p in parts.items()})
        q, k, v = l2norm(seqs["q"]), l2norm(seqs["k"]), seqs["v"]
        # 2. the main memory, chunk by chunk: read y_t = M_mem(q_t) at the chunk start, then write
        mem = state["mem"]
        reads = []
        for t0 in range(0, T, cfg.chunk_mem):
            n = min(cfg.chunk_mem, T - t0)
            span = slice(t0, t0 + n)
            if not write or (final and t0 + n >= T):
                reads.append(mem.forward(q[:, :, None, span])[0].squeeze(2))
            else:
                eta = seqs["eta"][..., span]
                tables = chunk_tables(eta, seqs["log_alpha"][..., span], cfg.momentum)
                reads.append(mem.write(k[:, :, span], v[:, :, span], eta, tables, read=q[:, :, span]).squeeze(2))
        y = torch.cat(reads, dim=2)                               # (B, H, T, h)
        return y.transpose(1, 2).reshape(B, T, d), state


class CausalAttention(nn.Module):
    """Softmax self-attention with a causal mask, in place of the memory (Hope-Attention)."""

    def __init__(self, cfg: Any):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.d, 3 * cfg.d, bias=False)
        self.out = nn.Linear(cfg.d, cfg.d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(B, T, d))


# -- blocks and the classifier ------------------------------------------------------------------
class CMSBlock(nn.Module):
    """One CMS level: `h + MLP(RMSNorm(h))`, expansion `cms_expansion`, SiLU (reading 10 of docs/hope.md)."""

    def __init__(self, cfg: Any):
        super().__init__()
        self.norm = nn.RMSNorm(cfg.d, eps=EPS)
        self.mlp = nn.Sequential(nn.Linear(cfg.d, cfg.cms_expansion * cfg.d), nn.SiLU(),
                                 nn.Linear(cfg.cms_expansion * cfg.d, cfg.d))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.mlp(self.norm(h))


class HopeBlock(nn.Module):
    """`h = z + mixer(RMSNorm(z))`, then the CMS chain, fastest level first (docs/hope.md)."""

    def __init__(self, cfg: Any):
        super().__init__()
        if not cfg.selfmod:
            self.mixer = None                                    # CMS only
        else:
            self.mixer_norm = nn.RMSNorm(cfg.d, eps=EPS)
            self.mixer = CausalAttention(cfg) if cfg.mixer == "attention" else SelfModTitans(cfg)
        self.cms = nn.ModuleList(CMSBlock(cfg) for _ in range(cfg.cms_levels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z if self.mixer is None else z + self.mixer(self.mixer_norm(z))
        for level in self.cms:
            h = level(h)
        return h


class Encoder(nn.Module):
    """Inputs to tokens (docs/hope.md). Images (C, H, W): a 3×3 conv, SiLU, and a patch conv to a
    g×g grid (g² = n_tokens), scanned row by row. Vectors (D,): zero-padded and cut into
    n_tokens chunks, each projected linearly. Tokens (L,) of integer ids: an embedding, cut to
    max_text_tokens, with positions equal to `pad_token` masked out of the pooling. A learned
    position embedding is added in every case."""

    def __init__(self, cfg: Any, input_shape: tuple[int, ...]):
        super().__init__()
        d, kind = cfg.d, cfg.input_kind
        if kind == "auto":
            kind = "image" if len(input_shape) == 3 else "vector"
        self.kind, self.pad_token = kind, cfg.pad_token
        if kind == "image":
            channels, height, width = input_shape
            grid = math.isqrt(cfg.n_tokens)
            if grid * grid != cfg.n_tokens or height % grid or width % grid:
                raise ValueError(f"n_tokens={cfg.n_tokens} must be g² with g dividing the image size {height}×{width}")
            self.stem = nn.Sequential(nn.Conv2d(channels, d // 2, 3, padding=1), nn.SiLU(),
                                      nn.Conv2d(d // 2, d, (height // grid, width // grid),
                                                stride=(height // grid, width // grid)))
            n_tokens = cfg.n_tokens
        elif kind == "vector":
            (size,) = input_shape
            self.chunk = -(-size // cfg.n_tokens)
            self.stem = nn.Linear(self.chunk, d)
            n_tokens = cfg.n_tokens
        elif kind == "tokens":
            self.stem = nn.Embedding(cfg.vocab_size, d)
            n_tokens = min(input_shape[0], cfg.max_text_tokens)
        else:
            raise ValueError(f"input_kind must be 'auto', 'image', 'vector' or 'tokens', got {kind!r}")
        self.n_tokens = n_tokens
        self.position = nn.Parameter(0.02 * torch.randn(n_tokens, d))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask = None
        if self.kind == "image":
            z = self.stem(x).flatten(2).transpose(1, 2)
        elif self.kind == "vector":
            x = F.pad(x.flatten(1), (0, self.chunk * self.n_tokens - x[0].numel()))
            z = self.stem(x.view(len(x), self.n_tokens, self.chunk))
        else:
            x = x[:, :self.n_tokens].long()
            mask = x != self.pad_token
            z = self.stem(x.clamp_min(0))
        return z + self.position[:z.shape[1]], mask


class HopeClassifier(nn.Module):
    """Encoder, `n_blocks` HopeBlocks, RMSNorm, mean over valid tokens, linear head (docs/hope.md)."""

    def __init__(self, cfg: Any, input_shape: tuple[int, ...], n_outputs: int):
        super().__init__()
        self.encoder = Encoder(cfg, input_shape)
        self.blocks = nn.ModuleList(HopeBlock(cfg) for _ in range(cfg.n_blocks))
        self.norm = nn.RMSNorm(cfg.d, eps=EPS)
        self.head = nn.Linear(cfg.d, n_outputs)

    def tokens(self, z: torch.Tensor) -> torch.Tensor:
        """Per-token features after the blocks and the final norm, (B, T, d)."""
        for block in self.blocks:
            z = block(z)
        return self.norm(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, mask = self.encoder(x)
        h = self.tokens(z)
        if mask is None:
            pooled = h.mean(1)
        else:
            weights = mask.to(h.dtype).unsqueeze(-1)
            pooled = (h * weights).sum(1) / weights.sum(1).clamp_min(1)
        return self.head(pooled)
