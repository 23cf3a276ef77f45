"""Hope: self-modifying Titans memory plus a Continuum Memory System, trained level by level.

Behrouz, Razaviyayn, Zhong & Mirrokni, "Nested Learning: The Illusion of Deep Learning
Architectures", NeurIPS 2025 (openreview nbMeRvNb7A) and arXiv 2512.24695 (§8, Eqs. 70-97);
the memory builds on Titans (Behrouz, Zhong & Mirrokni, arXiv 2501.00663). The paper evaluates
continual learning only in context; this learner is clbench's extrapolation to labelled task
streams trained by SGD, written from docs/hope.md, with the readings it lists. The
networks are in `hope_modules.py`.
"""
from __future__ import annotations

import logging
import math
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from clbench.errors import UsageError
from clbench.lazy import lazy_import
from clbench.progress import report_step
from clbench.learner import DivergenceError, SGDLearner
from clbench.units import OutputUnits

if TYPE_CHECKING:
    from clbench.learners.hope_modules import HopeClassifier
    from clbench.scenario import ScenarioSpec, Task

torch = lazy_import("torch")  # see clbench.lazy
F = lazy_import("torch.nn.functional")

PREDICT_SLICE = 256            # examples per forward pass in `predict` (each holds its own fast weights)
CHOICES = {"mixer": ("selfmod", "attention"), "inner_optimizer": ("dgd", "gd"),
           "inner_objective": ("l2", "dot"), "hidden_decay": ("dgd", "alpha"),
           "input_kind": ("auto", "image", "vector", "tokens"), "cms_reduce": ("mean", "sum"),
           "memory_width": ("head", "full"), "fast_weights": ("dual", "explicit"),
           "period_unit": ("steps", "examples")}


