"""Hope as a byte-level language model for text streams: the self-modifying Titans memory and a
Continuum Memory System whose fastest levels learn inside each sequence (in-context levels) and
whose slowest ones accumulate gradients across optimiser steps (persistent levels).

Behrouz, Razaviyayn, Zhong & Mirrokni, "Nested Learning: The Illusion of Deep Learning
Architectures", NeurIPS 2025 and arXiv 2512.24695 (§8); the memory builds on Titans (Behrouz,
Zhong & Mirrokni, arXiv 2501.00663). The memories and CMS blocks are those of the `hope`
classification learner (`hope_modules`); the network is in `hope_lm_modules.py`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from clbench.errors import UsageError
from clbench.lazy import lazy_import
from clbench.progress import report_step
from clbench.learners.hope import Hope

if TYPE_CHECKING:
    from clbench.learners.hope_lm_modules import HopeLM as HopeLMNet
    from clbench.scenario import ScenarioSpec, Task

torch = lazy_import("torch")  # see clbench.lazy
F = lazy_import("torch.nn.functional")

PREDICT_SLICE = 64             # sequences per evaluation pass (each holds its own fast state)


@dataclass
class HopeLM(Hope):
    """Hope as a byte-level language model (`hope-lm`).

    Each of `n_blocks` blocks mixes bytes with the self-modifying Titans memory (memories for k, v,
    η, α and the main memory, meta-learned initial states, DGD with momentum and retention, chunk
    sizes `chunk_mem` and `chunk_other`, L2-normalised q and k, short causal convolutions, gated
    output), then runs `cms_levels` CMS MLPs. A training sequence is read `unit` tokens at a time;
    the first `len(context_periods)` CMS levels are **in-context**: every sequence starts them at
    their meta-learned initial states (the blocks' own weights), and after each unit they add the
    gradient of that unit's next-byte loss to a buffer, stepping their fast weights by
    `context_lr` times the buffer every `context_periods[ℓ]` tokens. The mean loss of the
    sequence is then back-propagated through the whole unroll (`first_order`: the inner gradients
    are constants) into every outer parameter and initial state. The other CMS levels are
    **persistent**: their weights accumulate gradients and step every `levels[ℓ]` optimiser
    steps (as in `hope`); everything outside the CMS steps every `levels[backbone_level - 1]`.

    `carry`: the fast state (memories, in-context weights, buffers) is kept from one training
    sequence to the next: batch row r reads the task's windows in order as one stream, cut from
    the graph between sequences (reset at each task and each evaluation call).
    `memorize_at_eval=False`: evaluation reads with every fast state frozen at its initial state.

    Default size d = 64, 2 blocks (≈0.4M parameters), for one CPU core; the field list is that
    of `hope` (its image/vector input fields are unused here).
    """

    sequence: ClassVar[bool] = True            # a language model: predict gives next-byte logits (B, T, 256)

    chunk_mem: int = 8                          # tokens per chunk of the main memory
    chunk_other: int = 16                       # tokens per chunk of the k, v, η, α memories
    unit: int = 16                              # tokens read per step of the in-context loop
    context_periods: tuple[int, ...] = (16, 128)  # update period (tokens) of each in-context CMS level
    context_lr: float = 0.05                    # inner learning rate of the in-context levels
    levels: tuple[int, ...] = (1, 1, 4, 16)     # outer update period (steps) of each CMS level
    level_lrs: tuple[float, ...] = (1e-3, 1e-3, 1e-3, 1e-3)       # AdamW rate of each level
    backbone_level: int = 1                     # embeddings, mixers and norms step every step
    carry: bool = False                         # keep the fast state across consecutive sequences
    memorize_at_eval: bool = True               # False: evaluate with frozen fast states
    eta_max: float = 0.001                      # inner rate bound: 0.003 made the main memory blow up (NaN) on text-embedded seeds 1, 2
    epochs: int = 1                             # passes over each domain's training budget
    batch_size: int = 16                        # sequences per step

    def __post_init__(self) -> None:
        super().__post_init__()
        self.context_periods = tuple(self.context_periods)
        if self.unit < 1 or self.unit % self.chunk_mem or self.unit % self.chunk_other:
            raise UsageError(f"unit={self.unit} must be a positive multiple of chunk_mem={self.chunk_mem} "
                             f"and chunk_other={self.chunk_other}")
        if any(not isinstance(p, int) or p < 1 or p % self.unit for p in self.context_periods):
            raise UsageError(f"context_periods must be positive multiples of unit={self.unit}, "
                             f"got {self.context_periods}")
        if self.context_lr < 0:
            raise UsageError(f"context_lr must be non-negative, got {self.context_lr}")
        if self.compile:
            raise UsageError("compile=true is not supported by hope-lm: it reads a sequence unit by unit with an "
                             "inner backward pass between units, which torch.compile cannot differentiate again")

    # -- state -------------------------------------------------------------------------------
    def build_model(self, spec: ScenarioSpec) -> HopeLMNet:
        from clbench.learners.hope_lm_modules import VOCABULARY, HopeLM as HopeLMNet

        if len(spec.input_shape) != 1 or spec.n_outputs != VOCABULARY:
            raise UsageError(f"hope-lm models byte sequences (a text stream); got inputs of shape "
                             f"{tuple(spec.input_shape)} with {spec.n_outputs} outputs")
        if self.carry and spec.input_shape[0] % self.unit:
            raise UsageError(f"carry needs the context ({spec.input_shape[0]}) to be a multiple of unit={self.unit}")
        return HopeLMNet(self)

    def setup(self, spec: ScenarioSpec, seed: int) -> None:
        super().setup(spec, seed)
        self.state_: dict[str, Any] | None = None

    # -- one batch of sequences --------------------------------------------------------------
    def read(self, x: torch.Tensor, y: torch.Tensor, state: dict[str, Any], outer: bool,
             final: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Read sequences x (B, T) unit by unit from `state`, updating the in-context levels as
        their periods come. Returns the mean next-byte loss (with its graph when `outer`) and the
        logits of every unit. `final`: the state is not read again (the last unit's update is skipped)."""
        from clbench.learners.hope_lm_modules import detached

        model, B, T = self.model_, x.shape[0], x.shape[1]
        n_context = model.n_context if self.memorize else 0
        total, logits_all = 0.0, []
        starts = list(range(0, T, self.unit))
        stop = state["position"] + (starts[-1] if final else T)   # a final read learns nothing from its last unit
        pending: list[Any] = [None] * n_context     # per level: the loss read since its last step
        periods = self.context_periods[:n_context]
        for i, t0 in enumerate(starts):
            end = i == len(starts) - 1                               # the sequence's last unit
            last = final and end
            span = slice(t0, t0 + self.unit)
            logits = model.forward_unit(x[:, span], state, final=last)
            n = logits.shape[1]
            target = y[:, span]
            counted = (target >= 0).sum(1).clamp_min(1)             # -1: no target (end of an evaluation window)
            per_seq = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none",
                                      ignore_index=-1).view(B, n).sum(1) / counted
            total = total + (per_seq.mean() if outer else per_seq.mean().detach()) * (n / T)
            logits_all.append(logits.detach())
            if n_context and not last:
                state["position"] += n
                # A level's weights stay fixed between its steps, so the sum of its units' gradients
                # is the gradient of their summed loss: one backward pass when the level steps (or
                # the sequence, and the graph with it, ends), not one per unit over a growing graph.
                # A level that cannot step again before a final read ends takes no gradient at all.
                position, unit_loss = state["position"], per_seq.sum()
                for level, period in enumerate(periods):
                    if not final or -(-position // period) * period <= stop:
                        pending[level] = unit_loss if pending[level] is None else pending[level] + unit_loss
                for level, period in enumerate(periods):
                    if pending[level] is not None and (end or position % period == 0):
                        loss, pending[level] = pending[level], None
                        # at the end of a read nothing it steps reaches the outer loss: no graph to keep
                        self._learn_in_context(state, level, loss, differentiable=outer and not self.first_order
                                               and not end, keep_graph=outer or any(p is not None for p in pending))
            if not outer and all(loss is None for loss in pending):
                # evaluation: nothing flows back, so cut the graph; a carried read's end is a boundary
                state.update(detached(state, boundary=not final and end))
        return total, logits_all

    def _learn_in_context(self, state: dict[str, Any], level: int, loss: torch.Tensor, differentiable: bool,
                          keep_graph: bool) -> None:
        """Add the gradient of `loss` for in-context `level`'s fast weights to its buffers, and step
        the level by `context_lr` times its buffer if its period has come at the state's position.
        `differentiable`: the gradient gets a graph, for the outer step to differentiate (the full
        unroll); `keep_graph`: the forward graph is run through again (by the outer step or another level)."""
        from clbench.learners.hope_lm_modules import fast_tensors

        grads = iter(torch.autograd.grad(loss, fast_tensors(state, level), retain_graph=keep_graph,
                                         allow_unused=True, create_graph=differentiable))
        due = state["position"] % self.context_periods[level] == 0
        for block, buffers in zip(state["fast"], state["buffers"]):
            for k in range(4):
                g = next(grads)
                g = torch.zeros_like(block[level][k]) if g is None else g
                buf = g if buffers[level][k] is None else buffers[level][k] + g
                if due:
                    block[level][k] = block[level][k] - self.context_lr * buf
                    buffers[level][k] = None
                else:
                    buffers[level][k] = buf

    def train_step(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One optimiser step on sequences x, y (B, T): the chunked forward with in-context
        updates, the outer backward, then the levels' accumulation and steps."""
        from clbench.learners.hope_lm_modules import detached

        x, y = x.to(self.device_), y.to(self.device_)
        state = self.state_ if self.carry and self.state_ is not None else self.model_.start(len(x))
        loss = self.read(x, y, state, outer=True, final=not self.carry)[0]
        if self.carry:                          # as the sequence left it, before the outer step moves the parameters
            self.state_ = detached(state, boundary=True)
        return self.outer_step(loss, "hope-lm's")

    # -- training ----------------------------------------------------------------------------
    def fit_task(self, task: Task) -> None:
        x, y = task.x_train.to(self.device_), task.y_train.to(self.device_)
        steps = len(x) // self.batch_size if self.carry else math.ceil(len(x) / self.batch_size)
        if self.step_ == 0:
            self._warn_long_periods(steps * self.epochs * self.spec_.n_tasks)
        self.state_ = None
        for epoch in range(self.epochs):
            if self.carry:                      # row r reads windows r·steps, r·steps + 1, ... in order
                order = torch.arange(steps * self.batch_size, device=self.device_).view(self.batch_size, steps)
                batches = ((x[order[:, i]], y[order[:, i]]) for i in range(steps))
            else:
                batches = self.shuffled(x, y)
            for i, (xb, yb) in enumerate(batches, start=1):
                self.train_step(xb, yb)
                report_step(epoch * steps + i, steps * self.epochs)
        self.state_ = None
        if self.flush_at_task_end:
            for level in range(len(self.levels)):
                self._apply(level)

    def _warn_long_periods(self, stream_steps: int) -> None:
        idle = [f"level {i + 1} (period {p} steps)" for i, p in enumerate(self.periods)
                if i < self.cms_levels and i >= len(self.context_periods) and p > stream_steps]
        if idle:
            warnings.warn(f"hope-lm: {', '.join(idle)} will never update: the stream has about {stream_steps} steps",
                          stacklevel=3)

    # -- evaluation --------------------------------------------------------------------------
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Next-byte logits (N, T, 256). Each sequence's fast state learns inside it as in training,
        with the inner gradients as constants (as `first_order` trains), on a scratch copy: no
        parameter, accumulator or optimiser state is touched. With `carry`, the windows are read in
        order as up to `batch_size` streams. The graph of a sequence is kept while an in-context
        level has a loss pending, so a period of many units holds that many units' activations."""
        memorize = self.memorize
        self.memorize = memorize and self.memorize_at_eval
        try:
            with torch.enable_grad():
                x = x.to(self.device_)
                if not self.carry:
                    out = []
                    for part in x.split(PREDICT_SLICE):
                        state = self.model_.start(len(part), detached=True)
                        out.append(torch.cat(self._read_eval(part, state, final=True), 1))
                    return torch.cat(out)
                rows = max(r for r in range(1, min(self.batch_size, len(x)) + 1) if len(x) % r == 0)
                order = torch.arange(len(x), device=x.device).view(rows, -1)
                state = self.model_.start(rows, detached=True)
                logits = torch.empty(*x.shape, 256, device=x.device)
                for i in range(order.shape[1]):
                    logits[order[:, i]] = torch.cat(self._read_eval(x[order[:, i]], state, final=False), 1)
                return logits
        finally:
            self.memorize = memorize

    def _read_eval(self, x: torch.Tensor, state: dict[str, Any], final: bool) -> list[torch.Tensor]:
        """Logits of one evaluation read. The in-context levels learn from the next-byte loss of
        the bytes already read: the targets are x shifted by one, the last position has none."""
        target = torch.cat([x[:, 1:], torch.full_like(x[:, :1], -1)], 1)
        return self.read(x, target, state, outer=False, final=final)[1]


@dataclass
class HopeAttentionLM(HopeLM):
    """Hope-Attention as a language model: causal softmax attention (no position encoding: the
    causal mask alone orders tokens) in place of the self-modifying memory, the same CMS."""

    mixer: str = "attention"


@dataclass
class TitansLM(HopeLM):
    """A Titans-like memory as the token mixer: static linear k and v projections (only η, α and
    the main memory are memories), the same CMS."""

    adaptive_k: bool = False
    adaptive_v: bool = False


@dataclass
class GatedDeltaLM(HopeLM):
    """A gated-delta memory as the token mixer: static k and v, no inner momentum, and the
    dot-product inner objective −⟨M(k), v̂⟩ with retention α as the gate. The memory stays the
    residual 2-layer MLP of the other variants (not a linear matrix)."""

    adaptive_k: bool = False
    adaptive_v: bool = False
    momentum: float = 0.0
    inner_objective: str = "dot"
