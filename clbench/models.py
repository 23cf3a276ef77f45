"""Small backbones by name. The output layer is sized by the scenario's number of output units."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
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


BACKBONES = {"mlp": mlp}


def build_backbone(name: str, input_shape: Sequence[int], n_outputs: int,
                   widths: Sequence[int]) -> nn.Module:
    if name not in BACKBONES:
        from clbench.registry import unknown_name_error

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
