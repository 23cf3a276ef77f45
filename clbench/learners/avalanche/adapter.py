"""Avalanche's strategies as clbench learners: `--learner avalanche:EWC`.

Avalanche: Lomonaco et al. 2021, "Avalanche: an End-to-End Library for Continual Learning"
(CVPR Workshops); avalanche-lib 0.6. Any strategy class that `avalanche.training` exports runs
through clbench's runner, so its accuracy matrix, metrics, results and reports are the same as
for any learner. Needs the `avalanche` extra (`pip install 'clbench[avalanche]'`).

`clbench.learners.avalanche.EWC` (what `avalanche:EWC` resolves to) is a dataclass built on first
use: the fields of `AvalancheLearner` below, plus one field per keyword argument of the
strategy's constructor that can be given as data (numbers, strings, booleans, lists of them).
A constructor argument with the name of an adapter field gets the prefix `strategy_`
(`BiC`'s `lr` is `strategy_lr`). Avalanche itself is imported only when such a class is built
(it takes ~10 s and changes the global warning filters, which the adapter restores).
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import types
import typing
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from clbench.errors import UsageError, unknown_name_error
from clbench.learner import TrainingFields, check_training_fields
from clbench.optim import build_optimizer
from clbench.learners.avalanche import PREFIX as AVALANCHE_PREFIX, names as avalanche_strategies
from clbench.models import build_backbone, resolve_device
from clbench.scenario import ScenarioSpec, Task
from clbench.units import OutputUnits

# Constructor arguments the adapter passes itself, from its own fields or objects it builds.
PROVIDED = ("model", "optimizer", "criterion", "train_mb_size", "train_epochs", "eval_mb_size", "device",
            "plugins", "evaluator", "eval_every", "peval_mode")
SIMPLE_TYPES = (int, float, bool, str)
REQUIRED = None  # the default of a field whose constructor argument has no default


@dataclass
class AvalancheLearner(TrainingFields):
    """An Avalanche strategy, fed one clbench task at a time as an Avalanche experience.

    The model is clbench's backbone (the same network, and for a seed the same initial weights,
    as the built-in learners). Batch size, epochs and device are always passed explicitly
    (Avalanche's own defaults are a batch of 1 and 1 epoch). With `mask_logits`, the training
    loss masks the output units clbench's built-in learners mask (units of classes not seen yet
    in class_il; in task_il, units outside the sample's task), so that tables compare methods
    rather than masking conventions; `mask_logits=false` gives Avalanche's plain loss over all
    units. Prediction is the strategy's model in eval mode, unmasked, as for every learner.
    """

    # the fields of TrainingFields (backbone, widths, optimizer, lr, momentum, weight_decay, epochs), then
    batch_size: int = 32                  # training minibatch size (train_mb_size)
    reset_optimizer: bool = True          # fresh optimiser state at every task start (Avalanche: reset_optimizer_state)
    mask_logits: bool = True              # mask the output units clbench's built-in learners mask (see above)
    device: str = "auto"                  # "auto" (CUDA if present), "cpu", "cuda", ...

    strategy_name: ClassVar[str] = ""                        # the Avalanche class, e.g. "EWC"
    strategy_args: ClassVar[dict[str, str]] = {}             # field name -> constructor argument
    untyped_args: ClassVar[frozenset[str]] = frozenset()     # fields whose argument has no simple type
    unsettable_required: ClassVar[tuple[str, ...]] = ()      # required arguments clbench cannot give

    def __post_init__(self) -> None:
        ref = f"{AVALANCHE_PREFIX}{self.strategy_name}"
        check_training_fields(self)
        if self.unsettable_required:
            raise UsageError(f"{ref} needs {', '.join(self.unsettable_required)} (objects such as modules), "
                             f"which clbench cannot pass; use the strategy from Python instead")
        for name in self.strategy_args:
            value = getattr(self, name)
            if name in self.untyped_args:
                value = _literal(value)
                setattr(self, name, value)
            if value is REQUIRED and name in self.required_args():
                raise UsageError(f"{ref} needs {name}: --set {name}=... (or {name} = ... in a suite file)")

    @classmethod
    def required_args(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls) if f.metadata.get("required")}

    # -- state -------------------------------------------------------------------------------
    def setup(self, spec: ScenarioSpec, seed: int) -> None:
        strategy_class = _strategy_class(self.strategy_name)
        self.spec_ = spec
        self.device_ = resolve_device(self.device)
        # Built exactly as SGDLearner builds it, so a seed gives the built-in learners' initial weights.
        model = build_backbone(self.backbone, spec.input_shape, spec.n_outputs, self.widths).to(self.device_)
        optimizer = build_optimizer(self.optimizer, model.parameters(), self.lr, self.momentum, self.weight_decay)
        self.criterion_ = UnitMaskedCrossEntropy(spec.n_outputs, spec.protocol, self.mask_logits)
        offered = {"model": model, "optimizer": optimizer, "criterion": self.criterion_,
                   "train_mb_size": self.batch_size, "train_epochs": self.epochs, "eval_mb_size": self.batch_size,
                   "device": self.device_, "evaluator": _silent_evaluator}
        accepted = inspect.signature(strategy_class.__init__).parameters
        kwargs = {k: v for k, v in offered.items() if k in accepted}
        for name, arg in self.strategy_args.items():
            value = getattr(self, name)
            kwargs[arg] = list(value) if isinstance(value, tuple) else value
        ref = f"{AVALANCHE_PREFIX}{self.strategy_name}"
        try:
            with _quiet():
                self.strategy_ = strategy_class(**kwargs)
        except Exception as err:  # Avalanche checks its arguments with asserts and ValueErrors
            shown = {arg: kwargs[arg] for arg in self.strategy_args.values() if arg in kwargs}
            raise UsageError(f"{ref} rejected its arguments {shown}: {type(err).__name__}: "
                             f"{_one_line(err) or 'no message'}") from None
        self.train_sets_: list[Any] = []   # every task's Avalanche dataset so far (the stream's history)

    # -- training ----------------------------------------------------------------------------
    def fit_task(self, task: Task) -> None:
        """Train the strategy on `task`, given as the next experience of an Avalanche stream."""
        self.criterion_.allow(task.classes)
        experience = self._experience(task)
        try:
            with _quiet():
                self.strategy_.train(experience, eval_streams=[], reset_optimizer_state=self.reset_optimizer,
                                     num_workers=0)
        except Exception as err:  # Avalanche checks few arguments up front: a bad one fails here
            args = {arg: getattr(self, name) for name, arg in self.strategy_args.items()}
            raise UsageError(f"{AVALANCHE_PREFIX}{self.strategy_name} failed training on task {task.task_id + 1} with arguments "
                             f"{args}: {type(err).__name__}: {_one_line(err) or 'no message'}") from err

    def _experience(self, task: Task) -> Any:
        """The task as Avalanche's own benchmark builders give it: a dataset with targets and task
        labels (the task id in task_il, else 0), the next experience of `benchmark_from_datasets`
        over the tasks so far, with task labels and the classes timeline attached."""
        from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
        from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
        from avalanche.benchmarks.scenarios.task_aware import with_task_labels
        from avalanche.benchmarks.utils import DataAttribute
        from avalanche.benchmarks.utils.classification_dataset import TaskAwareClassificationDataset

        n = len(task.y_train)
        task_label = task.known_task_id if task.known_task_id is not None else 0
        dataset = TaskAwareClassificationDataset(
            [torch.utils.data.TensorDataset(task.x_train, task.y_train)],
            data_attributes=[DataAttribute(task.y_train.tolist(), "targets"),
                             DataAttribute([task_label] * n, "targets_task_labels", use_in_getitem=True)])
        self.train_sets_.append(dataset)
        stream = with_classes_timeline(with_task_labels(benchmark_from_datasets(train=self.train_sets_)))
        return stream.train_stream[len(self.train_sets_) - 1]

    # -- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        model = self.strategy_.model
        was_training = model.training
        model.eval()
        try:
            return model(x.to(self.device_))
        finally:
            model.train(was_training)


class UnitMaskedCrossEntropy(torch.nn.Module):
    """Cross-entropy with the logits of units a sample may not use set to -inf, by the rule every
    built-in learner trains with (`clbench.units.OutputUnits`). The loss sees labels, not task ids,
    so in task_il a label may use the units of the tasks that hold it."""

    def __init__(self, n_outputs: int, protocol: str, enabled: bool = True) -> None:
        super().__init__()
        self.units = OutputUnits(n_outputs, protocol)
        self.enabled = enabled
        self.table: torch.Tensor | None = None  # row y: the mask of label y

    def allow(self, classes: Sequence[int]) -> None:
        """Record a new task's units."""
        self.units.add_task(len(self.units.by_task), classes)
        self.table = self.units.label_mask() if self.enabled else None

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.table is None:
            return F.cross_entropy(logits, y)
        if self.table.device != logits.device:
            self.table = self.table.to(logits.device)
        return F.cross_entropy(logits + self.table[y], y)


# -- building the per-strategy classes --------------------------------------------------------

@functools.lru_cache(maxsize=None)
def learner_class(name: str) -> type:
    """The dataclass that runs Avalanche strategy `name` as a clbench learner."""
    strategies = avalanche_strategies()
    if name not in strategies:
        raise unknown_name_error("Avalanche strategy", name, strategies, " (after 'avalanche:')")
    strategy_class = _strategy_class(name)
    own = {f.name for f in dataclasses.fields(AvalancheLearner)}
    hints = _hints(strategy_class.__init__)
    fields, args, untyped, unsettable = [], {}, set(), []
    for p in list(inspect.signature(strategy_class.__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in PROVIDED:
            continue
        required = p.default is inspect.Parameter.empty
        tp = _field_type(hints.get(p.name, p.annotation), None if required else p.default)
        if tp is None:  # an object (a module, a transform, a plugin): keep Avalanche's default
            if required:
                unsettable.append(p.name)
            continue
        field_name = f"strategy_{p.name}" if p.name in own else p.name
        default = REQUIRED if required else p.default
        if isinstance(default, list):
            default = tuple(default)
        if tp is Any:
            untyped.add(field_name)
        fields.append((field_name, tp, dataclasses.field(default=default, metadata={"required": required})))
        args[field_name] = p.name
    doc = (f"Avalanche's {name} strategy as a clbench learner ({strategies[name] or name}).\n\n"
           f"Fields: those of `AvalancheLearner`, then {name}'s keyword arguments"
           f"{': ' + ', '.join(args) if args else ' (none)'}.")
    cls = dataclasses.make_dataclass(name, fields, bases=(AvalancheLearner,),
                                     namespace={"__doc__": doc, "__module__": __package__})
    cls.strategy_name = name
    cls.strategy_args = args
    cls.untyped_args = frozenset(untyped)
    cls.unsettable_required = tuple(unsettable)
    return cls


@functools.lru_cache(maxsize=None)
def _strategy_class(name: str) -> type:
    with _quiet(), _without(*UNNEEDED_SOLVERS):  # the import sets global warning filters; leaving this block restores them
        import avalanche.training
    return getattr(avalanche.training, name)


# QP solvers built with nanobind that hold instances in default arguments: imported, nanobind
# reports them and their types as leaked at interpreter exit (about 180 lines on stderr after
# every run). GEM, the one Avalanche strategy that solves a QP, uses quadprog.
UNNEEDED_SOLVERS = ("sip_qp_python", "pyqpmad")


class _without:
    """Keep optional modules from being imported inside the block (an import of one raises
    ImportError, which its importers expect when it is not installed): Avalanche's GEM imports
    qpsolvers, which imports every QP solver it finds. The modules stay importable after the block."""

    def __init__(self, *modules: str) -> None:
        self.modules = modules
        self.blocked: list[str] = []

    def __enter__(self) -> None:
        import sys

        for module in self.modules:
            if module not in sys.modules:
                sys.modules[module] = None  # type: ignore[assignment]
                self.blocked.append(module)

    def __exit__(self, *exc: Any) -> None:
        import sys

        for module in self.blocked:
            if sys.modules.get(module, False) is None:
                del sys.modules[module]


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation Python cannot evaluate: fall back to the raw ones
        return {}


def _field_type(annotation: Any, default: Any) -> Any:
    """A type clbench can fill from `--set` or a suite file, or None for objects it cannot."""
    if annotation is inspect.Parameter.empty:
        if default is None or isinstance(default, SIMPLE_TYPES):
            return type(default) if isinstance(default, SIMPLE_TYPES) else Any
        if isinstance(default, (list, tuple)) and all(isinstance(v, SIMPLE_TYPES) for v in default):
            return Any
        return None
    if annotation in SIMPLE_TYPES:
        return float if annotation is int and isinstance(default, float) else annotation
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [_field_type(a, None) for a in args if a is not type(None)]
        if not options or any(o is None or o is Any for o in options):
            return None
        union = options[0]
        for option in options[1:]:
            union = union | option
        return union | None if type(None) in args else union
    if origin in (list, tuple, Sequence) and len(args) >= 1 and args[0] in SIMPLE_TYPES:
        return tuple[args[0], ...]
    return None


def _literal(value: Any) -> Any:
    """A `--set` string for an argument Avalanche does not annotate, read as a Python literal."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.lower() in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return value


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _silent_evaluator() -> Any:
    """An evaluator with no metrics and no loggers: clbench's runner does the evaluation."""
    from avalanche.training.plugins import EvaluationPlugin

    return EvaluationPlugin(loggers=[])


class _quiet(warnings.catch_warnings):
    """Restore the warning filters afterwards, and meanwhile keep Avalanche's warnings (deprecation
    notices, which it shows with filters of its own, and "No loggers specified") from printing."""

    def __init__(self) -> None:
        super().__init__(record=True)
