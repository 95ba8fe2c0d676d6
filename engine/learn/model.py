"""The coarse/fine depth network of Eigen, Puhrsch & Fergus (NIPS 2014).

A global *coarse* network sees the whole image through five convolution +
pooling layers and two fully connected layers; the last one's outputs *are*
the coarse depth map, so it can learn its own upsampling ("templates") to
1/4 of the input. A *fine* network then refines it locally: its first layer
(9x9 conv, stride 2, pool) sees the image, the coarse map joins as an extra
feature map, and two 5x5 convs produce the refined map. Depth is predicted in
log space; hidden layers are ReLU, the coarse output and the last fine layer
are linear, dropout follows the 4096-unit layer.

Sizes for the paper's NYU input (304x228, width x height) — asserted by the
tests — and for this project's 224x224 and 112x112:

===========  ==========  =========  ==========  ========  =========
input (WxH)  coarse 1    coarse 2-4  coarse 5   output    (= fine)
===========  ==========  =========  ==========  ========  =========
304x228      37x27       18x13       9x6        74x55     1/4
224x224      27x27       13x13       6x6        54x54     1/4
112x112      13x13       6x6         3x3        26x26     1/4
===========  ==========  =========  ==========  ========  =========

(The paper lists 8x6 at coarse 5; its exact padding is not given. Ours is
"same" padding for the 3x3 convs and floor pooling, which gives 9x6 there and
the paper's sizes everywhere else, the output included.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ConfigError

#: conv channels of coarse layers 1-5: the paper's, and torchvision's AlexNet (for --init-from)
COARSE_CHANNELS = {"paper": (96, 256, 384, 384, 256), "torchvision": (64, 192, 384, 256, 256)}


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network (saved in every checkpoint).

    Attributes:
        height, width: input size in pixels.
        coarse_channels: ``paper`` (96, 256, 384, 384, 256) or ``torchvision``
            (AlexNet's 64, 192, 384, 256, 256, to initialise from its weights).
        hidden: units of the coarse network's first fully connected layer.
        dropout: after that layer, in training.
    """

    height: int = 112
    width: int = 112
    coarse_channels: str = "paper"
    hidden: int = 4096
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.coarse_channels not in COARSE_CHANNELS:
            raise ConfigError(f"coarse channels must be one of {', '.join(COARSE_CHANNELS)}, got {self.coarse_channels!r}")
        if min(self.height, self.width) < 64:
            raise ConfigError(f"input size must be at least 64x64, got {self.width}x{self.height}")

    @property
    def output_size(self) -> tuple[int, int]:
        """``(height, width)`` of the depth maps (the fine network's first layer's size)."""
        return _fine_size(self.height), _fine_size(self.width)


def _conv_out(n: int, kernel: int, stride: int, padding: int = 0) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def _fine_size(n: int) -> int:
    return _conv_out(n, 9, 2) // 2  # 9x9 stride-2 conv, then 2x2 pool


def _coarse_sizes(n: int) -> list[int]:
    """Side length after coarse layers 1, 2 (= 3, 4) and 5."""
    c1 = _conv_out(n, 11, 4) // 2
    c2 = c1 // 2
    c5 = c2 // 2
    return [c1, c2, c5]


