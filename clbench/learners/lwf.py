"""Learning without Forgetting: the model is distilled towards its own outputs from before the
task, on the new task's inputs, so no old data is kept.

Li & Hoiem 2017, "Learning without Forgetting" (TPAMI), Eq. 2 (the distillation loss) and Sec. 3
(the total loss λ_o L_old + L_new, temperature T = 2, λ_o = 1).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clbench.errors import UsageError
from clbench.lazy import lazy_import
from clbench.learner import SGDLearner

if TYPE_CHECKING:
    from clbench.scenario import Task

torch = lazy_import("torch")  # see clbench.lazy
F = lazy_import("torch.nn.functional")


@dataclass
class LwF(SGDLearner):
    """LwF: cross-entropy on the new task plus distillation towards the previous model's outputs.

    The total loss is L_new + λ_o L_old, L_old the distillation loss of Eq. 2. The teacher is a
    frozen copy of the model from the end of the previous task. L_old is the cross-entropy
    between the teacher's and the student's softmax at temperature T over the units of the old
    tasks: in task_il one term per old task over its own units (the paper's one head per task),
    in class_il one term over every unit seen before this task, in domain_il one term over all
    units (the shared head).
    """

    alpha: float = 1.0          # λ_o, the weight of the distillation loss (paper: 1)
    temperature: float = 2.0    # T of Eq. 2 (paper: 2)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha < 0 or self.temperature <= 0:
            raise UsageError(f"alpha must be >= 0 and temperature > 0, got {self.alpha}, {self.temperature}")

    def setup(self, spec, seed: int) -> None:
        super().setup(spec, seed)
        self.teacher_ = self.frozen_copy()           # used once old_groups_ is filled (after the first task)
        self.old_groups_: list[torch.Tensor] = []   # unit indices of each distillation term
        self._selectors_of: list[torch.Tensor] | None = None  # see unit_selectors
        self.batch_rows = self.teacher_targets = None           # see begin_task

    def begin_task(self, task: Task) -> None:
        """Also the teacher's soft targets on the whole task, once: the teacher is frozen for the
        task, so every epoch's batches read their rows instead of running it again."""
        super().begin_task(task)
        self.teacher_targets = None
        if self.old_groups_ and self.alpha > 0:
            with torch.no_grad():
                old = torch.cat([self.teacher_(x) for x in self.x_.split(self.batch_size)])
            self.teacher_targets = self.soft_targets(old)

    def batches(self, task: Task):
        """`SGDLearner.batches`, remembering which rows of the task each batch holds."""
        rows = torch.arange(len(self.y_), device=self.device_)
        for x, y, self.batch_rows in self.shuffled(self.x_, self.y_, rows):
            yield x, y, self.mask_
        self.batch_rows = None

    def loss(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        logits = self.model_(x)
        loss = F.cross_entropy(logits if mask is None else logits + mask, y)
        if self.old_groups_ and self.alpha > 0:
            if self.batch_rows is not None:  # inside fit_task: begin_task ran the teacher on the task
                targets = [t.index_select(0, self.batch_rows) for t in self.teacher_targets]
            else:
                with torch.no_grad():
                    targets = self.soft_targets(self.teacher_(x))
            loss = loss + self.alpha * self.distillation(logits, targets)
        return loss

    def soft_targets(self, old: torch.Tensor) -> list[torch.Tensor]:
        """y'_o of Eq. 2 for each distillation group: the teacher's softmax at temperature T."""
        return [F.softmax(old[:, units] / self.temperature, 1) for units in self.unit_selectors()]

    def distillation(self, logits: torch.Tensor, targets: list[torch.Tensor]) -> torch.Tensor:
        """Eq. 2: −Σ_i y'_o(i) log ŷ'_o(i) with ŷ' the student's softmax at temperature T and y'_o
        the groups' `soft_targets`, averaged over the batch; summed over the groups."""
        loss = None
        for units, target in zip(self.unit_selectors(), targets):
            term = F.cross_entropy(logits[:, units] / self.temperature, target)
            loss = term if loss is None else loss + term
        return logits.new_zeros(()) if loss is None else loss

    def unit_selectors(self) -> list:
        """`old_groups_` as column selectors: a slice where a group is a run of consecutive units (as
        the units seen so far usually are), which selects the same columns as the index tensor without
        copying them (and its backward writes the gradient into place rather than scattering it);
        the index tensor otherwise. Remade whenever the groups change (a task's end, a restored state)."""
        of = self._selectors_of   # the group tensors themselves, held, so that `is` cannot match a new one
        if of is None or len(of) != len(self.old_groups_) or any(a is not b for a, b in zip(of, self.old_groups_)):
            self._selectors = []
            for units in self.old_groups_:
                first, n = int(units[0]), len(units)
                run = bool(torch.equal(units.cpu(), torch.arange(first, first + n)))
                self._selectors.append(slice(first, first + n) if run else units)
            self._selectors_of = list(self.old_groups_)
        return self._selectors

    def end_task(self, task: Task) -> None:
        self.batch_rows = self.teacher_targets = None
        protocol = self.spec_.protocol
        if protocol == "task_il":
            self.old_groups_.append(torch.tensor(task.classes, device=self.device_))
        elif protocol == "class_il":
            self.old_groups_ = [torch.nonzero(self.units_.seen).squeeze(1).to(self.device_)]
        else:
            self.old_groups_ = [torch.arange(self.spec_.n_outputs, device=self.device_)]
        self.teacher_ = self.frozen_copy()
        super().end_task(task)

    def frozen_copy(self) -> torch.nn.Module:
        """The teacher: a copy of the model in eval mode, its parameters frozen."""
        teacher = copy.deepcopy(self.model_).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher
