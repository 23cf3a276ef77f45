"""Experience replay with a fixed-size memory buffer.

Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning" (ER); reservoir
sampling: Vitter 1985, "Random sampling with a reservoir".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from clbench.errors import UsageError
from clbench.lazy import lazy_import
from clbench.learner import SGDLearner, cross_entropy

if TYPE_CHECKING:
    from clbench.scenario import Task

torch = lazy_import("torch")  # see clbench.lazy


@dataclass
class Replay(SGDLearner):
    """Experience replay: every training batch is joined by a batch drawn from a memory of past
    samples. The memory holds at most `buffer_size` samples, filled by reservoir sampling over
    everything seen (each sample equally likely to be kept) or, with `class_balanced`, an equal
    share per class seen so far (per class and task in domain-IL, where classes recur). The memory is kept as tensors on the training device.

    On a stream without boundaries (`fit_batch`), every batch is offered to the reservoir right
    after its step (Chaudhry et al. 2019 do the same online); `class_balanced` needs boundaries.
    """

    task_free: ClassVar[bool] = True

    buffer_size: int = 200           # samples in memory
    class_balanced: bool = False     # equal share per class instead of reservoir sampling
    replay_batch_size: int = 0       # memory samples per batch (0 = the same as batch_size)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.buffer_size < 0 or self.replay_batch_size < 0:
            raise UsageError("buffer_size and replay_batch_size must be non-negative")

    def setup(self, spec, seed: int) -> None:
        super().setup(spec, seed)
        shape = (0, *spec.input_shape)
        self.buffer_x_ = torch.empty(shape, device=self.device_)
        self.buffer_y_ = torch.empty(0, dtype=torch.long, device=self.device_)
        self.buffer_task_ = torch.empty(0, dtype=torch.long)
        self.n_seen_ = 0

    def begin_task(self, task: Task) -> None:
        super().begin_task(task)
        self.buffer_mask_ = self.logit_mask(self.buffer_task_) if len(self.buffer_task_) else None

    def loss(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n_memory = len(self.buffer_y_)
        if n_memory == 0:
            return super().loss(x, y, mask)
        k = self.replay_batch_size or self.batch_size
        idx = torch.randint(n_memory, (k,), generator=self.generator_).to(self.device_)
        logits = self.model_(torch.cat([x, self.buffer_x_.index_select(0, idx)]))
        if self.spec_.protocol != "task_il":  # the memory's mask is the current one: the units seen so far
            if mask is not None:
                logits = logits + mask
        elif mask is not None or self.buffer_mask_ is not None:
            no_mask = torch.zeros(1, logits.shape[1], device=self.device_)
            current = (no_mask if mask is None else mask).expand(len(x), -1)
            memory = no_mask.expand(k, -1) if self.buffer_mask_ is None else self.buffer_mask_.index_select(0, idx)
            logits = logits + torch.cat([current, memory])
        return cross_entropy(logits, torch.cat([y, self.buffer_y_.index_select(0, idx)]))

    def fit_batch(self, x, y, task_ids=None) -> float:
        if self.class_balanced:
            raise UsageError("Replay with class_balanced=True needs task boundaries; on a task-free "
                             "stream use reservoir sampling (class_balanced=False)")
        if self.spec_.protocol == "task_il" and len(self.buffer_task_):
            self.buffer_mask_ = self.logit_mask(self.buffer_task_)
        else:
            self.buffer_mask_ = None
        loss = super().fit_batch(x, y, task_ids)
        memory_tasks = task_ids.cpu() if task_ids is not None else torch.zeros(len(y), dtype=torch.long)
        self._reservoir(x.to(self.device_), y.to(self.device_), memory_tasks)
        return loss

    def end_task(self, task: Task) -> None:
        self.remember(task)
        super().end_task(task)

    def remember(self, task: Task) -> None:
        """Offer the current task's training samples to the memory (class-balanced or reservoir)."""
        task_ids = torch.full((len(self.y_),), task.task_id, dtype=torch.long)
        if self.class_balanced:
            self._balance(self.x_, self.y_, task_ids)
        else:
            self._reservoir(self.x_, self.y_, task_ids)

    def _reservoir(self, x: torch.Tensor, y: torch.Tensor, task_ids: torch.Tensor) -> None:
        """Offer each new sample to the memory in turn; sample number k is kept with probability size/k."""
        free = max(0, self.buffer_size - len(self.buffer_y_))
        take = min(free, len(y))
        self._append(x[:take], y[:take], task_ids[:take])
        for i in range(take, len(y)):
            slot = int(torch.randint(self.n_seen_ + i + 1, (1,), generator=self.generator_))
            if slot < self.buffer_size:
                self.buffer_x_[slot], self.buffer_y_[slot] = x[i], y[i]
                self.buffer_task_[slot] = task_ids[i]
        self.n_seen_ += len(y)

    def _balance(self, x: torch.Tensor, y: torch.Tensor, task_ids: torch.Tensor) -> None:
        """Keep an equal number of samples per (class, task) pair seen so far: old pairs are
        truncated to their new share, the new task's pairs are drawn at random. Per class in
        class- and task-IL, where a class belongs to one task; in domain-IL, where every task
        brings the same classes, each task keeps its share of each class."""
        self._append(x, y, task_ids)
        groups = self.buffer_y_.cpu() * (int(self.buffer_task_.max()) + 1) + self.buffer_task_
        quota = self.buffer_size // len(torch.unique(groups))
        keep = []
        for group in torch.unique(groups):
            members = torch.nonzero(groups == group).squeeze(1)
            if len(members) > quota:
                if bool((self.buffer_task_[members] == task_ids[0]).all()):  # the new task: a random subset
                    members = members[torch.randperm(len(members), generator=self.generator_)[:quota]]
                else:  # an old pair shrinks to its new share
                    members = members[:quota]
            keep.append(members)
        idx = torch.cat(keep).sort().values
        self.buffer_x_, self.buffer_y_ = self.buffer_x_[idx.to(self.device_)], self.buffer_y_[idx.to(self.device_)]
        self.buffer_task_ = self.buffer_task_[idx]
        self.n_seen_ += len(y)

    def _append(self, x: torch.Tensor, y: torch.Tensor, task_ids: torch.Tensor) -> None:
        if not len(self.buffer_y_):  # the first samples fix the memory's shapes and types (token windows too)
            self.buffer_x_, self.buffer_y_ = x[:0], y[:0]
        self.buffer_x_ = torch.cat([self.buffer_x_, x])
        self.buffer_y_ = torch.cat([self.buffer_y_, y])
        self.buffer_task_ = torch.cat([self.buffer_task_, task_ids])
