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
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Iterator, Protocol, runtime_checkable

from clbench.errors import UsageError
from clbench.gradients import QuadraticPenalty, add_to_gradients
from clbench.lazy import lazy_import
from clbench.optim import build_optimizer, clear_gradients, optimizer_step
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


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (..., units) against labels (...): one label per image (B, units)
    and (B,), or one per position of a sequence (B, T, units) and (B, T), every position counted once."""
    if logits.dim() != 2:   # (B, units) needs no reshape, whose two calls cost ~1.5% of a small MLP's step
        logits, y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    return F.cross_entropy(logits, y)


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


# `linear_kernel`: "onednn" sends the MLP's linear layers through oneDNN (clbench.onednn, imported
# only when chosen: importing it imports torch, which planning a suite must not)
LINEAR_KERNELS = ("default", "onednn")


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
    # added after runs were recorded; its default is what those runs computed (clbench.fields)
    recorded_if_set: ClassVar[tuple[str, ...]] = ("linear_kernel",)

    iterations: int = 0                   # minibatch steps per task instead of epochs (0 = use epochs)
    batch_size: int = 32                  # training minibatch size
    reset_optimizer: bool = True          # fresh optimiser state at every task start
    device: str = "auto"                  # "auto" (CUDA if present), "cpu", "cuda", ...
    linear_kernel: str = "default"        # "onednn": the MLP's linear layers through oneDNN on the CPU (clbench.onednn)

    def __post_init__(self) -> None:
        check_training_fields(self)
        if self.linear_kernel not in LINEAR_KERNELS:
            raise UsageError(f"linear_kernel must be one of {', '.join(LINEAR_KERNELS)}, got {self.linear_kernel!r}")

    # -- state -------------------------------------------------------------------------------
    def setup(self, spec: ScenarioSpec, seed: int) -> None:
        from clbench.models import build_backbone, resolve_device

        self.spec_ = spec
        self.device_ = resolve_device(self.device)
        self.model_ = build_backbone(self.backbone, spec.input_shape, spec.n_outputs, self.widths)
        if self.linear_kernel == "onednn":
            self.use_onednn_linear()
        self.model_.to(self.device_)
        self.generator_ = torch.Generator().manual_seed(seed)
        self.units_ = OutputUnits(spec.n_outputs, spec.protocol)
        self.optimizer_ = self.make_optimizer()

    def use_onednn_linear(self) -> None:
        """Route the MLP backbone's linear layers through `clbench.onednn.linear`."""
        from clbench import onednn
        from clbench.models import MLP

        if not isinstance(self.model_, MLP):
            raise UsageError(f"linear_kernel='onednn' applies to the MLP backbones (mlp, mlp400, mlp1000), "
                             f"not {self.backbone!r}")
        if self.device_.type != "cpu":
            raise UsageError(f"linear_kernel='onednn' runs on the CPU, not {self.device_.type!r}; set device=cpu")
        onednn.check_available()
        self.model_.linear_function = onednn.linear

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

    def model_parameters(self) -> list[torch.nn.Parameter]:
        """`list(self.model_.parameters())`, listed once per model: SI and A-GEM read it every step,
        and walking the modules for it costs more than their arithmetic on clbench's small networks."""
        cached = self.__dict__.get("_parameters_of")
        if cached is None or cached[0] is not self.model_:
            cached = self._parameters_of = (self.model_, list(self.model_.parameters()))
        return cached[1]

    def flat_weights(self) -> torch.Tensor:
        """All the model's weights as one vector, in `parameters()` order (the penalties and
        projections of EWC, SI, MAS and A-GEM work on this vector)."""
        return torch.cat([p.reshape(-1) for p in self.model_parameters()])

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

    def later_tasks_follow(self, task: Task) -> bool:
        """Whether work done at the end of `task` only for the tasks after it (EWC's Fisher, MAS's
        importance) is needed: not after the stream's last task, whose consolidation no step would
        read. A model with buffers (batch-norm statistics) still does it, since that work's forward
        passes in training mode move the buffers that evaluation then uses."""
        return task.task_id != self.spec_.last_task_id or next(self.model_.buffers(), None) is not None

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
            yield xb, yb, None if masks is None else masks.index_select(0, i)

    def shuffled(self, *tensors: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
        """Minibatches of the rows of `tensors` in one random order (`index_select`: the same rows as
        `t[idx]`, gathered in half the time for image batches)."""
        n = len(tensors[0])
        order = torch.randperm(n, generator=self.generator_).to(tensors[0].device)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield tuple(t.index_select(0, idx) for t in tensors)

    def logit_mask(self, task_ids: torch.Tensor) -> torch.Tensor | None:
        """Additive logit mask (0 or -inf) per row for the given task ids; None if nothing is masked
        (`clbench.units.OutputUnits`: the units the learner may use now)."""
        return self.units_.mask(task_ids, self.device_)

    def closed_form_penalty(self, penalty: QuadraticPenalty, c: float, weights: torch.Tensor, anchor: torch.Tensor,
                            flat: torch.Tensor | None = None) -> torch.Tensor:
        """From `loss`: the value of c Σ w (θ − θ*)² (SI's and MAS's penalty), to add to the loss; its
        gradient, known in closed form, is added to the model's gradients after this step's backward
        pass (the step whose `loss` call asked for it). `flat`: the weights as one vector, if known."""
        params = self.model_parameters()
        value, gradients = penalty(params, c, weights, anchor, flat)
        self._extra_gradients = (params, gradients)
        return value

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
