"""Experience replay with asymmetric cross-entropy (ER-ACE): incoming samples only compete with
the classes of their own batch, so learning new classes does not push down the logits of old ones.

Caccia, Aljundi, Asadi, Tuytelaars, Pineau & Belilovsky 2022, "New Insights on Reducing Abrupt
Representation Change in Online Continual Learning" (ICLR): the ER-ACE loss, the asymmetric
cross-entropy L_ACE on incoming data plus the cross-entropy on replayed data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from clbench.lazy import lazy_import
from clbench.learner import SGDLearner
from clbench.learners.replay import Replay

if TYPE_CHECKING:
    from clbench.scenario import Task

torch = lazy_import("torch")  # see clbench.lazy
F = lazy_import("torch.nn.functional")


@dataclass
class ERACE(Replay):
    """ER-ACE: experience replay whose incoming samples compete only with their own batch's classes.

    The incoming batch's cross-entropy is taken over the units of the classes present
    in that batch only; the memory batch's cross-entropy over every unit its sample may use (the
    units seen so far in class_il, its own task's units in task_il), as experience replay does.

    The memory is `Replay`'s (reservoir sampling, or class-balanced), updated with the task's
    samples when the task starts rather than when it ends, as Avalanche's ER_ACE does: the memory
    loss must also see the new classes, which the incoming loss never sets against the old ones
    (with only old samples in memory, new classes would never out-score old ones).

    `mask_logits=False` takes the memory's cross-entropy over all units, as Avalanche's ER_ACE
    does (on split-digits class_il its final accuracy drops from 0.85 to 0.80).
    """

    mask_logits: bool = True        # mask the memory batch's logits as SGDLearner does (False: all units)

    def begin_task(self, task: Task) -> None:
        super().begin_task(task)
        self.remember(task)
        self.buffer_mask_ = self.logit_mask(self.buffer_task_)

    def end_task(self, task: Task) -> None:
        SGDLearner.end_task(self, task)       # the memory was updated at the start

    def loss(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n_memory = len(self.buffer_y_)
        k = self.replay_batch_size or self.batch_size
        idx = torch.randint(n_memory, (k,), generator=self.generator_).to(self.device_) if n_memory else None
        logits = self.model_(x if idx is None else torch.cat([x, self.buffer_x_.index_select(0, idx)]))
        present = torch.zeros(logits.shape[1], dtype=torch.bool, device=self.device_)
        present[y] = True
        current = logits[: len(x)].masked_fill(~present, float("-inf"))
        loss = F.cross_entropy(current, y)
        if idx is not None:
            memory = logits[len(x):]
            if not self.mask_logits:
                mask = None
            elif self.spec_.protocol == "task_il" and self.buffer_mask_ is not None:
                mask = self.buffer_mask_.index_select(0, idx)   # each memory sample's own task's units
            loss = loss + F.cross_entropy(memory if mask is None else memory + mask, self.buffer_y_.index_select(0, idx))
        return loss
