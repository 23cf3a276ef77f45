"""Synaptic Intelligence: each weight's importance is its contribution to the drop in loss along
the training trajectory.

Zenke, Poole & Ganguli 2017, "Continual Learning Through Synaptic Intelligence" (ICML), Eqs. 4-5.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from clbench.errors import UsageError
from clbench.lazy import lazy_import
from clbench.gradients import QuadraticPenalty
from clbench.learner import SGDLearner

if TYPE_CHECKING:
    from clbench.scenario import Task

torch = lazy_import("torch")  # see clbench.lazy


@dataclass
class SI(SGDLearner):
    """SI: a quadratic penalty weighted by each weight's path integral of the loss gradient.

    During task μ every optimiser step adds −g_k Δθ_k to ω_k (g: the gradient of the training
    loss the step followed, Δθ: the step); the path integral ω_k ≈ Σ_t g_k(t) θ'_k(t) of the paper.
    At the end of the task Ω_k += ω_k / ((Δ_k)² + ξ) with Δ_k the task's total change of θ_k
    (Eq. 5), and later tasks train on L + c Σ_k Ω_k (θ̃_k − θ_k)², θ̃ the weights at the end of the
    previous task (Eq. 4). Unlike EWC no extra pass over the data is needed. `clip` caps Ω_k
    (the paper does not clip; Avalanche's `SynapticIntelligence(si_lambda=λ, eps=e)` is `c = λ / 2`,
    `xi = e`, `clip = 0.001`).
    """

    c: float = 0.1                  # penalty strength c (Eq. 4)
    xi: float = 0.001               # damping ξ of Eq. 5 (the paper's 1e-3), keeps Ω finite where Δ_k = 0
    clip: float = float("inf")      # upper bound on each Ω_k (inf: no bound, as in the paper)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.c < 0 or self.xi <= 0:
            raise UsageError(f"c must be >= 0 and xi > 0, got c={self.c}, xi={self.xi}")

    def setup(self, spec, seed: int) -> None:
        super().setup(spec, seed)
        n = sum(p.numel() for p in self.model_.parameters())
        self.omega_ = torch.zeros(n, device=self.device_)       # Ω, all weights as one vector
        self.importance_ = torch.zeros(n, device=self.device_)  # Ω capped at `clip`: the penalty's weights
        self.anchor_ = torch.zeros(n, device=self.device_)      # θ̃: the weights at the last task end
        self.path_ = torch.zeros(n, device=self.device_)        # ω of the current task
        self.previous_: torch.Tensor | None = None               # θ before the step being accounted
        self.tasks_done_ = 0
        self.penalty = QuadraticPenalty()

    def begin_task(self, task: Task) -> None:
        super().begin_task(task)
        self.path_.zero_()
        self.start_ = self.flat_weights().detach()
        self.previous_ = self.start_

    def account_step(self, now: torch.Tensor) -> None:
        """Add the last step's −g·Δθ to ω, `now` the weights after it. `fit_task` calls `loss` right
        after each step, before the gradients are cleared, so the step's gradient is still in `.grad`."""
        grads = [p.grad for p in self.model_parameters()]
        if self.previous_ is None or any(g is None for g in grads):
            return
        with torch.no_grad():
            self.path_ -= torch.cat([g.reshape(-1) for g in grads]) * (now - self.previous_)
            self.previous_ = now

    def loss(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            weights = self.flat_weights()    # once per step: the accounting and the penalty
        self.account_step(weights)
        loss = super().loss(x, y, mask)
        if self.c > 0 and self.tasks_done_ > 0:
            loss = loss + self.closed_form_penalty(self.penalty, self.c, self.importance_, self.anchor_, weights)
        return loss

    def end_task(self, task: Task) -> None:
        with torch.no_grad():
            end = self.flat_weights()
            self.account_step(end)  # the task's last step
            self.omega_ += self.path_ / ((end - self.start_) ** 2 + self.xi)
            self.importance_ = self.omega_.clamp(max=self.clip)
            self.anchor_ = end
        self.tasks_done_ += 1
        self.previous_ = None
        super().end_task(task)
