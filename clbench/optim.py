"""Optimisers for `SGDLearner` and the adapters: Adam or SGD with PyTorch's fused kernel, and a
step that calls that kernel directly, skipping `Optimizer.step`'s Python around it (bit-identical)."""
from __future__ import annotations

from typing import Iterable

from clbench.lazy import lazy_import

torch = lazy_import("torch")  # imported when a run starts, not when a suite is planned (clbench.lazy)

# whether this torch's private fused-Adam kernel takes the call `optimizer_step` makes (it falls
# back to `step()` for good the first time it does not)
_DIRECT_KERNEL = {"usable": True}


def build_optimizer(kind: str, params: Iterable[torch.nn.Parameter], lr: float, momentum: float = 0.0,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """`torch.optim.Adam` ("adam") or `torch.optim.SGD` ("sgd") with PyTorch's fused kernel where this
    torch has one for the parameters' device, else its multi-tensor (foreach) version.

    The same algorithm as the per-tensor default, with rounding differences of order 1e-7 per step;
    a step of clbench's small models is 20-30% faster on the CPU (benchmarks/peers.py).
    """
    params = list(params)
    cls = torch.optim.Adam if kind == "adam" else torch.optim.SGD
    settings = {"lr": lr, "weight_decay": weight_decay, **({"momentum": momentum} if kind == "sgd" else {})}
    try:
        return cls(params, fused=True, **settings)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or torch version
        return cls(params, foreach=True, **settings)


def clear_gradients(optimizer: torch.optim.Optimizer) -> None:
    """`optimizer.zero_grad(set_to_none=True)` without its per-call profiler scope: every gradient set to None."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """`optimizer.step()`; for the fused Adam of `build_optimizer` the kernel is called directly.

    `torch.optim.Adam.step` with `fused=True` ends in `torch._foreach_add_(steps, 1)` and one
    `torch._fused_adam_` call per device and dtype; on clbench's small models its Python around them
    (profiler scopes, hook loops, state and device grouping) costs several times the kernel. Here the
    same two calls get the same tensors and arguments, so the weights and the optimiser state come
    out bit for bit as `step()` leaves them (tests/test_learners.py checks it). Anything else (another
    optimiser or setting, hooks, a parameter without a gradient, state not yet created by a first
    `step()`) goes through `step()`.
    """
    step = _fused_adam_step(optimizer) if _DIRECT_KERNEL["usable"] else None
    if step is None:
        optimizer.step()
        return
    try:
        step()
    except (AttributeError, TypeError, RuntimeError):  # a torch whose private kernel differs: step() from now on
        _DIRECT_KERNEL["usable"] = False
        optimizer.step()


def _fused_adam_step(optimizer: torch.optim.Optimizer):
    """The direct kernel call for `optimizer`, or None where `optimizer_step` must call `step()`."""
    from torch.optim import optimizer as optim_module   # cached by Python's import system after the first call

    if (type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1
            or optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
            or optim_module._global_optimizer_pre_hooks or optim_module._global_optimizer_post_hooks
            or getattr(optimizer, "grad_scale", None) is not None or getattr(optimizer, "found_inf", None) is not None):
        return None
    group = optimizer.param_groups[0]
    if (not group.get("fused") or group["amsgrad"] or group["maximize"] or group["differentiable"]
            or group["capturable"] or group.get("decoupled_weight_decay", False) or torch.is_tensor(group["lr"])
            or torch.is_tensor(group["betas"][0]) or torch.is_tensor(group["betas"][1])):
        return None
    tensors = _fused_adam_state(optimizer, group)
    if tensors is None:
        return None
    params, exp_avgs, exp_avg_sqs, steps, counts = tensors
    grads = [p.grad for p in params]
    if any(g is None or g.is_sparse for g in grads):
        return None
    beta1, beta2 = group["betas"]

    def step() -> None:
        with torch.no_grad():
            counts.add_(1)
            try:
                torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
                                   beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                                   maximize=False, grad_scale=None, found_inf=None)
            except BaseException:
                counts.sub_(1)  # nothing stepped: leave the counts as they were
                raise
    return step


def _fused_adam_state(optimizer: torch.optim.Optimizer, group: dict) -> tuple | None:
    """(params, exp_avgs, exp_avg_sqs, steps, counts) of a one-group Adam whose state a first `step()`
    has created, all on one device and dtype (else None). The parameters' step counts become views
    of one vector, `counts`, so that a step adds 1 to them in one operation instead of one per
    parameter (`step()` and `state_dict()` see the same values). Kept on the optimiser while its
    `state` and group objects are the ones it was read from: `load_state_dict` replaces both, and
    `step()` updates the tensors in place once they exist."""
    cached = getattr(optimizer, "_clbench_fused_state", None)
    if cached is not None and cached[0] is optimizer.state and cached[1] is group and cached[2] == len(group["params"]):
        return cached[3]
    params = list(group["params"])
    if not params:
        return None
    device, dtype = params[0].device, params[0].dtype
    exp_avgs, exp_avg_sqs, steps = [], [], []
    for p in params:
        state = optimizer.state.get(p)
        if p.device != device or p.dtype != dtype or not state or len(state) != 3:  # step, exp_avg, exp_avg_sq
            return None
        exp_avgs.append(state["exp_avg"])
        exp_avg_sqs.append(state["exp_avg_sq"])
        steps.append(state["step"])
    if any(s.dim() != 0 or s.device != steps[0].device or s.dtype != steps[0].dtype for s in steps):
        return None
    counts = torch.stack(steps)
    steps = list(counts.unbind())
    for p, count in zip(params, steps):
        optimizer.state[p]["step"] = count
    tensors = (params, exp_avgs, exp_avg_sqs, steps, counts)
    optimizer._clbench_fused_state = (optimizer.state, group, len(params), tensors)
    return tensors
