"""The MLP backbones' linear layers through oneDNN on the CPU (`linear_kernel = "onednn"`).

PyTorch's CPU `F.linear` calls its BLAS, MKL in the x86 wheels. MKL picks its fastest code only on
processors it recognises: on an AMD EPYC with AVX-512 it ran a 1024³ float32 product at 110 GFLOP/s
on one thread, where oneDNN (which the same wheels ship, for convolutions) ran it at 233. This
module sends the forward and both backward products of a large enough linear layer to oneDNN
instead. The results are float32 products like MKL's, but rounded differently, so the choice is a
learner field that runs record, off by default: stored runs keep their bits and their ids.
"""
from __future__ import annotations

from clbench.errors import UsageError
from clbench.lazy import lazy_import

torch = lazy_import("torch")  # see clbench.lazy
F = lazy_import("torch.nn.functional")

# Below a few million multiply-adds (rows × inputs × outputs) oneDNN's fixed cost per call outweighs
# its faster arithmetic. Whole split-fmnist runs (784→100→100→10, batches of 32; CPU seconds, best
# of 3, one thread, the AMD EPYC above): fine-tuning 0.66 with F.linear, 0.71 with oneDNN from 1 M
# (which includes the 32-row first layer, 2.5 M), 0.62 from 4 M; A-GEM (reference batches of 256)
# 2.52, 2.21 and 2.09.
SMALL = 4_000_000


def linear(x, weight, bias=None):
    """`F.linear(x, weight, bias)`, through oneDNN where it is faster: float32 matrices on the CPU
    with at least `SMALL` multiply-adds. F.linear otherwise, and under torch.func transforms
    (per-sample gradients), for which the oneDNN operator has no batching rule."""
    if (x.dim() != 2 or x.dtype != torch.float32 or x.device.type != "cpu"
            or x.shape[0] * weight.shape[0] * weight.shape[1] < SMALL
            or torch._C._functorch.is_functorch_wrapped_tensor(x)
            or torch._C._functorch.is_functorch_wrapped_tensor(weight)):
        return F.linear(x, weight, bias)
    return _OneDNNLinear.apply(x, weight, bias)


def _product(a, b_transposed, bias=None):
    """a @ b_transposedᵀ (+ bias) through oneDNN (strided views are read as they are, not copied)."""
    return torch.ops.mkldnn._linear_pointwise(a, b_transposed, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """y = x Wᵀ + b; its backward takes ∂x = ∂y W and ∂W = ∂yᵀ x through oneDNN too."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _product(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        wants_x, wants_weight, wants_bias = ctx.needs_input_grad
        grad_x = _product(grad, weight.t()) if wants_x else None
        grad_weight = _product(grad.t(), x.t()) if wants_weight else None
        grad_bias = grad.sum(0) if ctx.has_bias and wants_bias else None
        return grad_x, grad_weight, grad_bias


def check_available() -> None:
    """A one-line UsageError unless this PyTorch can run the oneDNN product."""
    reason = None
    if not torch.backends.mkldnn.is_available():
        reason = "this PyTorch was built without oneDNN (torch.backends.mkldnn.is_available() is False)"
    else:
        try:
            _product(torch.ones(2, 3), torch.ones(4, 3))
        except (RuntimeError, AttributeError) as err:
            reason = f"this PyTorch has no usable oneDNN linear operator ({str(err).splitlines()[0]})"
    if reason:
        raise UsageError(f"linear_kernel='onednn': {reason}; use linear_kernel='default'")
