"""Elastic Weight Consolidation, with a penalty per task or online.

Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in neural networks" (PNAS);
online EWC: Schwarz et al. 2018, "Progress & Compress" (ICML).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from clbench.errors import UsageError
from clbench.lazy import lazy_import
from clbench.gradients import per_sample_gradients
from clbench.learner import SGDLearner, cross_entropy

if TYPE_CHECKING:
    from clbench.scenario import Task

torch = lazy_import("torch")  # see clbench.lazy
F = lazy_import("torch.nn.functional")

FISHER_LABELS = ("sample", "argmax", "true")


@dataclass
class EWC(SGDLearner):
    """EWC: a quadratic penalty keeps weights that mattered for earlier tasks near their values.

    After each task the diagonal Fisher information F is estimated at the learned weights θ*;
    training on later tasks adds (lam / 2) · Σ_i F_i (θ_i − θ*_i)². With `online=False` every
    task keeps its own penalty (Kirkpatrick et al. 2017); with `online=True` one running Fisher
    F ← gamma · F + F_task anchored at the latest weights is kept (Schwarz et al. 2018).
    """

    lam: float = 100.0               # penalty strength λ
    online: bool = False             # one running penalty (online EWC) instead of one per task
    gamma: float = 1.0               # online EWC: decay of the running Fisher, in (0, 1]
    fisher_samples: int = 256        # training samples used to estimate F (0 = all of the task)
    fisher_labels: str = "sample"    # labels for F: "sample" from the model's prediction (the true
                                     # Fisher), its "argmax", or the "true" labels (empirical Fisher)
    fisher_batch_size: int = 1       # samples per squared gradient: 1 squares each sample's gradient (the
                                     # Fisher's definition); Avalanche squares the gradient of each
                                     # minibatch's mean loss, in data order (its train_mb_size)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lam < 0:
            raise UsageError(f"lam must be non-negative, got {self.lam}")
        if not 0 < self.gamma <= 1:
            raise UsageError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.fisher_samples < 0:
            raise UsageError(f"fisher_samples must be >= 0 (0 = all), got {self.fisher_samples}")
        if self.fisher_batch_size < 1:
            raise UsageError(f"fisher_batch_size must be >= 1, got {self.fisher_batch_size}")
        if self.fisher_labels not in FISHER_LABELS:
            raise UsageError(f"fisher_labels must be one of {', '.join(FISHER_LABELS)}, got {self.fisher_labels!r}")

    def setup(self, spec, seed: int) -> None:
        super().setup(spec, seed)
        # The penalty Σ F (θ − θ*)², summed over tasks, is kept as Σ F θ² − 2 θ·Σ F θ* + Σ F θ*²,
        # so a training step costs the same however many tasks came before.
        self.fisher_: dict[str, torch.Tensor] = {}     # Σ_t F_t (online: the running Fisher)
        self.anchor_: dict[str, torch.Tensor] = {}     # Σ_t F_t θ*_t
        self.constant_ = torch.zeros((), device=self.device_)  # Σ_t F_t θ*_t²
        # Its own random stream, so that estimating F does not change the order of training data
        # (with lam=0, EWC then follows fine-tuning exactly).
        self.fisher_generator_ = torch.Generator().manual_seed(seed + 1)

    def loss(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        loss = super().loss(x, y, mask)
        if self.fisher_ and self.lam > 0:
            loss = loss + 0.5 * self.lam * self.penalty()
        return loss

    def penalty(self) -> torch.Tensor:
        # Σ θ·(F θ − 2 Σ F θ*) + const over all weights as one vector: a handful of operations per
        # step (forward and backward) rather than several per weight tensor.
        theta = self.flat_weights()
        return self.constant_ + (theta * (self.fisher_flat_ * theta - self.anchor2_flat_)).sum()

    def end_task(self, task: Task) -> None:
        if self.later_tasks_follow(task):
            self.consolidate(self.estimate_fisher())
        super().end_task(task)

    def consolidate(self, fisher: dict[str, torch.Tensor]) -> None:
        """Add the finished task's Fisher, anchored at the current weights, to the penalty's sums."""
        theta = {n: p.detach().clone() for n, p in self.model_.named_parameters()}
        if self.online:
            self.fisher_ = {n: self.gamma * self.fisher_.get(n, 0.0) + f for n, f in fisher.items()}
            self.anchor_ = {n: self.fisher_[n] * theta[n] for n in theta}
            self.constant_ = sum((self.fisher_[n] * theta[n] ** 2).sum() for n in theta)
        else:
            for n, f in fisher.items():
                self.fisher_[n] = self.fisher_.get(n, 0.0) + f
                self.anchor_[n] = self.anchor_.get(n, 0.0) + f * theta[n]
                self.constant_ = self.constant_ + (f * theta[n] ** 2).sum()
        names = [n for n, _ in self.model_.named_parameters()]
        self.fisher_flat_ = torch.cat([self.fisher_[n].reshape(-1) for n in names])
        self.anchor2_flat_ = 2 * torch.cat([self.anchor_[n].reshape(-1) for n in names])

    def estimate_fisher(self) -> dict[str, torch.Tensor]:
        """Diagonal Fisher: the mean over samples of the squared per-sample gradient of log p(label|x)."""
        n = len(self.x_)
        if self.fisher_samples and self.fisher_samples < n:
            idx = torch.randperm(n, generator=self.fisher_generator_)[: self.fisher_samples].to(self.device_)
            x, y = self.x_[idx], self.y_[idx]
        else:
            x, y = self.x_, self.y_
        params = {n: p.detach() for n, p in self.model_.named_parameters()}
        mask = self.mask_ if self.mask_ is not None else torch.zeros((), device=self.device_)
        with torch.no_grad():
            logits = self.model_(x) + mask
            if self.fisher_labels == "sample":  # one label per image, or per position of a token window
                probs = F.softmax(logits, -1).cpu()
                y = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=self.fisher_generator_)
                y = y.reshape(probs.shape[:-1]).to(self.device_)
            elif self.fisher_labels == "argmax":
                y = logits.argmax(-1)

        if self.fisher_batch_size > 1:  # plain autograd: torch.func.grad costs a one-time import of torch._dynamo
            names, weights = zip(*self.model_.named_parameters())
            fisher = {name: torch.zeros_like(p) for name, p in params.items()}
            starts = range(0, len(x), self.fisher_batch_size)
            for start in starts:
                end = start + self.fisher_batch_size
                loss = cross_entropy(self.model_(x[start:end]) + mask, y[start:end])
                for name, g in zip(names, torch.autograd.grad(loss, weights)):
                    fisher[name] += g ** 2
            return {name: f / len(starts) for name, f in fisher.items()}

        def log_likelihood(out, yi):
            return -cross_entropy(out + mask, yi)

        fisher = {name: torch.zeros_like(p) for name, p in params.items()}
        n_weights = sum(p.numel() for p in params.values())
        chunk = max(1, min(256, 2**26 // n_weights))  # per-sample gradients held at once: at most ~256 MB
        for grads in per_sample_gradients(self.model_, log_likelihood, x, y, chunk=chunk):
            for name, g in grads.items():
                fisher[name] += (g ** 2).sum(0)
        return {name: f / len(x) for name, f in fisher.items()}
