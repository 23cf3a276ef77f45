"""GDumb: greedily keep a class-balanced memory, and before predicting train a fresh network on
the memory alone.

Prabhu, Torr & Dokania 2020, "GDumb: A Simple Approach that Questions Our Progress in Continual
Learning" (ECCV): the greedy class-balancing sampler and the learner trained from scratch on its memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from clbench.errors import UsageError
from clbench.lazy import lazy_import
from clbench.learner import SGDLearner

if TYPE_CHECKING:
    from clbench.scenario import Task

torch = lazy_import("torch")  # see clbench.lazy


@dataclass
class GDumb(SGDLearner):
    """GDumb: a greedily class-balanced memory, and a network trained from scratch on that memory alone.

    The memory takes each incoming sample while it has room; once full, a sample of a
    class holding fewer than buffer_size / (classes seen) samples replaces a random sample of the
    largest class, and any other sample is dropped. At every task the network is re-initialised
    (from the seed's initial weights) and trained on the memory only, for `epochs` passes.

    A class is a label in class_il and task_il; in domain_il, where every task brings the same
    labels, it is a (label, task) pair, as for `Replay(class_balanced=True)`: balancing per label
    alone would keep the first task's samples forever (no later sample is ever below its share).
    Each memory sample keeps its task's logit mask (task_il: its task's units).
    """

    buffer_size: int = 200          # samples in memory (the paper's k; it reports k from 200 to 2000 on MNIST)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.buffer_size < 1:
            raise UsageError(f"buffer_size must be >= 1, got {self.buffer_size}")

    def setup(self, spec, seed: int) -> None:
        super().setup(spec, seed)
        self.initial_state_ = {k: v.clone() for k, v in self.model_.state_dict().items()}
        self.memory_x_ = torch.empty((0, *spec.input_shape), device=self.device_)
        self.memory_y_ = torch.empty(0, dtype=torch.long, device=self.device_)
        self.memory_task_ = torch.empty(0, dtype=torch.long)

    def begin_task(self, task: Task) -> None:
        super().begin_task(task)
        self.add(self.x_, self.y_, task.task_id)
        self.model_.load_state_dict(self.initial_state_)   # from scratch: the seed's initial weights
        self.optimizer_ = self.make_optimizer()
        self.memory_mask_ = self.logit_mask(self.memory_task_)

    def add(self, x: torch.Tensor, y: torch.Tensor, task_id: int) -> None:
        """The greedy class-balancing sampler, one sample at a time in the task's data order."""
        per_task = self.spec_.protocol == "domain_il"
        tasks = self.memory_task_.tolist()
        labels = [(lab, t) if per_task else lab for lab, t in zip(self.memory_y_.tolist(), tasks)]
        rows: list[tuple[str, int]] = [("memory", i) for i in range(len(labels))]
        counts: dict = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        for i, label in enumerate(y.tolist()):
            label = (label, task_id) if per_task else label
            if len(rows) < self.buffer_size:
                rows.append(("new", i))
                labels.append(label)
                tasks.append(task_id)
                counts[label] = counts.get(label, 0) + 1
                continue
            seen = len(counts) + (label not in counts)
            if counts.get(label, 0) >= self.buffer_size / seen:
                continue
            largest = max(sorted(counts), key=lambda c: counts[c])  # ties: the lowest class
            members = [j for j, lab in enumerate(labels) if lab == largest]
            out = members[int(torch.randint(len(members), (1,), generator=self.generator_))]
            counts[largest] -= 1
            rows[out], labels[out], tasks[out] = ("new", i), label, task_id
            counts[label] = counts.get(label, 0) + 1
        old = [j for kind, j in rows if kind == "memory"]
        new = [j for kind, j in rows if kind == "new"]
        is_new = torch.tensor([kind == "new" for kind, _ in rows], dtype=torch.bool)
        x_rows = torch.empty((len(rows), *x.shape[1:]), device=self.device_)
        y_rows = torch.empty(len(rows), dtype=torch.long, device=self.device_)
        if old:
            x_rows[~is_new] = self.memory_x_[torch.tensor(old, device=self.device_)]
            y_rows[~is_new] = self.memory_y_[torch.tensor(old, device=self.device_)]
        if new:
            x_rows[is_new] = x[torch.tensor(new, device=self.device_)]
            y_rows[is_new] = y[torch.tensor(new, device=self.device_)]
        self.memory_x_, self.memory_y_ = x_rows, y_rows
        self.memory_task_ = torch.tensor(tasks, dtype=torch.long)

    def batches(self, task: Task) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Shuffled minibatches of the memory, each row with its own task's logit mask."""
        yield from self.rows_with_masks(self.memory_x_, self.memory_y_, self.memory_mask_)
