"""`linear_kernel = "onednn"`: the MLP's linear layers through oneDNN compute F.linear's values and
gradients (to float32 rounding), only where the product is large enough, never under torch.func,
and only where they can; a run records the choice."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clbench import onednn
from clbench.errors import UsageError
from clbench.fields import field_values
from clbench.learners.finetune import Finetune
from clbench.scenario import ScenarioSpec

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")


def _inputs(rows, n_in, n_out, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, n_in, generator=g, requires_grad=True)
    w = torch.randn(n_out, n_in, generator=g, requires_grad=True)
    b = torch.randn(n_out, generator=g, requires_grad=True)
    return x, w, b


def test_large_products_go_through_onednn_with_f_linear_values_and_gradients():
    x, w, b = _inputs(256, 784, 100)
    ours, reference = onednn.linear(x, w, b), F.linear(x, w, b)
    assert type(ours.grad_fn).__name__ == "_OneDNNLinearBackward"
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-4)
    upstream = torch.randn(256, 100, generator=torch.Generator().manual_seed(1))
    for a, r in zip(torch.autograd.grad(ours, (x, w, b), upstream), torch.autograd.grad(reference, (x, w, b), upstream)):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-3)
    without_bias = onednn.linear(x, w)
    torch.testing.assert_close(without_bias, F.linear(x, w), rtol=1e-5, atol=1e-4)


def test_small_products_and_per_sample_gradients_keep_f_linear():
    x, w, b = _inputs(32, 100, 10)                         # 32 000 multiply-adds, below SMALL
    assert type(onednn.linear(x, w, b).grad_fn).__name__ == "AddmmBackward0"
    x, w, b = _inputs(256, 784, 100)

    def loss(weight, row):
        return onednn.linear(row.unsqueeze(0), weight, b).square().sum()
    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(w.detach(), x.detach()[:4])
    expected = torch.stack([torch.autograd.grad(F.linear(r.unsqueeze(0), w, b).square().sum(), w)[0] for r in x[:4]])
    torch.testing.assert_close(per_sample, expected, rtol=1e-5, atol=1e-3)


def _learner(**fields):
    learner = Finetune(**{"device": "cpu", **fields})
    learner.setup(ScenarioSpec(n_tasks=2, n_outputs=10, input_shape=(1, 28, 28), protocol="class_il"), 0)
    return learner


def test_a_learner_with_the_onednn_kernel_takes_the_default_kernels_step():
    """Same initial weights, same batch: the same loss and gradients to float32 rounding, and the
    field is recorded only when set, so runs of the two kernels never share an id."""
    default, fast = _learner(), _learner(linear_kernel="onednn")
    fast.model_.load_state_dict(default.model_.state_dict())
    assert fast.model_.linear_function is onednn.linear and default.model_.linear_function is F.linear
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(3))
    losses = [F.cross_entropy(learner.model_(x), y) for learner in (default, fast)]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    for a, b in zip(*(torch.autograd.grad(loss, list(learner.model_.parameters()))
                      for loss, learner in zip(losses, (default, fast)))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert "linear_kernel" not in field_values(default) and field_values(fast)["linear_kernel"] == "onednn"


def test_the_onednn_kernel_refuses_what_it_cannot_run(monkeypatch):
    with pytest.raises(UsageError, match="linear_kernel must be one of default, onednn"):
        Finetune(linear_kernel="mkl")
    with pytest.raises(UsageError, match="MLP backbones"):
        _learner(linear_kernel="onednn", backbone="convnet")
    with pytest.raises(UsageError, match="runs on the CPU"):
        _learner(device="cuda", linear_kernel="onednn")
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    with pytest.raises(UsageError, match="built without oneDNN"):
        _learner(linear_kernel="onednn")
