"""Averaged Gradient Episodic Memory: a step may not increase the average loss on a memory of
past samples, to first order.

Chaudhry, Ranzato, Rohrbach & Elhoseiny 2019, "Efficient Lifelong Learning with A-GEM" (ICLR),
Eq. 11 (the projected gradient).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from clbench.errors import UsageError
from clbench.gradients import parameter_views
from clbench.lazy import lazy_import
from clbench.learner import SGDLearner
from clbench.optim import optimizer_step

if TYPE_CHECKING:
    from clbench.scenario import Task

torch = lazy_import("torch")  # see clbench.lazy
F = lazy_import("torch.nn.functional")


@dataclass
class AGEM(SGDLearner):
    """A-GEM: each step's gradient is projected so that it cannot raise the loss on the episodic memory.

    The step's gradient g is replaced by g̃ = g − (gᵀg_ref / g_refᵀg_ref) g_ref whenever
    gᵀg_ref < 0 (Eq. 11), g_ref being the gradient of the loss on a random sample of the episodic
    memory, so that g̃ᵀg_ref ≥ 0.

    The memory keeps `memory_per_task` random samples of every finished task, each with its own
    task's logit mask.
    """

    memory_per_task: int = 250     # samples kept per task (the paper's episodic memory per task)
    sample_size: int = 256         # memory samples per reference gradient (paper: 256)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.memory_per_task < 1 or self.sample_size < 1:
            raise UsageError("memory_per_task and sample_size must be >= 1")

    def setup(self, spec, seed: int) -> None:
        super().setup(spec, seed)
        self.memory_x_ = torch.empty((0, *spec.input_shape), device=self.device_)
        self.memory_y_ = torch.empty(0, dtype=torch.long, device=self.device_)
        self.memory_task_ = torch.empty(0, dtype=torch.long)

    def begin_task(self, task: Task) -> None:
        super().begin_task(task)
        self.memory_mask_ = self.logit_mask(self.memory_task_) if len(self.memory_task_) else None

    def gradient(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, gradient of the loss as one vector) of a batch."""
        logits = self.model_(x)
        loss = F.cross_entropy(logits if mask is None else logits + mask, y)
        grads = torch.autograd.grad(loss, self.model_parameters())
        return loss.detach(), torch.cat([g.reshape(-1) for g in grads])

    def train_step(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """One step along the projected gradient g̃, written straight into the weights' gradients:
        the two gradients are taken anyway, so no third backward pass (through a surrogate loss
        whose gradient is g̃) is needed."""
        if len(self.memory_y_) == 0:
            return super().train_step(x, y, mask)
        loss, g = self.gradient(x, y, mask)
        idx = torch.randperm(len(self.memory_y_), generator=self.generator_)[: self.sample_size].to(self.device_)
        memory_mask = None if self.memory_mask_ is None else self.memory_mask_.index_select(0, idx)
        _, g_ref = self.gradient(self.memory_x_.index_select(0, idx), self.memory_y_.index_select(0, idx), memory_mask)
        g = project(g, g_ref)
        params = self.model_parameters()
        for p, grad in zip(params, parameter_views(g, params)):
            p.grad = grad
        optimizer_step(self.optimizer_)
        return loss

    def end_task(self, task: Task) -> None:
        keep = torch.randperm(len(self.y_), generator=self.generator_)[: self.memory_per_task].to(self.device_)
        self.memory_x_ = torch.cat([self.memory_x_, self.x_[keep]])
        self.memory_y_ = torch.cat([self.memory_y_, self.y_[keep]])
        self.memory_task_ = torch.cat([self.memory_task_, torch.full((len(keep),), task.task_id, dtype=torch.long)])
        super().end_task(task)


def project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """Eq. 11: g unchanged if gᵀg_ref ≥ 0, else g minus its component along g_ref."""
    dot = torch.dot(g, g_ref)
    if dot >= 0:
        return g
    return g - (dot / torch.dot(g_ref, g_ref)) * g_ref
