"""The `Learner` protocol and `SGDLearner`, the optional base for gradient-trained learners.

A learner is any object with `setup(spec, seed)`, `fit_task(task)` and
`predict(x, task_id=None) -> logits`. Hyperparameters are dataclass fields; learned state is
created in `setup`/`fit_task` and named with a trailing underscore. `predict` never changes
the learner. `clbench.testing.check_learner` checks all of this on any class.

A method defined under some protocols only (iCaRL needs new classes in every task) says so in
a class attribute `protocols = ("class_il", "task_il")`: a run under another protocol is refused
in one line, suites leave those runs out, and `check_learner` checks the refusal instead.
"""
from __future__ import annotations

import math
import operator
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Iterable, Iterator, Protocol, runtime_checkable

from clbench.errors import UsageError
from clbench.lazy import lazy_import
from clbench.progress import report_step
from clbench.units import OutputUnits

if TYPE_CHECKING:
    from clbench.scenario import ScenarioSpec, Task

torch = lazy_import("torch")  # imported when a run starts, not when a suite is planned (clbench.lazy)
F = lazy_import("torch.nn.functional")


@runtime_checkable
class Learner(Protocol):
    def setup(self, spec: ScenarioSpec, seed: int) -> None:
        """Create the untrained state (the model) for a stream; called once, before row 0."""

    def fit_task(self, task: Task) -> None:
        """Learn from one task's training data (`task.x_train`, `task.y_train`)."""

    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Logits over the scenario's output units; must not change the learner."""


def supported_protocols(learner: object) -> tuple[str, ...]:
    """The protocols a learner (class or instance) is defined under: its `protocols` attribute, or all three."""
    from clbench.scenario_names import PROTOCOLS

    return tuple(getattr(learner, "protocols", PROTOCOLS))


def check_learner_protocol(learner: object, protocol: str, name: str) -> None:
    """One-line UsageError if `learner` is not defined under `protocol`."""
    supported = supported_protocols(learner)
    if protocol not in supported:
        raise UsageError(f"learner {name!r} is defined under {' and '.join(supported)} only, not {protocol}")


