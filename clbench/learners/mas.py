"""Memory Aware Synapses: a weight's importance is how much the network's output moves when it
changes, measured without labels.

Aljundi, Babiloni, Elhoseiny, Rohrbach & Tuytelaars 2018, "Memory Aware Synapses: Learning what
(not) to forget" (ECCV), Sec. "Estimating parameter importance": the importance Ω from the squared
L2 norm of the output (its global version) and the penalised loss L + λ Σ Ω (θ − θ*)².
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from clbench.errors import UsageError
from clbench.lazy import lazy_import
from clbench.gradients import QuadraticPenalty, per_sample_gradients
from clbench.learner import SGDLearner

if TYPE_CHECKING:
    from clbench.scenario import Task

torch = lazy_import("torch")  # see clbench.lazy

ACCUMULATE = ("sum", "average")


@dataclass
class MAS(SGDLearner):
    """MAS: a quadratic penalty weighted by the sensitivity of the output's squared L2 norm.

    After each task, Ω_ij = (1/N) Σ_k |∂ ‖F(x_k)‖²₂ / ∂θ_ij| over the task's training inputs
    (the paper's global version; F(x) are the logits of the units the task may use), and later
    tasks train on L + λ Σ_ij Ω_ij (θ_ij − θ*_ij)². Over tasks Ω is summed, as in
    the paper ("sum"), or blended Ω ← α Ω + (1 − α) Ω_task as FACIL and Avalanche do ("average").
    """

    lam: float = 1.0                  # penalty strength λ (the paper's λ = 1)
    accumulate: str = "sum"           # "sum" of the tasks' Ω (paper) or "average" (FACIL, Avalanche)
    alpha: float = 0.5                # with "average": the weight of the old Ω
    importance_samples: int = 0       # training inputs used to estimate Ω (0 = all of the task)
    importance_batch_size: int = 1    # inputs per gradient: 1 takes each sample's |gradient| (the paper);
                                      # Avalanche takes |gradient| of each minibatch's mean (train_mb_size)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lam < 0:
            raise UsageError(f"lam must be non-negative, got {self.lam}")
        if self.accumulate not in ACCUMULATE:
            raise UsageError(f"accumulate must be one of {', '.join(ACCUMULATE)}, got {self.accumulate!r}")
        if not 0 <= self.alpha <= 1:
            raise UsageError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.importance_samples < 0 or self.importance_batch_size < 1:
            raise UsageError("importance_samples must be >= 0 and importance_batch_size >= 1")

    def setup(self, spec, seed: int) -> None:
        super().setup(spec, seed)
        n = sum(p.numel() for p in self.model_.parameters())
        self.omega_ = torch.zeros(n, device=self.device_)
        self.anchor_ = torch.zeros(n, device=self.device_)
        self.tasks_done_ = 0
        self.penalty = QuadraticPenalty()
        self.sample_generator_ = torch.Generator().manual_seed(seed + 1)  # Ω's subsample leaves the data order alone

    def loss(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        loss = super().loss(x, y, mask)
        if self.tasks_done_ and self.lam > 0:
            loss = loss + self.closed_form_penalty(self.penalty, self.lam, self.omega_, self.anchor_)
        return loss

    def end_task(self, task: Task) -> None:
        if self.later_tasks_follow(task):
            self.consolidate(self.estimate_importance())
        super().end_task(task)

    def consolidate(self, omega: torch.Tensor) -> None:
        """Fold the finished task's Ω into the penalty's and anchor it at the current weights."""
        if self.tasks_done_ == 0 or self.accumulate == "sum":
            self.omega_ = self.omega_ + omega
        else:
            self.omega_ = self.alpha * self.omega_ + (1 - self.alpha) * omega
        self.anchor_ = self.flat_weights().detach().clone()
        self.tasks_done_ += 1

    def estimate_importance(self) -> torch.Tensor:
        """Ω of the current task as one vector over all weights."""
        x = self.x_
        if self.importance_samples and self.importance_samples < len(x):
            x = x[torch.randperm(len(x), generator=self.sample_generator_)[: self.importance_samples].to(self.device_)]
        allowed = (self.mask_ == 0).float() if self.mask_ is not None else None
        weights = list(self.model_.parameters())

        def squared_norm(out: torch.Tensor) -> torch.Tensor:  # ‖F(x)‖² per sample, over the usable units
            return ((out if allowed is None else out * allowed) ** 2).sum(1)

        if self.importance_batch_size > 1:
            omega, starts = torch.zeros_like(self.omega_), range(0, len(x), self.importance_batch_size)
            for start in starts:
                out = squared_norm(self.model_(x[start:start + self.importance_batch_size])).mean()
                omega += torch.cat([g.reshape(-1) for g in torch.autograd.grad(out, weights)]).abs()
            return omega / len(starts)

        omega = {n: torch.zeros_like(p) for n, p in self.model_.named_parameters()}
        for grads in per_sample_gradients(self.model_, lambda out: squared_norm(out)[0], x, chunk=256):
            for n, g in grads.items():
                omega[n] += g.abs().sum(0)
        return torch.cat([omega[n].reshape(-1) for n, _ in self.model_.named_parameters()]) / len(x)
