"""Gradients the regularisers share: per-sample gradients (EWC's Fisher, MAS's importance), a
quadratic penalty's gradient in closed form (SI, MAS), and adding such gradients as autograd would."""
from __future__ import annotations

import operator
import warnings
from collections.abc import Iterator

from clbench.lazy import lazy_import

torch = lazy_import("torch")  # imported when a run starts, not when a suite is planned (clbench.lazy)


def add_to_gradients(params: list[torch.nn.Parameter], gradients: list[torch.Tensor]) -> None:
    """p.grad += g for each pair, as autograd would have accumulated it: a parameter that got no
    gradient from the backward pass gets g (a copy), one that does not require a gradient none."""
    grads = [p.grad for p in params]
    if all(g is not None for g in grads):
        torch._foreach_add_(grads, gradients)
        return
    for p, g in zip(params, gradients):
        if p.requires_grad:
            p.grad = g.clone() if p.grad is None else p.grad.add_(g)


def parameter_views(flat: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    """A vector over all of a model's weights (`parameters()` order) as one view per parameter,
    shaped like it (no copy)."""
    return [piece.view(p.shape) for piece, p in zip(flat.split([p.numel() for p in params]), params)]


class QuadraticPenalty:
    """c Σ_k w_k (θ_k − θ*_k)² over all of a model's weights θ (one vector, `parameters()` order), the
    penalty of SI and MAS, as a value and its gradient in closed form.

    The gradient is, bit for bit, what autograd gives through `c * (w * (θ − θ*) ** 2).sum()`:
    that graph's backward is (c w) · 2 (θ − θ*), each factor rounded once, and here it is the same
    product of the same two factors: c w made once per (c, w), and 2 (θ − θ*) computed as
    2θ + (−2θ*), which equals it exactly (doubling and negating are exact in floating point). That is
    a few passes over the weight vector (those two, a dot product for the value, the caller's addition
    to the gradients) instead of about 20 autograd operations (cat, sub, pow, mul, sum and their
    backwards), which on clbench's small models cost as much as the network's own backward pass. The value only
    reports the loss (its rounding may differ from that expression's in the last bits); it enters no
    gradient. The returned gradients are views of a buffer that the next call overwrites.
    """

    def __init__(self) -> None:
        self.tensors: tuple | None = None

    def __call__(self, params: list[torch.nn.Parameter], c: float, weights: torch.Tensor, anchor: torch.Tensor,
                 flat: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(value, gradient per parameter) at the current weights (`flat`: them as one detached vector, if known)."""
        versions = (c, weights._version, anchor._version, len(params))
        if self.tensors is None or self.tensors[0] is not weights or self.tensors[1] is not anchor \
                or self.versions != versions or not all(map(operator.is_, params, self.tensors[2])):
            with torch.no_grad():
                self.scaled = c * weights           # the grad reaching w (θ − θ*)² in autograd: the float32 c, times w
                self.minus_twice_anchor = -2.0 * anchor
                self.twice, self.gradient = torch.empty_like(anchor), torch.empty_like(anchor)
            self.pieces = parameter_views(self.gradient, params)
            self.tensors, self.versions = (weights, anchor, list(params)), versions
        with torch.no_grad():
            if flat is None:
                flat = torch.cat([p.reshape(-1) for p in params])
            torch.add(self.minus_twice_anchor, flat, alpha=2.0, out=self.twice)   # 2 (θ − θ*): PowBackward's factor
            torch.mul(self.scaled, self.twice, out=self.gradient)
            value = 0.25 * torch.dot(self.gradient, self.twice)
        return value, self.pieces


def per_sample_gradients(model: torch.nn.Module, objective, x: torch.Tensor, *per_sample: torch.Tensor,
                         chunk: int) -> Iterator[dict[str, torch.Tensor]]:
    """The gradient of `objective(model(x_i), *others_i)` (a scalar; each sample as a batch of one)
    with respect to the model's weights, for every sample i: dicts of name -> (samples, *weight
    shape), `chunk` samples at a time (`torch.func.vmap`). Serves EWC's Fisher and MAS's importance."""
    params = {name: p.detach() for name, p in model.named_parameters()}

    def one(p, xi, *others):
        return objective(torch.func.functional_call(model, p, (xi.unsqueeze(0),)), *(o.unsqueeze(0) for o in others))

    grad = torch.func.vmap(torch.func.grad(one), in_dims=(None,) + (0,) * (1 + len(per_sample)))
    for start in range(0, len(x), chunk):
        with warnings.catch_warnings():  # attention has no vmap rule on the CPU: torch loops, and says so
            warnings.filterwarnings("ignore", message="There is a performance drop")
            grads = grad(params, *(t[start:start + chunk] for t in (x, *per_sample)))
        yield grads