def build_optimizer(kind: str, params: Iterable[torch.nn.Parameter], lr: float, momentum: float = 0.0,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """`torch.optim.Adam` ("adam") or `torch.optim.SGD` ("sgd") with PyTorch's fused kernel where this
    torch has one for the parameters' device, else its multi-tensor (foreach) version.

    The same algorithm as the per-tensor default, with rounding differences of order 1e-7 per step;
    a step of clbench's small models is 20-30% faster on the CPU (benchmarks/peers.py).
    """
    params = list(params)
    cls = torch.optim.Adam if kind == "adam" else torch.optim.SGD
    settings = {"lr": lr, "weight_decay": weight_decay, **({"momentum": momentum} if kind == "sgd" else {})}
    try:
        return cls(params, fused=True, **settings)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or torch version
        return cls(params, foreach=True, **settings)


def clear_gradients(optimizer: torch.optim.Optimizer) -> None:
    """`optimizer.zero_grad(set_to_none=True)` without its per-call profiler scope: every gradient set to None."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """`optimizer.step()`; for the fused Adam of `build_optimizer` the kernel is called directly.

    `torch.optim.Adam.step` with `fused=True` ends in `torch._foreach_add_(steps, 1)` and one
    `torch._fused_adam_` call per device and dtype; on clbench's small models its Python around them
    (profiler scopes, hook loops, state and device grouping) costs several times the kernel. Here the
    same two calls get the same tensors and arguments, so the weights and the optimiser state come
    out bit for bit as `step()` leaves them (tests/test_learners.py checks it). Anything else (another
    optimiser or setting, hooks, a parameter without a gradient, state not yet created by a first
    `step()`) goes through `step()`.
    """
    step = _fused_adam_step(optimizer)
    if step is None:
        optimizer.step()
    else:
        step()


def _fused_adam_step(optimizer: torch.optim.Optimizer):
    """The direct kernel call for `optimizer`, or None where `optimizer_step` must call `step()`."""
    from torch.optim import optimizer as optim_module   # cached by Python's import system after the first call

    if (type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1
            or optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
            or optim_module._global_optimizer_pre_hooks or optim_module._global_optimizer_post_hooks
            or getattr(optimizer, "grad_scale", None) is not None or getattr(optimizer, "found_inf", None) is not None):
        return None
    group = optimizer.param_groups[0]
    if (not group.get("fused") or group["amsgrad"] or group["maximize"] or group["differentiable"]
            or group["capturable"] or group.get("decoupled_weight_decay", False) or torch.is_tensor(group["lr"])
            or torch.is_tensor(group["betas"][0]) or torch.is_tensor(group["betas"][1])):
        return None
    tensors = _fused_adam_state(optimizer, group)
    if tensors is None:
        return None
    params, exp_avgs, exp_avg_sqs, steps = tensors
    grads = [p.grad for p in params]
    if any(g is None or g.is_sparse for g in grads):
        return None
    beta1, beta2 = group["betas"]

    def step() -> None:
        with torch.no_grad():
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
                               beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                               maximize=False, grad_scale=None, found_inf=None)
    return step


def _fused_adam_state(optimizer: torch.optim.Optimizer, group: dict) -> tuple[list, list, list, list] | None:
    """(params, exp_avgs, exp_avg_sqs, steps) of a one-group Adam whose state a first `step()` has
    created, all on one device and dtype (else None). Kept on the optimiser while its `state` and
    group objects are the ones it was read from: `load_state_dict` replaces both, and `step()`
    updates the tensors in place once they exist."""
    cached = getattr(optimizer, "_clbench_fused_state", None)
    if cached is not None and cached[0] is optimizer.state and cached[1] is group and cached[2] == len(group["params"]):
        return cached[3]
    params = list(group["params"])
    if not params:
        return None
    device, dtype = params[0].device, params[0].dtype
    exp_avgs, exp_avg_sqs, steps = [], [], []
    for p in params:
        state = optimizer.state.get(p)
        if p.device != device or p.dtype != dtype or not state or len(state) != 3:  # step, exp_avg, exp_avg_sq
            return None
        exp_avgs.append(state["exp_avg"])
        exp_avg_sqs.append(state["exp_avg_sq"])
        steps.append(state["step"])
    tensors = (params, exp_avgs, exp_avg_sqs, steps)
    optimizer._clbench_fused_state = (optimizer.state, group, len(params), tensors)
    return tensors


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (..., units) against labels (...): one label per image (B, units)
    and (B,), or one per position of a sequence (B, T, units) and (B, T), every position counted once."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def check_training_fields(learner) -> None:
    """Check the training fields `SGDLearner` defines, on any learner that has them (the Avalanche
    adapter shares them), and make `widths` a tuple."""
    if learner.optimizer not in ("sgd", "adam"):
        raise UsageError(f"optimizer must be 'sgd' or 'adam', got {learner.optimizer!r}")
    for name in ("lr", "epochs", "batch_size"):
        if not getattr(learner, name) > 0:
            raise UsageError(f"{name} must be positive, got {getattr(learner, name)!r}")
    if learner.momentum < 0 or learner.weight_decay < 0:
        raise UsageError("momentum and weight_decay must be non-negative")
    if getattr(learner, "iterations", 0) < 0:
        raise UsageError(f"iterations must be >= 0 (0 = train by epochs), got {learner.iterations}")
    learner.widths = tuple(learner.widths)
    if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in learner.widths):
        raise UsageError(f"widths must be whole numbers >= 1 (one per hidden layer, e.g. 100,100; empty for "
                         f"none), got {','.join(map(str, learner.widths))}")


def add_to_gradients(params: list[torch.nn.Parameter], gradients: list[torch.Tensor]) -> None:
    """p.grad += g for each pair, as autograd would have accumulated it: a parameter that got no
    gradient from the backward pass gets g (a copy), one that does not require a gradient none."""
    grads = [p.grad for p in params]
    if all(g is not None for g in grads):
        torch._foreach_add_(grads, gradients)
        return
    for p, g in zip(params, gradients):
        if p.requires_grad:
            p.grad = g.clone() if p.grad is None else p.grad.add_(g)


class QuadraticPenalty:
    """c Σ_k w_k (θ_k − θ*_k)² over all of a model's weights θ (one vector, `parameters()` order), the
    penalty of SI and MAS, as a value and its gradient in closed form.

    The gradient is, bit for bit, what autograd gives through `c * (w * (θ − θ*) ** 2).sum()`:
    that graph's backward is (c w) · 2 (θ − θ*), each factor rounded once, and here it is the same
    product of the same two factors: c w made once per (c, w), and 2 (θ − θ*) computed as
    2θ + (−2θ*), which equals it exactly (doubling and negating are exact in floating point). That is
    a few passes over the weight vector (those two, a dot product for the value, the caller's addition
    to the gradients) instead of about 20 autograd operations (cat, sub, pow, mul, sum and their
    backwards), which on clbench's small models cost as much as the network's own backward pass. The value only
    reports the loss (its rounding may differ from that expression's in the last bits); it enters no
    gradient. The returned gradients are views of a buffer that the next call overwrites.
    """

    def __init__(self) -> None:
        self.tensors: tuple | None = None

    def __call__(self, params: list[torch.nn.Parameter], c: float, weights: torch.Tensor, anchor: torch.Tensor,
                 flat: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(value, gradient per parameter) at the current weights (`flat`: them as one detached vector, if known)."""
        versions = (c, weights._version, anchor._version, len(params))
        if self.tensors is None or self.tensors[0] is not weights or self.tensors[1] is not anchor \
                or self.versions != versions or not all(map(operator.is_, params, self.tensors[2])):
            with torch.no_grad():
                self.scaled = c * weights           # the grad reaching w (θ − θ*)² in autograd: the float32 c, times w
                self.minus_twice_anchor = -2.0 * anchor
                self.twice, self.gradient = torch.empty_like(anchor), torch.empty_like(anchor)
            pieces = self.gradient.split([p.numel() for p in params])
            self.pieces = [piece.view(p.shape) for piece, p in zip(pieces, params)]
            self.tensors, self.versions = (weights, anchor, list(params)), versions
        with torch.no_grad():
            if flat is None:
                flat = torch.cat([p.reshape(-1) for p in params])
            torch.add(self.minus_twice_anchor, flat, alpha=2.0, out=self.twice)   # 2 (θ − θ*): PowBackward's factor
            torch.mul(self.scaled, self.twice, out=self.gradient)
            value = 0.25 * torch.dot(self.gradient, self.twice)
        return value, self.pieces


def per_sample_gradients(model: torch.nn.Module, objective, x: torch.Tensor, *per_sample: torch.Tensor,
                         chunk: int) -> Iterator[dict[str, torch.Tensor]]:
    """The gradient of `objective(model(x_i), *others_i)` (a scalar; each sample as a batch of one)
    with respect to the model's weights, for every sample i: dicts of name -> (samples, *weight
    shape), `chunk` samples at a time (`torch.func.vmap`). Serves EWC's Fisher and MAS's importance."""
    params = {name: p.detach() for name, p in model.named_parameters()}

    def one(p, xi, *others):
        return objective(torch.func.functional_call(model, p, (xi.unsqueeze(0),)), *(o.unsqueeze(0) for o in others))

    grad = torch.func.vmap(torch.func.grad(one), in_dims=(None,) + (0,) * (1 + len(per_sample)))
    for start in range(0, len(x), chunk):
        with warnings.catch_warnings():  # attention has no vmap rule on the CPU: torch loops, and says so
            warnings.filterwarnings("ignore", message="There is a performance drop")
            grads = grad(params, *(t[start:start + chunk] for t in (x, *per_sample)))
        yield grads


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainingFields:
    """The fields of a backbone trained by an optimiser, defined once for `SGDLearner` and the
    Avalanche adapter (checked by `check_training_fields`)."""

    backbone: str = "mlp"                 # backbone name (clbench.models.BACKBONES)
    widths: tuple[int, ...] = (100, 100)  # hidden layer widths of the backbone
    optimizer: str = "adam"               # "adam" or "sgd"
    lr: float = 0.001                     # learning rate
    momentum: float = 0.0                 # SGD momentum
    weight_decay: float = 0.0             # L2 weight decay of the optimiser
    epochs: int = 10                      # passes over each task's training data


@dataclass
class SGDLearner(TrainingFields):
    """Minibatch training of a backbone: `begin_task`, then per batch `loss`, backward and
    step, then `end_task`. Subclasses override only what their method changes.

    Training masks the logits of output units the learner may not use yet: units of classes
    not seen so far (class_il), units of other tasks (task_il); domain_il uses all units.
    """

    # Whether `fit_batch` may stand in for `fit_task` on a stream (clbench.stream_run). False here,
    # because a subclass with work in `begin_task`/`end_task` (EWC's Fisher) would silently skip it;
    # a subclass that is right without boundaries (fine-tuning, reservoir replay) sets it True.
    task_free: ClassVar[bool] = False

    iterations: int = 0                   # minibatch steps per task instead of epochs (0 = use epochs)
    batch_size: int = 32                  # training minibatch size
    reset_optimizer: bool = True          # fresh optimiser state at every task start
    device: str = "auto"                  # "auto" (CUDA if present), "cpu", "cuda", ...

    def __post_init__(self) -> None:
        check_training_fields(self)

    # -- state -------------------------------------------------------------------------------
    def setup(self, spec: ScenarioSpec, seed: int) -> None:
        from clbench.models import build_backbone, resolve_device

        self.spec_ = spec
        self.device_ = resolve_device(self.device)
        self.model_ = build_backbone(self.backbone, spec.input_shape, spec.n_outputs, self.widths)
        self.model_.to(self.device_)
        self.generator_ = torch.Generator().manual_seed(seed)
        self.units_ = OutputUnits(spec.n_outputs, spec.protocol)
        self.optimizer_ = self.make_optimizer()

    def state_dict(self) -> dict:
        """The learned state for a per-task checkpoint (`clbench.checkpoint.learner_state`): the
        model, the optimiser, the generators and the trailing-underscore tensors and buffers."""
        from clbench.checkpoint import learner_state

        return learner_state(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()` into a learner `setup` has just built for the same stream."""
        from clbench.checkpoint import load_learner_state

        load_learner_state(self, state)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return build_optimizer(self.optimizer, self.model_.parameters(), self.lr, self.momentum, self.weight_decay)

    def flat_weights(self) -> torch.Tensor:
        """All the model's weights as one vector, in `parameters()` order (the penalties and
        projections of EWC, SI, MAS and A-GEM work on this vector)."""
        return torch.cat([p.reshape(-1) for p in self.model_.parameters()])

    # -- training ----------------------------------------------------------------------------
    def fit_task(self, task: Task) -> None:
        self.begin_task(task)
        self.model_.train()
        step = 0
        for batches in self.passes(task):
            last = None
            for x, y, mask in batches:
                last = self.train_step(x, y, mask)
                step += 1
                report_step(step, self.iterations or None)
            if last is not None and not math.isfinite(last.item()):
                raise DivergenceError(f"training loss became {last.item()} on task {task.task_id}")
        self.end_task(task)

    def passes(self, task: Task) -> Iterator[Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]]:
        """The passes over a task's batches: `epochs` full passes, or with `iterations` > 0 as many
        passes (each freshly shuffled) as it takes to make exactly `iterations` steps, the last one cut short."""
        if not self.iterations:
            for _ in range(self.epochs):
                yield self.batches(task)
            return
        remaining = self.iterations

        def limited() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
            nonlocal remaining
            for batch in self.batches(task):
                remaining -= 1
                yield batch
                if remaining == 0:
                    return

        while remaining > 0:
            before = remaining
            yield limited()
            if remaining == before:
                raise UsageError(f"task {task.task_id} gave no training batches; cannot make {self.iterations} iterations")

    def begin_task(self, task: Task) -> None:
        """Move the task's data to the device and record which output units it uses."""
        self.units_.add_task(task.task_id, task.classes)
        self.x_ = task.x_train.to(self.device_)
        self.y_ = task.y_train.to(self.device_)
        self.mask_ = self.logit_mask(torch.full((1,), task.task_id))
        if self.reset_optimizer:
            self.optimizer_ = self.make_optimizer()

    def end_task(self, task: Task) -> None:
        """Hook for work after a task (a penalty, a buffer); frees the task's data by default."""
        del self.x_, self.y_

    def batches(self, task: Task) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Shuffled minibatches (x, y, logit mask) of the current task as tensor slices."""
        for x, y in self.shuffled(self.x_, self.y_):
            yield x, y, self.mask_

    def rows_with_masks(self, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor | None
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Shuffled minibatches (x, y, logit mask) of rows that each carry their own mask (`masks`:
        one row per sample, or None for no mask), e.g. samples of several tasks in task_il."""
        index = torch.arange(len(y), device=self.device_)
        for xb, yb, i in self.shuffled(x, y, index):
            yield xb, yb, None if masks is None else masks[i]

    def shuffled(self, *tensors: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(tensors[0])
        order = torch.randperm(n, generator=self.generator_).to(tensors[0].device)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield tuple(t[idx] for t in tensors)

    def logit_mask(self, task_ids: torch.Tensor) -> torch.Tensor | None:
        """Additive logit mask (0 or -inf) per row for the given task ids; None if nothing is masked
        (`clbench.units.OutputUnits`: the units the learner may use now)."""
        return self.units_.mask(task_ids, self.device_)

    def add_gradients(self, params: list[torch.nn.Parameter], gradients: list[torch.Tensor]) -> None:
        """From `loss`: add `gradients` to `params`' gradients after this step's backward pass, for a
        term of the loss whose gradient is known in closed form (`QuadraticPenalty`) and enters the
        returned loss as a value only. Applies to the step whose `loss` call made it."""
        self._extra_gradients = (params, gradients)

    def loss(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The training loss of one batch; `mask` is added to the logits (see `logit_mask`)."""
        logits = self.model_(x)
        if mask is not None:
            logits = logits + mask
        return cross_entropy(logits, y)

    # -- task-free streams -------------------------------------------------------------------
    def fit_batch(self, x: torch.Tensor, y: torch.Tensor, task_ids: torch.Tensor | None = None) -> float:
        """One step on one minibatch of a stream with no task boundary; returns the batch's loss.
        `task_ids` (one per sample) are given only where the protocol reveals them (task_il)."""
        x, y = x.to(self.device_), y.to(self.device_)
        self.model_.train()
        loss = float(self.train_step(x, y, self.stream_mask(y, task_ids)))
        if not math.isfinite(loss):
            raise DivergenceError(f"training loss became {loss} on a stream step")
        return loss

    def stream_mask(self, y: torch.Tensor, task_ids: torch.Tensor | None) -> torch.Tensor | None:
        """The training logit mask of a task-free batch: the units seen so far are learned from the
        labels themselves (class_il), or per task from the task ids given with them (task_il)."""
        return observe_units(self.units_, y, task_ids, self.device_)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Loss, backward and optimiser step on one batch already on the device, the model in training mode."""
        self._extra_gradients = None
        loss = self.loss(x, y, mask)
        clear_gradients(self.optimizer_)
        loss.backward()
        if self._extra_gradients is not None:
            add_to_gradients(*self._extra_gradients)
        optimizer_step(self.optimizer_)
        return loss.detach()

    # -- evaluation --------------------------------------------------------------------------
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        was_training = self.model_.training
        self.model_.eval()
        try:
            with torch.no_grad():
                return self.model_(x.to(self.device_))
        finally:
            self.model_.train(was_training)


def observe_units(units: OutputUnits, y: torch.Tensor, task_ids: torch.Tensor | None, device) -> torch.Tensor | None:
    """Record the output units a task-free batch shows and return its training mask (one row per
    sample): class_il learns "seen" units from labels; task_il adds each label to its task's units."""
    labels = y.detach().cpu()
    if units.protocol == "task_il":
        if task_ids is None:
            raise UsageError("a task_il stream must give each sample's task id to fit_batch")
        task_ids = task_ids.cpu()
        for t in task_ids.unique().tolist():
            known = units.by_task.get(int(t))
            new = labels[task_ids == t].unique()
            if known is None or not bool(known[new].all()):
                old = [] if known is None else known.nonzero().flatten().tolist()
                units.add_task(int(t), sorted(set(old) | set(new.tolist())))
        return units.mask(task_ids, device)
    units.seen[labels.unique()] = True
    return units.mask(labels[:1], device) if units.protocol == "class_il" else None
