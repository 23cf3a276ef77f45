"""Small backbones by name. The output layer is sized by the scenario's number of output units.

| name | network | used by |
| --- | --- | --- |
| `mlp` | ReLU MLP with hidden layers of `widths` (default 100, 100) | any |
| `mlp400` | ReLU MLP, 2 hidden layers of 400 | Split MNIST (van de Ven et al. 2022; Zenke et al. 2017) |
| `mlp1000` | ReLU MLP, 2 hidden layers of 1000 | Permuted MNIST (van de Ven et al. 2022) |
| `convnet` | 2 conv blocks (32, 64 channels, 3x3, max-pool) and a hidden layer of 256 | small images |
| `reduced-resnet18` | ResNet-18 with 20 base channels instead of 64 | GEM (Lopez-Paz & Ranzato 2017), ER (Chaudhry et al. 2019) |
| `token-mlp` | Hope's network with its memory removed: tokens, 2 blocks of 4 residual MLP levels, mean, linear | the architecture control of `hope` |

`widths` is read by `mlp` only; the named networks have fixed sizes.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clbench.errors import UsageError


def mlp(input_shape: Sequence[int], n_outputs: int, widths: Sequence[int] = (100, 100)) -> nn.Module:
    """A fully connected ReLU network: flatten, hidden layers of `widths`, linear output."""
    layers: list[nn.Module] = [nn.Flatten()]
    n_in = math.prod(input_shape)
    for width in widths:
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    layers.append(nn.Linear(n_in, n_outputs))
    return nn.Sequential(*layers)


def mlp400(input_shape: Sequence[int], n_outputs: int, widths: Sequence[int] = ()) -> nn.Module:
    """Two hidden ReLU layers of 400 units: the Split MNIST network of van de Ven, Tuytelaars &
    Tolias 2022 and of Zenke, Poole & Ganguli 2017."""
    return mlp(input_shape, n_outputs, (400, 400))


def mlp1000(input_shape: Sequence[int], n_outputs: int, widths: Sequence[int] = ()) -> nn.Module:
    """Two hidden ReLU layers of 1000 units: the Permuted MNIST network of van de Ven, Tuytelaars &
    Tolias 2022."""
    return mlp(input_shape, n_outputs, (1000, 1000))


def _check_image_shape(name: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise UsageError(f"backbone {name!r} needs image inputs (C, H, W), got input shape {tuple(input_shape)}")
    c, h, w = (int(v) for v in input_shape)
    return c, h, w


def convnet(input_shape: Sequence[int], n_outputs: int, widths: Sequence[int] = ()) -> nn.Module:
    """A small conv net for 8x8 to 32x32 images: [conv 3x3, ReLU, 2x2 max-pool] with 32 then 64
    channels, a hidden layer of 256 ReLU units, a linear output. No batch norm, so evaluation
    never depends on running statistics."""
    c, h, w = _check_image_shape("convnet", input_shape)
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (h // 4) * (w // 4), 256), nn.ReLU(),
        nn.Linear(256, n_outputs),
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv + batch-norm layers with an identity (or 1x1 conv) shortcut: He et al. 2016."""

    def __init__(self, n_in: int, n_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(n_out)
        self.conv2 = nn.Conv2d(n_out, n_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or n_in != n_out:
            self.shortcut = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride=stride, bias=False), nn.BatchNorm2d(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ReducedResNet18(nn.Module):
    """ResNet-18 with `nf` base channels (20 in the GEM and ER papers, 64 in the original).

    A 3x3 stem (stride 1, no max-pool, as for 32x32 images), four stages of two basic blocks with
    nf, 2nf, 4nf, 8nf channels (strides 1, 2, 2, 2), global average pooling and a linear output.
    On 32x32 inputs the last feature map is 4x4, so global pooling equals the 4x4 average pooling
    of Lopez-Paz & Ranzato 2017; other sizes work too.
    """

    def __init__(self, in_channels: int, n_outputs: int, nf: int = 20) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, nf, 3, stride=1, padding=1, bias=False),
                                  nn.BatchNorm2d(nf), nn.ReLU())
        stages, n_in = [], nf
        for multiple, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            n_out = nf * multiple
            stages += [BasicBlock(n_in, n_out, stride), BasicBlock(n_out, n_out, 1)]
            n_in = n_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(n_in, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(features, 1).flatten(1))


def reduced_resnet18(input_shape: Sequence[int], n_outputs: int, widths: Sequence[int] = ()) -> nn.Module:
    """The reduced ResNet-18 (nf = 20) of GEM (Lopez-Paz & Ranzato 2017) and ER (Chaudhry et al. 2019)."""
    c, _, _ = _check_image_shape("reduced-resnet18", input_shape)
    return ReducedResNet18(c, n_outputs, nf=20)


def token_mlp(input_shape: Sequence[int], n_outputs: int, widths: Sequence[int] = ()) -> nn.Module:
    """The `hope` learner's network at its default sizes with the self-modifying memory removed
    (`Hope(selfmod=False)`): the same encoder to 16 tokens of width 64, the same two blocks of
    four residual MLP levels applied per token, mean pooling and a linear head. Trained by an
    SGDLearner, every level steps every step: the control that separates Hope's mechanisms from
    its patch-token network."""
    from clbench.learners.hope import Hope
    from clbench.learners.hope_modules import HopeClassifier

    try:
        return HopeClassifier(Hope(selfmod=False), tuple(input_shape), n_outputs)
    except ValueError as err:
        raise UsageError(f"backbone 'token-mlp': {err}") from None


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "mlp400": mlp400,
    "mlp1000": mlp1000,
    "convnet": convnet,
    "reduced-resnet18": reduced_resnet18,
    "token-mlp": token_mlp,
}


def build_backbone(name: str, input_shape: Sequence[int], n_outputs: int,
                   widths: Sequence[int]) -> nn.Module:
    """The backbone `name` for inputs of `input_shape` with `n_outputs` output units."""
    if name not in BACKBONES:
        from clbench.errors import unknown_name_error

        raise unknown_name_error("backbone", name, BACKBONES)
    return BACKBONES[name](input_shape, n_outputs, widths)


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when there is a GPU, else the CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r} (valid: auto, cpu, cuda, cuda:N, mps)") from None
