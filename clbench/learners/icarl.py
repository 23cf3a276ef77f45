"""iCaRL: incremental classifier and representation learning — exemplars chosen by herding, a
nearest-mean-of-exemplars classifier, and a distillation loss on the old classes' outputs.

Rebuffi, Kolesnikov, Sperl & Lampert 2017, "iCaRL: Incremental Classifier and Representation
Learning" (CVPR): Algorithm 1 (classification), Algorithm 3 (representation update, its loss),
Algorithms 4-5 (herding selection, exemplar reduction).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Iterator

from clbench.errors import UsageError
from clbench.lazy import lazy_import
from clbench.learner import SGDLearner, check_learner_protocol

if TYPE_CHECKING:
    from clbench.scenario import Task

torch = lazy_import("torch")  # see clbench.lazy
F = lazy_import("torch.nn.functional")

UNSEEN_SCORE = -1e9  # the score of classes without exemplars: finite, below any -distance² (>= -4)


@dataclass
class ICaRL(SGDLearner):
    """iCaRL: herding exemplars, a nearest-mean-of-exemplars classifier, and distillation of the old classes.

    It trains on the task's data and the exemplars with a sigmoid (binary cross-entropy)
    loss over the units seen so far, whose targets are the labels' one-hot code on the new task's
    units and the outputs of the network from before the task on the old units (Algorithm 3).
    After the task the memory of `memory_size` exemplars is shared equally by the classes seen:
    old classes keep their first m exemplars (Algorithm 5), new ones get m chosen by herding
    (Algorithm 4). `predict` scores class y by −‖φ(x) − μ_y‖², μ_y the re-normalised mean of the
    normalised features φ (the backbone's input to its last layer) of y's exemplars (Algorithm 1).

    Defined in class_il and task_il (where the runner restricts the scores to the task's units).
    Not in domain_il: there every task repeats the same classes, so there are no "new" classes to
    learn and "old" ones to distil, which the loss is made of.
    """

    memory_size: int = 200          # exemplars in total, K (the paper: 2000 on iCIFAR-100)

    protocols: ClassVar[tuple[str, ...]] = ("class_il", "task_il")   # see clbench.learner

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.memory_size < 1:
            raise UsageError(f"memory_size must be >= 1, got {self.memory_size}")

    def setup(self, spec, seed: int) -> None:
        check_learner_protocol(self, spec.protocol, "icarl")
        super().setup(spec, seed)
        self.head_ = [m for m in self.model_.modules() if isinstance(m, torch.nn.Linear)][-1]
        self.exemplars_: dict[int, torch.Tensor] = {}     # class -> its exemplars, in herding order
        self.means_: torch.Tensor | None = None           # (n_outputs, d) class means; None before any task

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x): the L2-normalised input of the backbone's last linear layer."""
        captured: list[torch.Tensor] = []
        handle = self.head_.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
        try:
            self.model_(x)
        finally:
            handle.remove()
        return F.normalize(captured[0], dim=1)

    # -- training ----------------------------------------------------------------------------
    def begin_task(self, task: Task) -> None:
        old_units = self.units_.seen.clone()
        super().begin_task(task)
        if self.exemplars_:
            x_old = torch.cat(list(self.exemplars_.values()))
            y_old = torch.cat([torch.full((len(e),), c, dtype=torch.long, device=self.device_)
                               for c, e in self.exemplars_.items()])
            self.train_x_, self.train_y_ = torch.cat([self.x_, x_old]), torch.cat([self.y_, y_old])
        else:
            self.train_x_, self.train_y_ = self.x_, self.y_
        # Targets: one-hot on the new units, the network's own sigmoid outputs (before the update) on old ones.
        new_units = self.units_.seen & ~old_units
        targets = F.one_hot(self.train_y_, self.spec_.n_outputs).float() * new_units.to(self.device_)
        if bool(old_units.any()):
            self.model_.eval()
            with torch.no_grad():
                old = torch.sigmoid(self.model_(self.train_x_))
            self.model_.train()
            targets = torch.where(old_units.to(self.device_), old, targets)
        self.targets_ = targets
        self.seen_idx_ = torch.nonzero(self.units_.seen).squeeze(1).to(self.device_)

    def batches(self, task: Task) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Shuffled minibatches of the task's data and the exemplars; `y` carries row indices
        into the targets, which `loss` reads."""
        index = torch.arange(len(self.train_y_), device=self.device_)
        for x, i in self.shuffled(self.train_x_, index):
            yield x, i, None

    def loss(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Algorithm 3's loss: binary cross-entropy of every seen unit against its target, summed
        over units and averaged over the batch (`y` are row indices, see `batches`)."""
        logits = self.model_(x).index_select(1, self.seen_idx_)
        targets = self.targets_.index_select(0, y).index_select(1, self.seen_idx_)
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(x)

    def end_task(self, task: Task) -> None:
        self.model_.eval()
        with torch.no_grad():
            classes = sorted(int(c) for c in torch.nonzero(self.units_.seen).squeeze(1))
            per_class = self.memory_size // len(classes)
            for c in self.exemplars_:                                        # Algorithm 5
                self.exemplars_[c] = self.exemplars_[c][:per_class]
            for c in task.classes:                                           # Algorithm 4
                x_c = self.x_[self.y_ == c]
                self.exemplars_[c] = x_c[herding(self.features(x_c), per_class)]
            means = torch.zeros(self.spec_.n_outputs, self.head_.in_features, device=self.device_)
            for c, e in self.exemplars_.items():
                if len(e):
                    means[c] = F.normalize(self.features(e).mean(0), dim=0)
            self.means_ = means
            self.has_mean_ = torch.tensor([c in self.exemplars_ and len(self.exemplars_[c]) > 0
                                           for c in range(self.spec_.n_outputs)], device=self.device_)
        self.model_.train()
        del self.train_x_, self.train_y_, self.targets_
        super().end_task(task)

    # -- evaluation --------------------------------------------------------------------------
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Nearest mean of exemplars: class y scores −‖φ(x) − μ_y‖² (the network's logits before the first task)."""
        if self.means_ is None:
            return super().predict(x, task_id)
        was_training = self.model_.training
        self.model_.eval()
        try:
            with torch.no_grad():
                scores = -torch.cdist(self.features(x.to(self.device_)), self.means_) ** 2
                return scores.masked_fill(~self.has_mean_, UNSEEN_SCORE)
        finally:
            self.model_.train(was_training)


def herding(features: torch.Tensor, m: int) -> torch.Tensor:
    """Algorithm 4: indices of m rows chosen one at a time, each the one that brings the mean of
    the chosen rows closest to the mean of all rows (rows are not chosen twice)."""
    m = min(m, len(features))
    mu = features.mean(0)
    chosen: list[int] = []
    total = torch.zeros_like(mu)
    available = torch.ones(len(features), dtype=torch.bool, device=features.device)
    for k in range(1, m + 1):
        distance = (mu - (total + features) / k).norm(dim=1).masked_fill(~available, float("inf"))
        i = int(distance.argmin())
        chosen.append(i)
        total += features[i]
        available[i] = False
    return torch.tensor(chosen, dtype=torch.long, device=features.device)
