"""Backbones by name, and training by a number of iterations per task."""
from __future__ import annotations

import math

import pytest
import torch

from clbench.errors import UsageError
from clbench.learners.finetune import Finetune
from clbench.learners.joint import Joint
from clbench.learners.replay import Replay
from clbench.models import BACKBONES, ReducedResNet18, build_backbone
from clbench.registry import SEQUENCE_BACKBONES
from clbench.runner import seed_everything

from conftest import small


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(set(BACKBONES) - set(SEQUENCE_BACKBONES)))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
def test_every_backbone_gives_logits_for_every_image_size(name, shape):
    model = build_backbone(name, shape, 7, (100, 100))
    model.eval()
    out = model(torch.rand(4, *shape))
    assert out.shape == (4, 7) and torch.isfinite(out).all()


def test_literature_mlps_have_their_published_sizes():
    # 784-400-400-10 and 784-1000-1000-10, biases included
    assert n_parameters(build_backbone("mlp400", (1, 28, 28), 10, (5,))) == 784 * 400 + 400 + 400 * 400 + 400 + 400 * 10 + 10
    assert n_parameters(build_backbone("mlp1000", (1, 28, 28), 10, ())) == (
        784 * 1000 + 1000 + 1000 * 1000 + 1000 + 1000 * 10 + 10)
    widths = [m.out_features for m in build_backbone("mlp", (1, 8, 8), 3, (20, 30)) if isinstance(m, torch.nn.Linear)]
    assert widths == [20, 30, 3]


def test_reduced_resnet18_has_twenty_base_channels_and_eight_blocks():
    model = build_backbone("reduced-resnet18", (3, 32, 32), 100, ())
    assert isinstance(model, ReducedResNet18) and model.stem[0].out_channels == 20
    assert [block.conv2.out_channels for block in model.stages] == [20, 20, 40, 40, 80, 80, 160, 160]
    assert model.head.in_features == 160
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 17  # the stem and two per block: ResNet-18's 17 conv layers plus its linear layer
    assert 1.0e6 < n_parameters(model) < 1.2e6  # about 1.1 M, as reported for GEM's reduced ResNet-18


def test_conv_backbones_need_images_and_unknown_names_are_errors():
    with pytest.raises(UsageError, match="needs image inputs"):
        build_backbone("convnet", (64,), 10, ())
    with pytest.raises(UsageError, match="did you mean 'mlp400'"):
        build_backbone("mlp40", (1, 28, 28), 10, ())


class CountingFinetune(Finetune):
    def loss(self, x, y, mask):
        self.steps_ = getattr(self, "steps_", 0) + 1
        return super().loss(x, y, mask)


@pytest.mark.parametrize("iterations", [1, 7, 13])
def test_iterations_make_exactly_that_many_steps_per_task(iterations):
    sc = small()  # about 290 training images per task: 5 batches of 64
    learner = CountingFinetune(iterations=iterations, batch_size=64, epochs=50, device="cpu")
    seed_everything(0)
    learner.setup(sc.spec, 0)
    for t, task in enumerate(sc[:3], start=1):
        learner.fit_task(task.for_training())
        assert learner.steps_ == t * iterations


def test_epochs_are_used_when_iterations_is_zero():
    sc = small()
    learner = CountingFinetune(epochs=2, batch_size=64, device="cpu")
    seed_everything(0)
    learner.setup(sc.spec, 0)
    learner.fit_task(sc[0].for_training())
    assert learner.steps_ == 2 * math.ceil(len(sc[0].y_train) / 64)


@pytest.mark.parametrize("cls", [Replay, Joint])
def test_iterations_work_for_learners_that_draw_their_own_batches(cls):
    from clbench.runner import run

    result = run(small(n_tasks=5)[:2], cls(iterations=3, batch_size=32, device="cpu"), seed=0)
    assert result.matrix.shape == (3, 2)
    with pytest.raises(UsageError, match="iterations must be >= 0"):
        cls(iterations=-1)


def test_mlp_forward_is_the_sequential_forward_and_runs_hooks_when_there_are_any():
    """`MLP` applies its layers' functions without calling them, except where a hook is registered:
    the same logits and gradients bit for bit, and a forward hook on the head (iCaRL's features) fires."""
    torch.manual_seed(0)
    model = build_backbone("mlp", (1, 8, 8), 10, (32, 16))
    x = torch.randn(7, 1, 8, 8)
    fast = model(x)
    plain = torch.nn.Sequential.forward(model, x)
    assert torch.equal(fast, plain)
    grads = [torch.autograd.grad(out.square().sum(), list(model.parameters())) for out in (fast, plain)]
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    seen = []
    handle = model[-1].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
    assert torch.equal(model(x), plain) and seen == [(7, 16)]
    handle.remove()
    model(x)
    assert seen == [(7, 16)]     # removed: the fast path again
    model.append(torch.nn.Softmax(dim=1))   # any other layer is called as a module
    assert torch.allclose(model(x).sum(1), torch.ones(7))
