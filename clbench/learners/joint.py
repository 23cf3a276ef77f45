"""Joint training on everything seen so far: the upper bound of a continual-learning table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from clbench.lazy import lazy_import
from clbench.learner import SGDLearner

if TYPE_CHECKING:
    from clbench.scenario import Task

torch = lazy_import("torch")  # see clbench.lazy


@dataclass
class Joint(SGDLearner):
    """Joint (cumulative) training: at each task, trains on the union of the training data of all
    tasks seen so far, so nothing is forgotten for want of data. It breaks the continual-learning
    constraint on purpose and serves as the upper bound.
    """

    from_scratch: bool = False   # re-initialise the model at every task instead of continuing

    def setup(self, spec, seed: int) -> None:
        super().setup(spec, seed)
        self.seed_ = seed
        self.seen_x_: list[torch.Tensor] = []
        self.seen_y_: list[torch.Tensor] = []
        self.seen_task_: list[torch.Tensor] = []

    def begin_task(self, task: Task) -> None:
        if self.from_scratch and self.seen_x_:
            from clbench.models import build_backbone

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed_ + task.task_id)
                model = build_backbone(self.backbone, self.spec_.input_shape, self.spec_.n_outputs, self.widths)
            self.model_ = model.to(self.device_)
            self.optimizer_ = self.make_optimizer()
        super().begin_task(task)
        self.seen_x_.append(self.x_)
        self.seen_y_.append(self.y_)
        self.seen_task_.append(torch.full((len(self.y_),), task.task_id, dtype=torch.long))
        self.all_x_, self.all_y_ = torch.cat(self.seen_x_), torch.cat(self.seen_y_)
        self.all_mask_ = self.logit_mask(torch.cat(self.seen_task_))

    def batches(self, task: Task) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Shuffled minibatches of all data seen so far, each row with its own task's logit mask."""
        yield from self.rows_with_masks(self.all_x_, self.all_y_, self.all_mask_)