class CoarseNet(nn.Module):
    """Global coarse-scale network: ``(B, 3, H, W)`` → ``(B, 1, h, w)`` log depth.

    ``(h, w)`` is :attr:`ModelConfig.output_size` (1/4 of the input).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = COARSE_CHANNELS[config.coarse_channels]
        self.out_h, self.out_w = config.output_size
        self.conv1 = nn.Conv2d(3, c1, 11, stride=4)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.conv4 = nn.Conv2d(c3, c4, 3, padding=1)
        self.conv5 = nn.Conv2d(c4, c5, 3, padding=1)
        sh, sw = _coarse_sizes(config.height)[2], _coarse_sizes(config.width)[2]
        self.full6 = nn.Linear(c5 * sh * sw, config.hidden)
        self.full7 = nn.Linear(config.hidden, self.out_h * self.out_w)
        self.dropout = nn.Dropout(config.dropout)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of coarse layers 1, 2, 3, 4, 5 (after pooling where there is one)."""
        f1 = F.max_pool2d(F.relu(self.conv1(x)), 2)
        f2 = F.max_pool2d(F.relu(self.conv2(f1)), 2)
        f3 = F.relu(self.conv3(f2))
        f4 = F.relu(self.conv4(f3))
        f5 = F.max_pool2d(F.relu(self.conv5(f4)), 2)
        return [f1, f2, f3, f4, f5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f5 = self.features(x)[-1]
        h = self.dropout(F.relu(self.full6(f5.flatten(1))))  # (B, hidden)
        return self.full7(h).view(-1, 1, self.out_h, self.out_w)  # (B, 1, h, w), linear


class FineNet(nn.Module):
    """Local fine-scale network: image + coarse log depth → refined log depth ``(B, 1, h, w)``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 63, 9, stride=2)  # fine 1 (+ pool)
        self.conv2 = nn.Conv2d(64, 64, 5, padding=2)  # fine 3: after concatenating the coarse map (fine 2)
        self.conv3 = nn.Conv2d(64, 1, 5, padding=2)  # fine 4, linear

    def forward(self, x: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        f1 = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 63, h, w)
        f2 = torch.cat([f1, coarse.to(f1.dtype)], dim=1)  # (B, 64, h, w)
        return self.conv3(F.relu(self.conv2(f2)))


class EigenDepth(nn.Module):
    """Coarse + fine. ``stage="coarse"`` returns the coarse map; ``"fine"`` the refined one.

    Forward: ``(B, 3, H, W)`` float (normalised RGB) → ``(B, 1, h, w)`` log depth.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.coarse = CoarseNet(config)
        self.fine = FineNet(config)

    def forward(self, x: torch.Tensor, stage: str = "fine") -> torch.Tensor:
        coarse = self.coarse(x)
        if stage == "coarse":
            return coarse
        return self.fine(x, coarse)


#: the batch the paper's learning rates are for
PAPER_BATCH = 32
LR_SCALING = ("linear", "sqrt", "none")


def batch_lr_factor(batch: int, rule: str, reference: int = PAPER_BATCH) -> float:
    """How much to multiply learning rates tuned for ``reference`` samples per
    step when training with ``batch``.

    ``linear``: ``batch / reference`` (Goyal et al. 2017: k times the batch
    averages k times the samples per step, so take k times the step);
    ``sqrt``: ``sqrt(batch / reference)`` (keeps the update's noise scale, the
    usual choice for adaptive optimisers); ``none``: 1.

    Raises:
        ConfigError: an unknown rule or a batch below 1.
    """
    if rule not in LR_SCALING:
        raise ConfigError(f"--lr-scaling must be one of {', '.join(LR_SCALING)}, got {rule!r}")
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")
    ratio = batch / reference
    return ratio if rule == "linear" else math.sqrt(ratio) if rule == "sqrt" else 1.0


def param_groups(model: EigenDepth, stage: str, lr_scale: float = 1.0) -> list[dict]:
    """The paper's per-layer learning rates, for the trained stage.

    Coarse: convs 1-5 at 0.001, full layers 6-7 at 0.1. Fine: its convs at
    0.001 except the first conv after the concatenation at 0.01 (the paper's
    "fine layer 2", numbering layers with weights). ``lr_scale`` multiplies all.
    """
    if stage == "coarse":
        c = model.coarse
        convs = [p for m in (c.conv1, c.conv2, c.conv3, c.conv4, c.conv5) for p in m.parameters()]
        fulls = [p for m in (c.full6, c.full7) for p in m.parameters()]
        return [{"params": convs, "lr": 0.001 * lr_scale, "name": "coarse convs"},
                {"params": fulls, "lr": 0.1 * lr_scale, "name": "coarse fulls"}]
    f = model.fine
    return [{"params": list(f.conv1.parameters()) + list(f.conv3.parameters()), "lr": 0.001 * lr_scale,
             "name": "fine 1, 3"},
            {"params": list(f.conv2.parameters()), "lr": 0.01 * lr_scale, "name": "fine 2"}]


def load_alexnet_convs(model: EigenDepth, state: dict[str, torch.Tensor], source: str) -> int:
    """Copy conv1-5 weights from an AlexNet-style state dict (torchvision's key
    names ``features.{0,3,6,8,10}``, or this model's ``coarse.conv{1..5}``).

    Returns:
        The number of layers copied (5).

    Raises:
        ConfigError: keys missing or shapes differing from this model's.
    """
    names = {"features.0": "conv1", "features.3": "conv2", "features.6": "conv3", "features.8": "conv4",
             "features.10": "conv5"}
    if "coarse.conv1.weight" in state:
        names = {f"coarse.conv{i}": f"conv{i}" for i in range(1, 6)}
    copied = 0
    for prefix, ours in names.items():
        layer = getattr(model.coarse, ours)
        for kind in ("weight", "bias"):
            key = f"{prefix}.{kind}"
            if key not in state:
                raise ConfigError(f"{source}: no '{key}' (expected an AlexNet-style state dict)")
            want = getattr(layer, kind).shape
            if tuple(state[key].shape) != tuple(want):
                hint = " (try --coarse-channels torchvision)" if model.config.coarse_channels == "paper" else ""
                raise ConfigError(f"{source}: {key} is {tuple(state[key].shape)}, the model's {ours}.{kind} "
                                  f"is {tuple(want)}{hint}")
            with torch.no_grad():
                getattr(layer, kind).copy_(state[key])
        copied += 1
    return copied
