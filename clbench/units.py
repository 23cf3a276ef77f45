"""Which output units a learner may use now: the one rule behind every training-time logit mask.

During training, clbench's learners (and the Avalanche adapter, so that tables compare methods
rather than masking conventions) hide the output units a sample may not use yet, as van de Ven,
Tuytelaars & Tolias (2022) do: in class_il the units of the classes seen so far, in task_il the
units of the sample's own task, in domain_il every unit (nothing is masked). Evaluation is never
masked here; the runner masks task_il logits itself.
"""
from __future__ import annotations

from typing import Iterable

from clbench.lazy import lazy_import

torch = lazy_import("torch")  # imported when a run starts (clbench.lazy)


class OutputUnits:
    """The units each task of a stream uses, recorded as tasks arrive, and the additive logit
    masks (0 where a unit may be used, -inf where not) that follow from them."""

    def __init__(self, n_outputs: int, protocol: str) -> None:
        self.n_outputs = n_outputs
        self.protocol = protocol
        self.seen = torch.zeros(n_outputs, dtype=torch.bool)    # units of every task so far
        self.by_task: dict[int, torch.Tensor] = {}              # task id -> its units

    def add_task(self, task_id: int, classes: Iterable[int]) -> None:
        """Record the units of a task that training is about to start on."""
        units = torch.zeros(self.n_outputs, dtype=torch.bool)
        units[list(classes)] = True
        self.by_task[int(task_id)] = units
        self.seen |= units

    def mask(self, task_ids: torch.Tensor, device=None) -> torch.Tensor | None:
        """The mask of one row per task id (the task a sample comes from); None when nothing is masked."""
        if self.protocol == "domain_il":
            return None
        if self.protocol == "class_il":
            allowed = self.seen.expand(len(task_ids), -1)
        else:
            allowed = torch.stack([self.by_task[int(t)] for t in task_ids])
        return _additive(allowed, device)

    def label_mask(self, device=None) -> torch.Tensor | None:
        """The mask of one row per label, for a loss that sees labels but not task ids: in task_il a
        label may use the units of every task that holds it. None when nothing is masked."""
        if self.protocol == "domain_il" or not self.by_task:
            return None
        if self.protocol == "class_il":
            return _additive(self.seen.expand(self.n_outputs, -1), device)
        tasks = torch.stack(list(self.by_task.values())).float()  # (tasks, units)
        return _additive(tasks.T @ tasks > 0, device)


def _additive(allowed: torch.Tensor, device) -> torch.Tensor | None:
    if bool(allowed.all()):
        return None
    zeros = torch.zeros(allowed.shape, device=device)
    return zeros.masked_fill(~allowed.to(device), float("-inf"))
