"""Reference architectures: ``nn.Sequential`` stacks of standard torch modules, plus two
networks with a real graph -- ResNet-20 (residual blocks with BatchNorm) and a small vision
transformer -- whose blocks are small modules defined here.

Every builder takes keyword arguments only, so a model is fully described by its registry
name plus a small dict of plain values (what a checkpoint stores). The MLPs take their hidden
widths (``hidden``) and LeNet-5 and the LeNet demo network their conv channels and dense widths
(``channels``, ``hidden``), so a network made narrower by structured pruning is still its
architecture (``build_model("lenet-300-100", hidden=[120, 40])``; ``widths_kwargs``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import NettrimError, require

MNIST_SHAPE = (1, 28, 28)
CIFAR_SHAPE = (3, 32, 32)


def _check_shape(in_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in in_shape)
    require(len(shape) == 3 and all(s > 0 for s in shape),
            f"in_shape must be (C, H, W) with positive sizes, got {tuple(in_shape)}")
    return shape  # type: ignore[return-value]


def _dense_stack(sizes: Sequence[int], dropout: float) -> list[nn.Module]:
    """Linear/ReLU(/Dropout) layers through ``sizes``; no activation after the last Linear."""
    require(0.0 <= dropout < 1.0, f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return layers


def mlp(hidden: Sequence[int], *, in_shape: Sequence[int] = MNIST_SHAPE,
        in_features: int | None = None, n_classes: int = 10, dropout: float = 0.0) -> nn.Sequential:
    """Flatten, then fully connected ReLU layers of widths ``hidden``, then ``n_classes`` logits.

    ``in_features`` overrides ``prod(in_shape)`` (e.g. for PCA-projected inputs).
    """
    n_in = int(in_features) if in_features is not None else math.prod(_check_shape(in_shape))
    require(n_in > 0 and n_classes > 0, "in_features and n_classes must be positive")
    return nn.Sequential(nn.Flatten(), *_dense_stack([n_in, *hidden, n_classes], dropout))


def _flat_size(features: nn.Sequential, in_shape: tuple[int, int, int]) -> int:
    """Number of features the convolutional part produces for one input of ``in_shape``."""
    with torch.no_grad():
        out = features.eval()(torch.zeros(1, *in_shape))
    features.train()
    require(out.numel() > 0, f"input shape {in_shape} is too small for this architecture")
    return out.numel()


def _with_head(features: list[nn.Module], in_shape: tuple[int, int, int],
               sizes: Sequence[int], dropout: float) -> nn.Sequential:
    conv = nn.Sequential(*features, nn.Flatten())
    try:
        n_flat = _flat_size(conv, in_shape)
    except RuntimeError as exc:
        raise NettrimError(f"input shape {in_shape} does not fit this architecture") from exc
    return nn.Sequential(*conv, *_dense_stack([n_flat, *sizes], dropout))


def _widths(value: Sequence[int], n: int, what: str) -> list[int]:
    widths = [int(v) for v in value] if isinstance(value, (list, tuple)) else None
    require(widths is not None and len(widths) == n and all(w >= 1 for w in widths)
            and all(w == v for w, v in zip(widths, value)),
            f"{what} must be a list of {n} positive integers, got {value!r}")
    return widths


def lenet5(*, in_shape: Sequence[int] = MNIST_SHAPE, n_classes: int = 10,
           channels: Sequence[int] = (6, 16), hidden: Sequence[int] = (120, 84)) -> nn.Sequential:
    """LeNet-5 (6 and 16 channels, 120-84 dense head) for 28x28 inputs; ``channels`` and
    ``hidden`` set other widths (a structurally pruned LeNet-5)."""
    c, _, _ = shape = _check_shape(in_shape)
    c1, c2 = _widths(channels, 2, "channels")
    feats = [nn.Conv2d(c, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
             nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2)]
    return _with_head(feats, shape, [*_widths(hidden, 2, "hidden"), n_classes], 0.0)


def lenet_demo(*, in_shape: Sequence[int] = MNIST_SHAPE, n_classes: int = 10,
               dropout: float = 0.5, channels: Sequence[int] = (32, 64),
               hidden: Sequence[int] = (512,)) -> nn.Sequential:
    """The TensorFlow-tutorial LeNet: 32 and 64 channels, a 512-unit dense layer, dropout
    (``channels``, ``hidden``: other widths)."""
    c, _, _ = shape = _check_shape(in_shape)
    c1, c2 = _widths(channels, 2, "channels")
    feats = [nn.Conv2d(c, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
             nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)]
    return _with_head(feats, shape, [*_widths(hidden, 1, "hidden"), n_classes], dropout)


def cifar_cnn(*, in_shape: Sequence[int] = CIFAR_SHAPE, n_classes: int = 10,
              width: int = 32, dropout: float = 0.0) -> nn.Sequential:
    """Three conv blocks (width, 2*width, 4*width channels), each Conv-BN-ReLU-Conv-ReLU-MaxPool,
    then a 256-unit dense layer."""
    c, _, _ = shape = _check_shape(in_shape)
    require(width > 0, f"width must be positive, got {width}")
    feats: list[nn.Module] = []
    for w in (width, 2 * width, 4 * width):
        feats += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
                  nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c = w
    return _with_head(feats, shape, [256, n_classes], dropout)


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU.

    The shortcut is the identity, or a 1x1 conv + BN when the stride or the width changes
    (the projection shortcut, "option B"). The ReLU acts on the sum, so ``conv2`` and the
    shortcut conv are linear-program layers for Net-Trim (see docs/any-model.md)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def resnet20(*, in_shape: Sequence[int] = MNIST_SHAPE, n_classes: int = 10, width: int = 16,
             blocks: int = 3) -> nn.Sequential:
    """ResNet-20 (He et al. 2016, CIFAR variant): a conv3x3-BN-ReLU stem, three stages of
    ``blocks`` BasicBlocks with ``width``, 2*``width``, 4*``width`` channels (stride 2 at the
    start of the second and third), global average pooling and a Linear classifier: 20 weight
    layers with the defaults (6 * blocks + 2) plus the two 1x1 projection shortcuts, 0.27 M
    parameters; 28x28 or 32x32 inputs."""
    c, _, _ = shape = _check_shape(in_shape)
    require(width > 0 and blocks > 0, f"width and blocks must be positive, got {width}, {blocks}")
    layers: list[nn.Module] = [nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    c = width
    for stage, w in enumerate((width, 2 * width, 4 * width)):
        for b in range(blocks):
            layers.append(BasicBlock(c, w, 2 if stage > 0 and b == 0 else 1))
            c = w
    features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    try:
        n_flat = _flat_size(features, shape)
    except RuntimeError as exc:
        raise NettrimError(f"input shape {shape} does not fit this architecture") from exc
    return nn.Sequential(*features, nn.Linear(n_flat, n_classes))


class PatchEmbedding(nn.Module):
    """Non-overlapping ``patch`` x ``patch`` patches projected by a Conv2d (kernel = stride =
    patch) to ``dim`` channels, as (batch, tokens, dim), plus a learned position embedding."""

    def __init__(self, in_channels: int, dim: int, patch: int, n_tokens: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.position = nn.Parameter(torch.empty(1, n_tokens, dim))
        nn.init.trunc_normal_(self.position, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2) + self.position


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate ``q``, ``k``, ``v`` and ``out`` nn.Linear
    modules (unlike nn.MultiheadAttention's packed in_proj_weight), so each is prunable."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        require(dim % heads == 0, f"dim ({dim}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, heads, T, d)
        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.out(y.transpose(1, 2).flatten(2))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + fc2(GELU(fc1(LN(x))))."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), SelfAttention(dim, heads)
        self.norm2, self.fc1, self.act, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.fc2(self.act(self.fc1(self.norm2(x)))))


class TokenMean(nn.Module):
    """Average over the token axis: (batch, tokens, dim) -> (batch, dim)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def vit_tiny(*, in_shape: Sequence[int] = MNIST_SHAPE, n_classes: int = 10, dim: int = 64,
             depth: int = 4, heads: int = 4, mlp_ratio: int = 2, patch: int | None = None,
             dropout: float = 0.0) -> nn.Sequential:
    """A small vision transformer: patch embedding (a Conv2d; default patch = side / 4, i.e. 7
    for 28x28 and 8 for 32x32: 16 tokens), ``depth`` pre-norm blocks of ``heads``-head
    attention (separate q/k/v/out Linear layers) and a GELU MLP of ``mlp_ratio * dim`` units,
    a final LayerNorm, mean pooling over the tokens and a Linear classifier."""
    c, h, w = _check_shape(in_shape)
    patch = max(h // 4, 1) if patch is None else int(patch)
    require(patch > 0 and h % patch == 0 and w % patch == 0,
            f"patch ({patch}) must divide the image sides {h}x{w}")
    require(dim > 0 and depth > 0 and heads > 0 and mlp_ratio > 0,
            "dim, depth, heads and mlp_ratio must be positive")
    require(0.0 <= dropout < 1.0, f"dropout must be in [0, 1), got {dropout}")
    n_tokens = (h // patch) * (w // patch)
    return nn.Sequential(PatchEmbedding(c, dim, patch, n_tokens),
                         *[TransformerBlock(dim, heads, mlp_ratio * dim, dropout) for _ in range(depth)],
                         nn.LayerNorm(dim), TokenMean(), nn.Linear(dim, n_classes))


def _mlp_builder(*default: int) -> Callable[..., nn.Module]:
    def build(*, hidden: Sequence[int] = default, **kw) -> nn.Module:
        return mlp(_widths(hidden, len(default), "hidden"), **kw)
    build.__doc__ = (f"MLP with hidden widths {list(default)} (``hidden``: other widths, as many); "
                     f"keywords as :func:`mlp`.")
    return build


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "lenet-300-100": _mlp_builder(300, 100),
    "mlp-100-100": _mlp_builder(100, 100),
    "mlp-60-60": _mlp_builder(60, 60),
    "mlp-300-300-300": _mlp_builder(300, 300, 300),
    "mlp-deep": _mlp_builder(256, 256, 256, 256, 256),
    "lenet5": lenet5,
    "lenet-demo": lenet_demo,
    "cifar-cnn": cifar_cnn,
    "resnet20": resnet20,
    "vit-tiny": vit_tiny,
}


WIDTH_KEYWORDS = ("channels", "hidden")


def widths_kwargs(arch: str, arch_kwargs: dict | None, model: nn.Module) -> dict:
    """``arch_kwargs`` with the widths of ``model`` (a narrower network of architecture
    ``arch``, e.g. after structured pruning): ``channels`` from its Conv2d layers and ``hidden``
    from its Linear layers but the last, for the builders that take them; checked by building
    it (on the meta device) and comparing the state-dict shapes. One-line error when ``arch``
    cannot express those widths."""
    import inspect

    require(arch in ARCHITECTURES, f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    params = inspect.signature(ARCHITECTURES[arch]).parameters
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    kw = dict(arch_kwargs or {})
    if "channels" in params and convs:
        kw["channels"] = convs
    if "hidden" in params and linears:
        kw["hidden"] = linears[:-1]
    with torch.device("meta"):
        try:
            probe = build_model(arch, **kw)
        except NettrimError:
            probe = None
    want = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    require(probe is not None and [(k, tuple(v.shape)) for k, v in probe.state_dict().items()] == want,
            f"architecture {arch!r} cannot be rebuilt with this model's widths (conv channels "
            f"{convs}, dense widths {linears}); it takes no {' or '.join(WIDTH_KEYWORDS)} for them")
    return {k: v for k, v in kw.items() if k not in WIDTH_KEYWORDS or v != list(params[k].default)}


def build_model(name: str, **kw) -> nn.Module:
    """Build the registered architecture ``name`` with keyword arguments ``kw``."""
    require(name in ARCHITECTURES,
            f"unknown architecture {name!r}; choose one of: {', '.join(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[name](**kw)
    except TypeError as exc:
        raise NettrimError(f"bad arguments for architecture {name!r}: {exc}") from exc
