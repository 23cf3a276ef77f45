"""Small backbones by name. The output layer is sized by the scenario's number of output units.

| name | network | used by |
| --- | --- | --- |
| `mlp` | ReLU MLP with hidden layers of `widths` (default 100, 100) | any |
| `mlp400` | ReLU MLP, 2 hidden layers of 400 | Split MNIST (van de Ven et al. 2022; Zenke et al. 2017) |
| `mlp1000` | ReLU MLP, 2 hidden layers of 1000 | Permuted MNIST (van de Ven et al. 2022) |
| `convnet` | 2 conv blocks (32, 64 channels, 3x3, max-pool) and a hidden layer of 256 | small images |
| `reduced-resnet18` | ResNet-18 with 20 base channels instead of 64 | GEM (Lopez-Paz & Ranzato 2017), ER (Chaudhry et al. 2019) |
| `transformer` | decoder-only byte language model: pre-norm, rotary positions, SwiGLU MLP, tied embeddings | text streams |
| `token-mlp` | Hope's network with its memory removed: tokens, 2 blocks of 4 residual MLP levels, mean, linear | the architecture control of `hope` |

`widths` is read by `mlp` (hidden layer widths) and by `transformer`, as (width, depth, heads);
the named networks have fixed sizes.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clbench.errors import UsageError


class MLP(nn.Sequential):
    """`nn.Sequential(Flatten, Linear, ReLU, ..., Linear)` whose forward applies each layer's function
    itself rather than calling the layer: on clbench's small MLPs a module call costs about as much
    as the layer's arithmetic (3-6% of a training step, benchmarks/peers.py). The same layers, names,
    state dict and results bit for bit; where a hook is registered on any layer, or globally, the
    layers are called as nn.Sequential calls them, so the hooks run.

    `linear_function` computes the linear layers: `F.linear`, or `clbench.onednn.linear` where a
    learner asks for `linear_kernel = "onednn"` (not where hooks make the layers run as modules,
    as in iCaRL's feature extraction: there nn.Linear computes them)."""

    linear_function = staticmethod(F.linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = self._modules.values()
        if _hooks_registered(layers):
            return super().forward(x)
        linear = self.linear_function
        for layer in layers:
            kind = type(layer)
            if kind is nn.Linear:
                x = linear(x, layer.weight, layer.bias)
            elif kind is nn.ReLU:
                x = F.relu(x, inplace=layer.inplace)
            elif kind is nn.Flatten:
                x = x.flatten(layer.start_dim, layer.end_dim)
            else:
                x = layer(x)
        return x


_GLOBAL_HOOKS = ("_global_forward_pre_hooks", "_global_forward_hooks", "_global_backward_pre_hooks",
                 "_global_backward_hooks")


def _hooks_registered(layers) -> bool:
    """Whether calling `layers` as modules would run a hook (theirs or a global one)."""
    from torch.nn.modules import module

    return (any(getattr(module, name, None) for name in _GLOBAL_HOOKS)
            or any(m._forward_pre_hooks or m._forward_hooks or m._backward_pre_hooks or m._backward_hooks
                   for m in layers))


def mlp(input_shape: Sequence[int], n_outputs: int, widths: Sequence[int] = (100, 100)) -> nn.Module:
    """A fully connected ReLU network: flatten, hidden layers of `widths`, linear output."""
    layers: list[nn.Module] = [nn.Flatten()]
    n_in = math.prod(input_shape)
    for width in widths:
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    layers.append(nn.Linear(n_in, n_outputs))
    return MLP(*layers)


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


def rotary_tables(context: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, (context, head_dim / 2): position t, pair i turns by t * base^(-2i/d)."""
    inverse = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(context, dtype=torch.float32), inverse)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021, RoFormer) of x (..., T, head_dim): each pair
    (x_i, x_{i + d/2}) is turned by its position's angle, so q·k depends on relative position only."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then x + SwiGLU(norm(x)) (Shazeer 2020)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        hidden = 8 * ((8 * width // 3 + 7) // 8)  # 2/3 of 4 * width (SwiGLU's three matrices cost what two of 4w do)
        self.attention_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.attention_out = nn.Linear(width, width, bias=False)
        self.mlp_norm = nn.LayerNorm(width)
        self.gate_up = nn.Linear(width, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(rotate(q, cos, sin), rotate(k, cos, sin), v, is_causal=True)
        x = x + self.attention_out(attended.transpose(1, 2).reshape(batch, length, width))
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class TransformerLM(nn.Module):
    """A decoder-only Transformer language model: token embedding, `depth` pre-norm blocks with
    causal self-attention (rotary positions) and SwiGLU MLPs, a final norm, and an output layer tied
    to the embedding (Press & Wolf 2017). Input (B, T) token ids; output (B, T, vocabulary) logits,
    position t predicting token t + 1 from tokens 0..t only. Initialised as GPT-2 (normal, std 0.02;
    residual outputs scaled by 1/sqrt(2 depth)), so an untrained model is close to uniform: ~8 bits per byte.
    """

    def __init__(self, vocabulary: int, context: int, width: int, depth: int, heads: int) -> None:
        super().__init__()
        if width % heads or (width // heads) % 2:
            raise UsageError(f"transformer width {width} must split into {heads} heads of an even size")
        self.embedding = nn.Embedding(vocabulary, width)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        cos, sin = rotary_tables(context, width // heads)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for name, parameter in self.named_parameters():
            if parameter.dim() == 2:
                std = 0.02 / math.sqrt(2 * depth) if name.endswith(("attention_out.weight", "down.weight")) else 0.02
                nn.init.normal_(parameter, std=std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        if length > len(self.cos):
            cos, sin = (t.to(tokens.device) for t in rotary_tables(length, self.cos.shape[1] * 2))
        else:
            cos, sin = self.cos[:length], self.sin[:length]
        x = self.embedding(tokens)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.norm(x) @ self.embedding.weight.t()


TRANSFORMER_WIDTHS = (192, 4, 4)  # the default small byte model: width 192, 4 blocks, 4 heads (1.8 M parameters)


def transformer(input_shape: Sequence[int], n_outputs: int, widths: Sequence[int] = TRANSFORMER_WIDTHS) -> nn.Module:
    """A byte-level `TransformerLM` for token windows of shape (context,); `widths` = (width, depth, heads)."""
    if len(input_shape) != 1:
        raise UsageError(f"backbone 'transformer' needs token sequences (context,), got input shape {tuple(input_shape)}")
    if len(widths) != 3 or min(widths) < 1:
        raise UsageError(f"backbone 'transformer' reads widths as (width, depth, heads), e.g. "
                         f"widths={','.join(map(str, TRANSFORMER_WIDTHS))}; got {tuple(widths)}")
    width, depth, heads = (int(v) for v in widths)
    return TransformerLM(n_outputs, int(input_shape[0]), width, depth, heads)


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


# The backbones that take token windows and give next-token logits are listed, without torch, in
# clbench.registry.SEQUENCE_BACKBONES.
BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "mlp400": mlp400,
    "mlp1000": mlp1000,
    "convnet": convnet,
    "reduced-resnet18": reduced_resnet18,
    "transformer": transformer,
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