@dataclass
class Hope:
    """Hope (Nested Learning): a self-modifying Titans memory and a Continuum Memory System (CMS),
    each CMS level updated at its own period by gradient accumulation with its own AdamW.

    Inputs become tokens (image patches, vector chunks or text); each of `n_blocks` blocks mixes
    them with the self-modifying memory, which learns inside every example by delta gradient
    descent (DGD) with momentum and retention from meta-learned initial states, then applies the
    CMS chain of `cms_levels` MLPs; a linear head reads the mean token. Streaming training
    (docs/hope.md): one step is one minibatch; level ℓ accumulates its mean gradient over
    `levels[ℓ]` steps and then steps its own AdamW with `level_lrs[ℓ]`. CMS block ℓ is level ℓ,
    the head is `head_level`, and everything else (encoder, memory initial states, W_q,
    convolutions, gates, read-outs and norms other than each CMS block's own) is `backbone_level`.
    No task-boundary signal is used (a level's period runs across tasks) unless
    `flush_at_task_end`. Prediction runs the in-example memory on a scratch state and changes
    nothing (docs/hope.md). Hope has no replay buffer, no Fisher penalty and no task ids; training masks
    logits exactly as the baselines do (`clbench.units.OutputUnits`).

    Default width d = 64, not docs/hope.md's 256: on the 2-core CPU this was built on, d = 256
    (≈5.4M parameters) costs ≈1.2 s of CPU per training step, ≈10 minutes per split-digits run;
    d = 64 (≈0.34M parameters) costs ≈0.16 s, ≈80 s per run. `--set d=256` gives the spec's
    size; every other default is docs/hope.md's.
    """

    # 2: memories in the chunked dual form (same mathematics, different floating-point order, so
    # runs of version 1 are not reproduced bit for bit and are not reused)
    code_version: ClassVar[int] = 2

    # architecture (docs/hope.md)
    d: int = 64                      # token width (docs/hope.md default 256; see above)
    n_blocks: int = 2                # HopeBlocks
    heads: int = 4                   # memory / attention heads; each head's memories act on its d/heads slice (memory_width)
    n_tokens: int = 16               # tokens for image (a √n×√n patch grid) and vector inputs
    input_kind: str = "auto"         # "auto" (image if 3-d input, else vector), "image", "vector", "tokens"
    vocab_size: int = 256            # token inputs: vocabulary size
    max_text_tokens: int = 64        # token inputs: longer inputs are cut
    pad_token: int = -1              # token inputs: id left out of the pooling (-1: none)
    mixer: str = "selfmod"           # "selfmod" (self-modifying Titans) or "attention" (Hope-Attention)
    selfmod: bool = True             # False: no token mixer at all, CMS only
    cms_levels: int = 4              # CMS blocks per HopeBlock; block ℓ belongs to level ℓ
    cms_expansion: int = 4           # hidden width of a CMS MLP, in multiples of d
    # self-modifying memory (docs/hope.md)
    memory_expansion: int = 2        # hidden width of every memory, in multiples of its input width
    memory_width: str = "head"       # M_k, M_v, M_η, M_α map each head's d/heads slice ("head") or all of d ("full")
    chunk_mem: int = 4               # tokens per chunk of the main memory M_mem
    chunk_other: int = 8             # tokens per chunk of M_k, M_v, M_η, M_α
    conv_window: int = 4             # causal depthwise convolution on q, k and v
    inner_optimizer: str = "dgd"     # "dgd" (input-dependent decay) or "gd" (w/o DGD)
    inner_objective: str = "l2"      # inner loss ||M(k) − v̂||² ("l2") or −⟨M(k), v̂⟩ ("dot", gated delta)
    hidden_decay: str = "dgd"        # decay of a memory's second layer: "dgd" (rank-1) or "alpha" only
    momentum: float = 0.9            # inner momentum β (0 = w/o momentum)
    retention: bool = True           # data-dependent retention α_t; False: α_t ≡ 1 (w/o weight decay)
    alpha_init: float = 0.98         # initial retention α (bias of its read-out is sigmoid⁻¹ of this)
    eta_max: float = 0.1             # inner learning rate η_t = eta_max · sigmoid(·)
    adaptive_k: bool = True          # k from a memory M_k; False: static linear k (Titans-like)
    adaptive_v: bool = True          # v from a memory M_v; False: static linear v
    adaptive_q: bool = False         # q from a memory M_q too (extension; the paper keeps q static)
    first_order: bool = False        # inner writes see detached states (no back-prop through the unroll)
    memorize: bool = True            # False: memories stay at their initial states (diagnostic)
    fast_weights: str = "dual"       # memories' per-example weights: "dual" (factors, O(t) a read: short inputs) or
                                     # "explicit" (matrices, O(1) a read: long sequences); same values, other rounding
    # streaming levels (docs/hope.md)
    levels: tuple[int, ...] = (1, 4, 16, 64)                      # update period of each level (period_unit)
    period_unit: str = "steps"       # unit of `levels`: minibatch "steps", or training "examples" (a whole
                                     # number of batches); a period may outlast a task (it runs across tasks)
    level_lrs: tuple[float, ...] = (1e-3, 1e-3, 5e-4, 3e-4)       # AdamW learning rate of each level
    cms_reduce: str = "mean"         # a level's accumulated gradients: "mean", or "sum" (Eq. 71, applied as
                                     # the mean at period × the level rate: Adam divides a gradient's scale out)
    head_level: int = 1              # level of the classifier head
    backbone_level: int = 4          # level of everything outside the CMS blocks and the head
    weight_decay: float = 0.0        # AdamW decoupled weight decay of every level (0, as the baselines' Adam)
    flush_at_task_end: bool = False  # apply partial accumulations when a task ends (a task-boundary signal)
    epochs: int = 10                 # passes over each task's training data
    batch_size: int = 32             # minibatch size (one stream step)
    device: str = "auto"             # "auto" (CUDA if present), "cpu", "cuda", ...
    compile: bool = False            # run the network through torch.compile (see `compile_network`)

    # `compile` and `fast_weights` came after runs were recorded without them: their defaults are
    # left out of the resolved config, so those runs keep their ids (clbench.fields.field_values)
    recorded_if_set: ClassVar[tuple[str, ...]] = ("compile", "fast_weights")

    def __post_init__(self) -> None:
        self.levels, self.level_lrs = tuple(self.levels), tuple(self.level_lrs)
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise UsageError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        positive = ("d", "n_blocks", "heads", "n_tokens", "vocab_size", "max_text_tokens", "cms_expansion",
                    "memory_expansion", "chunk_mem", "chunk_other", "conv_window", "epochs", "batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.d % self.heads:
            raise UsageError(f"d={self.d} must be divisible by heads={self.heads}")
        if not self.levels or any(not isinstance(p, int) or p < 1 for p in self.levels):
            raise UsageError(f"levels must be positive whole update periods ({self.period_unit}), got {self.levels}")
        if self.period_unit == "examples" and any(p % self.batch_size for p in self.levels):
            raise UsageError(f"levels in examples must be whole multiples of batch_size={self.batch_size}, "
                             f"got {self.levels}")
        if len(self.level_lrs) != len(self.levels) or any(lr < 0 for lr in self.level_lrs):
            raise UsageError(f"level_lrs needs one non-negative rate per level: {len(self.levels)} levels, "
                             f"got {self.level_lrs}")
        if not 0 <= self.cms_levels <= len(self.levels):
            raise UsageError(f"cms_levels must be between 0 and len(levels)={len(self.levels)}, got {self.cms_levels}")
        for name in ("head_level", "backbone_level"):
            if not 1 <= getattr(self, name) <= len(self.levels):
                raise UsageError(f"{name} must be a level between 1 and {len(self.levels)}, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1 or not 0 < self.alpha_init < 1 or self.eta_max < 0 or self.weight_decay < 0:
            raise UsageError("need 0 <= momentum < 1, 0 < alpha_init < 1, eta_max >= 0, weight_decay >= 0")
        if not self.selfmod and self.mixer == "attention":
            raise UsageError("selfmod=False removes the token mixer (CMS only); mixer='attention' replaces it: set one")

    # -- state -------------------------------------------------------------------------------
    def build_model(self, spec: ScenarioSpec) -> HopeClassifier:
        """The network for a scenario, initialised from the current torch RNG."""
        from clbench.learners.hope_modules import HopeClassifier

        try:
            return HopeClassifier(self, spec.input_shape, spec.n_outputs)
        except ValueError as err:
            raise UsageError(str(err)) from None

    @property
    def periods(self) -> tuple[int, ...]:
        """Each level's update period in minibatch steps."""
        if self.period_unit == "examples":
            return tuple(p // self.batch_size for p in self.levels)
        return self.levels

    def level_of(self, name: str) -> int:
        """The level (0-based index into `levels`) of a parameter, by its name in the model."""
        if name.startswith("head."):
            return self.head_level - 1
        match = re.match(r"blocks\.\d+\.cms\.(\d+)\.", name)
        return int(match.group(1)) if match else self.backbone_level - 1

    def setup(self, spec: ScenarioSpec, seed: int) -> None:
        from clbench.models import resolve_device

        self.spec_ = spec
        self.device_ = resolve_device(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model_ = self.build_model(spec).to(self.device_)
        if self.compile:
            compile_network(self.model_, self.device_)
        self.generator_ = torch.Generator().manual_seed(seed)
        self.units_ = OutputUnits(spec.n_outputs, spec.protocol)
        self.level_params_: list[list[torch.nn.Parameter]] = [[] for _ in self.levels]
        for name, p in self.model_.named_parameters():
            self.level_params_[self.level_of(name)].append(p)
        self.optimizers_ = [torch.optim.AdamW(ps, lr=lr, weight_decay=self.weight_decay) if ps else None
                            for ps, lr in zip(self.level_params_, self.level_lrs)]
        self.accum_ = [[torch.zeros_like(p) for p in ps] for ps in self.level_params_]
        self.pending_ = [0] * len(self.levels)     # steps accumulated since each level last stepped
        self.step_ = 0                             # stream steps (minibatches) so far
        self.train_rows_ = 0                       # the largest training batch so far (`network`)

    # -- training ----------------------------------------------------------------------------
    def fit_task(self, task: Task) -> None:
        self.units_.add_task(task.task_id, task.classes)
        mask = self.units_.mask(torch.full((1,), task.task_id), self.device_)
        x, y = task.x_train.to(self.device_), task.y_train.to(self.device_)
        steps = math.ceil(len(y) / self.batch_size) * self.epochs
        if self.step_ == 0:
            self._warn_long_periods(steps * self.spec_.n_tasks)
        done = 0
        for _ in range(self.epochs):
            for xb, yb in self.shuffled(x, y):
                self.train_step(xb, yb, mask)
                done += 1
                report_step(done, steps)
        if self.flush_at_task_end:
            for level in range(len(self.levels)):
                self._apply(level)

    # the same data order as the baselines
    shuffled = SGDLearner.shuffled
    # task-free streams: one `train_step` per batch, output units learned from the labels
    fit_batch = SGDLearner.fit_batch
    stream_mask = SGDLearner.stream_mask

    def train_step(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """One stream step (docs/hope.md): gradient of the masked loss, accumulated per level;
        each level whose period is complete steps its optimiser with the mean gradient. Inputs
        may be on any device (no copy when they are already on the learner's)."""
        x, y = x.to(self.device_), y.to(self.device_)
        mask = None if mask is None else mask.to(self.device_)
        self.train_rows_ = max(self.train_rows_, len(x))
        logits = self.network(x, self.train_rows_)
        return self.outer_step(F.cross_entropy(logits if mask is None else logits + mask, y), "Hope's")

    def outer_step(self, loss: torch.Tensor, whose: str) -> torch.Tensor:
        """The outer update of one stream step from its training loss: a non-finite loss is an
        error, else the backward pass and `step_levels`. Returns the loss, detached."""
        if not torch.isfinite(loss):
            raise DivergenceError(f"{whose} training loss became {loss.item()} at stream step {self.step_ + 1}")
        for p in self.model_.parameters():
            p.grad = None
        loss.backward()
        self.step_levels()
        return loss.detach()

    def step_levels(self) -> None:
        """One stream step after the backward pass: every level accumulates its gradients, and
        each level whose period is complete steps (`_apply`)."""
        self.step_ += 1
        for level, period in enumerate(self.periods):
            for p, acc in zip(self.level_params_[level], self.accum_[level]):
                if p.grad is not None:
                    acc.add_(p.grad)
            self.pending_[level] += 1
            if self.pending_[level] == period:
                self._apply(level)

    def _apply(self, level: int) -> None:
        """Step a level's AdamW with its accumulated gradients. "mean": their mean at the level's
        rate. "sum" (Eq. 71, a sum of errors under one level rate): the sum, at the level's rate
        times the number of steps summed. Adam divides out a gradient's scale, so handing it the
        sum alone would move the level no further than the mean; the rate carries the factor."""
        count, self.pending_[level] = self.pending_[level], 0
        optimizer = self.optimizers_[level]
        if count == 0 or optimizer is None:
            return
        scale = count if self.cms_reduce == "sum" else 1
        for group in optimizer.param_groups:
            group["lr"] = self.level_lrs[level] * scale
        for p, acc in zip(self.level_params_[level], self.accum_[level]):
            p.grad = acc if self.cms_reduce == "sum" else acc / count
        optimizer.step()
        for p, acc in zip(self.level_params_[level], self.accum_[level]):
            p.grad = None
            acc.zero_()

    def _warn_long_periods(self, stream_steps: int) -> None:
        idle = [f"level {i + 1} (period {p} steps)" for i, p in enumerate(self.periods)
                if self.level_params_[i] and p > stream_steps]
        if idle:
            warnings.warn(f"Hope: {', '.join(idle)} will never update: the stream has about {stream_steps} steps",
                          stacklevel=3)

    def network(self, x: torch.Tensor, rows: int) -> torch.Tensor:
        """`model_(x)`. Compiled, a batch of fewer than `rows` examples is padded with zero inputs to
        `rows` (examples do not interact, so the real rows' outputs and gradients are unchanged):
        the network then sees one batch shape in training (the largest so far) and one in
        prediction, each compiled once, instead of a compile per task's last partial batch
        (torch 2.14's dynamic-shape compile of this network failed at run time)."""
        if not self.compile or len(x) >= rows:
            return self.model_(x)
        padding = x.new_zeros((rows - len(x), *x.shape[1:]))
        return self.model_(torch.cat([x, padding]))[:len(x)]

    # -- evaluation --------------------------------------------------------------------------
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Logits; the memories adapt inside each example on a scratch state (closed-form inner
        gradients, no autograd), and no parameter, accumulator or optimiser state is touched.
        Examples are independent, so large inputs go through in slices to bound the memory."""
        with torch.no_grad():
            return torch.cat([self.network(part.to(self.device_), PREDICT_SLICE) for part in x.split(PREDICT_SLICE)])


def compile_network(model: torch.nn.Module, device: torch.device) -> None:
    """Compile `model`'s forward (and so its backward) with torch.compile, in place: parameters
    and state_dict keys stay as they are. Inductor fuses the memories' many small per-chunk
    operations into a few kernels (see benchmarks/README.md for the speed-up). The numbers equal
    eager ones to float rounding, not bit for bit, so a compiled run records `compile` and never
    shares a run id with an eager one. Training and prediction each compile once per process and
    batch shape (`Hope.network`): minutes on a small CPU, cached on disk for later processes."""
    if not hasattr(model, "compile"):
        raise UsageError(f"compile=true needs torch >= 2.2 (nn.Module.compile); this is torch {torch.__version__}")
    if device.type == "cpu":
        if not has_cpp_compiler():
            raise UsageError("compile=true on the CPU needs a C++ compiler (g++ or clang++) on PATH; "
                             "install one (Debian: apt-get install g++) or leave compile=false")
        # inductor's C++ build logs "No CUDA runtime is found" on machines without CUDA
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    model.compile(dynamic=False)


def has_cpp_compiler() -> bool:
    """Whether a C++ compiler is on PATH: inductor builds its CPU kernels with one."""
    import shutil

    return any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++"))
