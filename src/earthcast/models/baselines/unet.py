"""2-D UNet over time-stacked frames: the SEVIR nowcasting baseline.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel.

Architecture (Ronneberger et al. 2015, as used for nowcasting by Veillette et al. 2020, SEVIR):

1. the context frames are stacked as channels: ``(B, T_in, H, W, C_in)`` → ``(B, T_in·C_in, H, W)``;
2. the frame is zero-padded (centred) so that ``H`` and ``W`` are multiples of ``2**depth``;
3. encoder: ``depth`` levels of ``[Conv3×3 → Norm → ReLU] × 2`` followed by 2×2 max pooling, the
   width doubling from ``base_channels`` at every level;
4. bottleneck: the same double conv at ``bottleneck_mult`` × the deepest encoder width (the SEVIR
   UNet's wide centre block, which holds most of its parameters);
5. decoder: per level a 2×2 stride-2 transposed conv, concatenation with the encoder feature of
   the same scale (skip connection) and a double conv;
6. a 1×1 conv head gives ``T_out·C_out`` channels, cropped back to ``H × W`` and unstacked to
   ``(B, T_out, H, W, C_out)``. The output is linear (a regression of the normalised field).

All lead times are predicted at once, so nothing is fed back: there is no teacher forcing or
scheduled sampling (``accepts_targets = False``), and training equals evaluation. Every input
channel of every context frame is an input channel of the network, so ``C_in != C_out`` needs no
special rule.

Deviation: ``norm="group"`` is offered besides the paper's BatchNorm for small-batch training
(BatchNorm's batch statistics are noisy at batch sizes of 1–2 per GPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from earthcast.models.baselines._base import BaselineForecaster, ShapeConfig, crop_padding, pad_to_multiple

Norm = Literal["batch", "group"]


@dataclass(frozen=True)
class UNetConfig(ShapeConfig):
    """Hyper-parameters of :class:`UNet` (shape fields: see :class:`ShapeConfig`).

    Attributes:
        base_channels: width of the first encoder level; level ``i`` has ``base_channels · 2**i``.
        depth: number of pooling levels; ``H`` and ``W`` are padded to multiples of ``2**depth``.
        bottleneck_mult: bottleneck width = ``bottleneck_mult`` × the deepest encoder width
            (4 in the SEVIR UNet: 32 → 64 → 128 → 256 → centre 1024).
        norm: ``batch`` (the paper) or ``group`` normalisation after every 3×3 conv.
    """

    base_channels: int = 32
    depth: int = 4
    bottleneck_mult: int = 4
    norm: Norm = "batch"

    def validate(self) -> None:
        for name in ("base_channels", "depth", "bottleneck_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"invalid UNetConfig: {name}={getattr(self, name)} must be >= 1")
        if self.norm not in ("batch", "group"):
            raise ValueError(f"invalid UNetConfig: norm={self.norm!r}; use 'batch' or 'group'")


#: Named presets (config overrides); ``sevir`` / ``enso`` match the parameter counts of the tables.
PRESETS: dict[str, dict[str, Any]] = {
    # SEVIR UNet: 32-64-128-256 encoder, 1024-wide centre, 13 → 12 frames at 384×384: 16.6 M.
    "sevir": {},
    # ENSO table (12.1 M): the SEVIR UNet without its deepest level (24×48 takes three poolings
    # without padding): 32-64-128 encoder, 1024-wide centre.
    "enso": {"in_len": 12, "out_len": 14, "height": 24, "width": 48, "depth": 3, "bottleneck_mult": 8},
    # N-body 10 → 10 at 32×32 on CPU: three levels, 32-wide.
    "small": {"in_len": 10, "out_len": 10, "height": 32, "width": 32, "depth": 3, "bottleneck_mult": 2},
    "tiny": {
        "in_len": 4,
        "out_len": 3,
        "height": 16,
        "width": 16,
        "base_channels": 8,
        "depth": 2,
        "bottleneck_mult": 2,
    },
}


def _norm(kind: Norm, channels: int) -> nn.Module:
    # up to 8 groups that divide the width, so any base width works
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.GroupNorm(math.gcd(8, channels), channels)


def double_conv(in_channels: int, out_channels: int, norm: Norm) -> nn.Sequential:
    """``[Conv3×3 → Norm → ReLU] × 2``; the convs have no bias because the norm removes it."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        _norm(norm, out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        _norm(norm, out_channels),
        nn.ReLU(inplace=True),
    )


class UpBlock(nn.Module):
    """Transposed-conv upsampling ×2, skip concatenation and a double conv."""

    def __init__(self, in_channels: int, out_channels: int, norm: Norm) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = double_conv(2 * out_channels, out_channels, norm)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """``x (N, C_in, h, w)``, ``skip (N, C_out, 2h, 2w)`` → ``(N, C_out, 2h, 2w)``."""
        x = self.up(x)  # (N, C_out, 2h, 2w)
        return self.conv(torch.cat([skip, x], dim=1))  # (N, C_out, 2h, 2w)


class UNet(BaselineForecaster):
    """UNet forecaster (see the module docstring); build with ``UNet(config)`` or ``UNet(**overrides)``."""

    config_class: ClassVar[type[ShapeConfig]] = UNetConfig
    accepts_targets: ClassVar[bool] = False  # one-shot forecast: nothing to feed back
    config: UNetConfig

    def __init__(self, config: UNetConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        widths = [c.base_channels * 2**i for i in range(c.depth)]
        self.down = nn.ModuleList(
            double_conv(w_in, w_out, c.norm)
            for w_in, w_out in zip([c.in_len * c.channels_in, *widths[:-1]], widths)
        )
        self.bottleneck = double_conv(widths[-1], widths[-1] * c.bottleneck_mult, c.norm)
        self.up = nn.ModuleList(
            UpBlock(w_in, w_out, c.norm)
            for w_in, w_out in zip([widths[-1] * c.bottleneck_mult, *widths[:0:-1]], widths[::-1])
        )
        self.head = nn.Conv2d(widths[0], c.out_len * c.channels_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Forecast ``x (B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``."""
        self.check_input(x)
        z = rearrange(x, "b t h w c -> b (t c) h w")  # (B, T_in·C_in, H, W)
        z, pad = pad_to_multiple(z, 2**self.config.depth)  # (B, T_in·C_in, H', W')
        z = self._unet(z)  # (B, T_out·C_out, H', W')
        z = crop_padding(z, pad)  # (B, T_out·C_out, H, W)
        return rearrange(z, "b (t c) h w -> b t h w c", c=self.config.channels_out)  # (B, T_out, H, W, C_out)

    def _unet(self, z: Tensor) -> Tensor:
        """Encoder, bottleneck and decoder: ``(B, C_0, H', W')`` → ``(B, T_out·C_out, H', W')``."""
        skips = []
        for block in self.down:
            z = block(z)  # (B, w_i, H'/2**i, W'/2**i)
            skips.append(z)
            z = F.max_pool2d(z, 2)  # (B, w_i, H'/2**(i+1), W'/2**(i+1))
        z = self.bottleneck(z)  # (B, w_bottleneck, H'/2**depth, W'/2**depth)
        for block, skip in zip(self.up, reversed(skips)):
            z = block(z, skip)  # (B, w_i, H'/2**i, W'/2**i)
        return self.head(z)  # (B, T_out·C_out, H', W')
