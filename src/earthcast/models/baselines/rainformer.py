"""Rainformer (Bai et al., IEEE GRSL 2022): a Swin-style U-Net that balances global and local features.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel; inside attention ``n`` windows,
``m`` heads, ``i``/``j`` tokens of a window, ``d`` head features.

Contract: ``(B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)`` in one shot. As in the official code
the frames are stacked as channels (a 2-D model over ``T_in·C_in`` input and ``T_out·C_out`` output
channels), so the model is not autoregressive: there is nothing to feed back, ``accepts_targets`` is
``False`` and no scheduled sampling applies (the paper trains it as a plain one-shot regressor).
Every input channel is read; ``C_in != C_out`` needs no special rule.

Architecture (the paper, and the official ``Rainformer.py`` / ``SwinTransformer.py`` for details):

1. the frames are zero-padded so every patch merging divides evenly (cropped back at the end);
2. encoder stages: patch merging (space-to-depth + linear) then Rainformer blocks; widths
   ``hidden_dim · 2^i``;
3. a Rainformer block runs two branches on the same input and fuses them:

   * *global features extraction unit*: a window-MSA block then a shifted-window-MSA block (Swin),
     each followed by channel attention (CA), pre-norm residuals and an MLP;
   * *local features branch*: two 3×3 conv-BN-ReLU layers then CBAM channel + spatial attention;
   * *gate fusion unit* (GFU): ``Z, R = split(σ(Conv(cat(g, l))))`` and
     ``out = Z ⊙ Conv(g) + R ⊙ Conv(l)``, each conv followed by a LayerNorm over ``(C, H, W)``
     (so the GFU carries per-pixel affine parameters: the model is tied to its frame size). The
     official code builds the two output convs but skips them (``Z ⊙ g + R ⊙ l``); we follow the
     paper's equations, so that every parameter is used;
4. decoder stages: patch expanding (depth-to-space + linear), concatenation with the encoder skip,
   Rainformer blocks at twice the width; a last expanding stage back to full resolution whose width
   is the number of output channels ``T_out·C_out`` (the official final stage; at least 4, then
   followed by a linear head, so that one-channel forecasts keep a working attention block).

Windows adapt to any frame size: per axis the window is ``min(window_size, extent)`` and the shift
is half a window only where the axis holds more than one window (Swin's rule); feature maps are
zero-padded to a multiple of the window and padded tokens are masked out of every real query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from earthcast.models.baselines._base import BaselineForecaster, ShapeConfig

Size2 = tuple[int, int]
MIN_FINAL_WIDTH = 4


@dataclass(frozen=True)
class RainformerConfig(ShapeConfig):
    """Hyper-parameters of :class:`Rainformer` (defaults: the official model, sized for SEVIR).

    Attributes:
        hidden_dim: width of the first encoder stage; stage ``i`` has ``hidden_dim · 2^i`` channels.
        downscaling_factors: patch-merging factor of each encoder stage (their number = stages).
        heads: attention heads of each stage (the decoder stage at level ``i`` uses ``heads[i+1]``,
            the final stage ``heads[0]``, as in the official code).
        head_dim: features per head.
        window_size: attention window edge; shrunk per axis to the feature-map extent.
        depth: Rainformer blocks (W-MSA + SW-MSA global branch, conv local branch, GFU) per stage;
            the paper's ``layers=2`` is one block.
        mlp_ratio: MLP width over the block width in the encoder; the decoder blocks, working on
            the concatenation of two feature maps, use half of that (official ``mlp_dim``).
        ca_reduction: bottleneck reduction of the channel-attention MLPs (CBAM).
    """

    hidden_dim: int = 96
    downscaling_factors: tuple[int, ...] = (4, 2, 2, 2)
    heads: tuple[int, ...] = (3, 6, 12, 24)
    head_dim: int = 32
    window_size: int = 12
    depth: int = 1
    mlp_ratio: int = 4
    ca_reduction: int = 16

    def validate(self) -> None:
        factors = self.downscaling_factors
        if len(self.heads) != len(factors):
            raise ValueError(
                f"invalid RainformerConfig: heads={self.heads} needs one entry per stage "
                f"(downscaling_factors={factors})"
            )
        for name in ("hidden_dim", "head_dim", "window_size", "depth", "mlp_ratio", "ca_reduction"):
            if getattr(self, name) < 1:
                raise ValueError(f"invalid RainformerConfig: {name}={getattr(self, name)} must be >= 1")
        if min(factors) < 1 or min(self.heads) < 1:
            raise ValueError("invalid RainformerConfig: downscaling_factors and heads must be >= 1")
        # Patch expanding splits channels into f×f sub-pixels: every expanded width must divide.
        for width, factor in zip(self.expanded_widths(), factors, strict=True):
            if width % factor**2:
                raise ValueError(
                    f"invalid RainformerConfig: a decoder stage expands {width} channels by "
                    f"{factor}×{factor}; choose hidden_dim so that hidden_dim·2^i is divisible by "
                    f"downscaling_factors[i]² (got hidden_dim={self.hidden_dim}, factors={factors})"
                )

    def widths(self) -> list[int]:
        """Encoder stage widths ``hidden_dim · 2^i``."""
        return [self.hidden_dim * 2**i for i in range(len(self.downscaling_factors))]

    def expanded_widths(self) -> list[int]:
        """Channels entering the patch expanding that undoes encoder stage ``i``'s merging."""
        widths = self.widths()
        # The deepest stage's output expands as is; shallower levels expand the decoder's
        # output, which is twice as wide (upsampled features concatenated with the skip).
        return [w if i == len(widths) - 1 else 2 * w for i, w in enumerate(widths)]

    def padded_size(self) -> Size2:
        """Frame size after padding to a multiple of the total downscaling."""
        total = math.prod(self.downscaling_factors)
        return -(-self.height // total) * total, -(-self.width // total) * total


# ---------------------------------------------------------------------------------------------
# Window attention


def window_and_shift(resolution: Size2, window_size: int) -> tuple[Size2, Size2]:
    """Per-axis window (``≤`` the extent) and half-window shift (0 where one window covers the axis)."""
    window = tuple(min(window_size, r) for r in resolution)
    shift = tuple(w // 2 if r > w else 0 for r, w in zip(resolution, window, strict=True))
    return window, shift  # type: ignore[return-value]


def window_labels(size: Size2, padded: Size2, window: Size2, shift: Size2, device: torch.device) -> Tensor:
    """``(n, i)`` id of the window each token belongs to in the original (un-rolled) frame; -1 = pad.

    The shifted windows are the regular tiling offset by ``shift``, *without* wrap-around: after
    the cyclic roll a window may hold pieces of up to four such tiles, and tokens only attend
    within their own piece (Swin's mask), and never to padding.
    """
    (h, w), (hp, wp), (wh, ww), (sh, sw) = size, padded, window, shift
    rows = (torch.arange(hp, device=device) + wh - sh) // wh
    cols = (torch.arange(wp, device=device) + ww - sw) // ww
    labels = rows[:, None] * (wp // ww + 2) + cols[None, :]  # (Hp, Wp)
    labels[h:, :] = -1
    labels[:, w:] = -1
    labels = torch.roll(labels, shifts=(-sh, -sw), dims=(0, 1))
    return rearrange(labels, "(nh wh) (nw ww) -> (nh nw) (wh ww)", wh=wh, ww=ww)  # (n, i)


def relative_index(window: Size2, device: torch.device) -> tuple[Tensor, Tensor]:
    """Row/column indices ``(i, j)`` into the ``(2wh-1, 2ww-1)`` relative-position table."""
    wh, ww = window
    ys, xs = torch.meshgrid(torch.arange(wh, device=device), torch.arange(ww, device=device), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return ys[:, None] - ys[None, :] + wh - 1, xs[:, None] - xs[None, :] + ww - 1


class WindowMSA(nn.Module):
    """Multi-head self-attention inside (shifted) windows with a learned relative-position bias.

    As in the official code the bias table is one ``(2wh-1, 2ww-1)`` map shared by all heads.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, window: Size2, shift: Size2) -> None:
        super().__init__()
        self.heads, self.window, self.shift = heads, window, shift
        self.to_qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, dim)
        self.pos_bias = nn.Parameter(torch.empty(2 * window[0] - 1, 2 * window[1] - 1))
        nn.init.trunc_normal_(self.pos_bias, std=0.02)

    def attn_mask(self, size: Size2, padded: Size2, x: Tensor) -> Tensor:
        """Additive mask: ``(i, j)`` bias, or ``(n, 1, i, j)`` with ``-inf`` outside a token's piece."""
        rows, cols = relative_index(self.window, x.device)
        bias = self.pos_bias[rows, cols].to(x.dtype)  # (i, j)
        if size == padded and self.shift == (0, 0):
            return bias
        labels = window_labels(size, padded, self.window, self.shift, x.device)  # (n, i)
        allowed = labels[:, :, None] == labels[:, None, :]  # (n, i, j)
        return bias.masked_fill(~allowed, float("-inf"))[:, None]  # (n, 1, i, j)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, H, W, C)`` → ``(B, H, W, C)``."""
        (wh, ww), (sh, sw) = self.window, self.shift
        size = x.shape[1], x.shape[2]
        padded = (-(-size[0] // wh) * wh, -(-size[1] // ww) * ww)
        x = F.pad(x, (0, 0, 0, padded[1] - size[1], 0, padded[0] - size[0]))  # (B, Hp, Wp, C)
        x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
        q, k, v = rearrange(
            self.to_qkv(x),
            "b (nh wh) (nw ww) (three m d) -> three b (nh nw) m (wh ww) d",
            wh=wh,
            ww=ww,
            three=3,
            m=self.heads,
        )  # each (B, n, heads, i, d)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.attn_mask(size, padded, x))
        out = rearrange(
            out, "b (nh nw) m (wh ww) d -> b (nh wh) (nw ww) (m d)", nh=padded[0] // wh, wh=wh, ww=ww
        )  # (B, Hp, Wp, heads·d)
        out = torch.roll(self.to_out(out), shifts=(sh, sw), dims=(1, 2))
        return out[:, : size[0], : size[1]]  # (B, H, W, C)


class ChannelAttention(nn.Module):
    """CBAM channel attention: ``x · σ(MLP(avgpool x) + MLP(maxpool x))`` on ``(B, H, W, C)``."""

    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        # At least 8 hidden units: narrow layers (the final stage is T_out·C_out wide) would
        # otherwise have so few ReLUs that all of them can be inactive for a whole batch.
        hidden = max(dim // reduction, 8)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, H, W, C)`` → ``(B, H, W, C)``."""
        avg, peak = x.mean(dim=(1, 2)), x.amax(dim=(1, 2))  # (B, C) each
        gate = torch.sigmoid(self.mlp(avg) + self.mlp(peak))  # (B, C)
        return x * gate[:, None, None, :]


class SwinBlock(nn.Module):
    """Pre-norm residual (shifted-)window MSA followed by channel attention, then a pre-norm MLP."""

    def __init__(
        self, dim: int, mlp_hidden: int, heads: int, cfg: RainformerConfig, window: Size2, shift: Size2
    ) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = WindowMSA(dim, heads, cfg.head_dim, window, shift)
        self.ca = ChannelAttention(dim, cfg.ca_reduction)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_hidden), nn.GELU(), nn.Linear(mlp_hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, H, W, C)`` → ``(B, H, W, C)``."""
        x = x + self.ca(self.attn(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


# ---------------------------------------------------------------------------------------------
# Local branch and gate fusion (channels-first, as convolutions want)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: ``x · σ(BN(Conv3×3([mean_c x, max_c x])))`` on ``(B, C, H, W)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` → ``(B, C, H, W)``."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # (B, 2, H, W)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


def conv_bn_relu(dim: int) -> list[nn.Module]:
    # No conv bias: the BatchNorm right after it would cancel it (and leave it without gradient).
    return [nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim), nn.ReLU()]


class LocalBranch(nn.Module):
    """Local features: two 3×3 conv-BN-ReLU layers then CBAM (channel then spatial attention)."""

    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*conv_bn_relu(dim), *conv_bn_relu(dim))
        self.ca = ChannelAttention(dim, reduction)
        self.sa = SpatialAttention()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, H, W, C)`` → ``(B, C, H, W)`` (channels-first, as the GFU consumes it)."""
        y = self.convs(rearrange(x, "b h w c -> b c h w"))  # (B, C, H, W)
        y = rearrange(self.ca(rearrange(y, "b c h w -> b h w c")), "b h w c -> b c h w")
        return self.sa(y)


def conv_ln(dim_in: int, dim_out: int, resolution: Size2) -> nn.Sequential:
    """3×3 conv followed by a LayerNorm over the whole ``(C, H, W)`` map (official GFU)."""
    return nn.Sequential(nn.Conv2d(dim_in, dim_out, 3, padding=1), nn.LayerNorm([dim_out, *resolution]))


class GateFusionUnit(nn.Module):
    """GFU: ``Z, R = split(σ(Conv(cat(g, l))))``, ``out = Z ⊙ Conv(g) + R ⊙ Conv(l)`` (the paper's GFU)."""

    def __init__(self, dim: int, resolution: Size2) -> None:
        super().__init__()
        self.gates = conv_ln(2 * dim, 2 * dim, resolution)
        self.conv_global = conv_ln(dim, dim, resolution)
        self.conv_local = conv_ln(dim, dim, resolution)

    def forward(self, g: Tensor, local: Tensor) -> Tensor:
        """``g (B, H, W, C)``, ``local (B, C, H, W)`` → ``(B, H, W, C)``."""
        g = rearrange(g, "b h w c -> b c h w")
        z, r = torch.sigmoid(self.gates(torch.cat([g, local], dim=1))).chunk(2, dim=1)  # (B, C, H, W) each
        out = z * self.conv_global(g) + r * self.conv_local(local)  # (B, C, H, W)
        return rearrange(out, "b c h w -> b h w c")


class RainformerBlock(nn.Module):
    """Global branch (W-MSA then SW-MSA) and local branch on the same input, fused by the GFU."""

    def __init__(
        self, dim: int, mlp_hidden: int, heads: int, resolution: Size2, cfg: RainformerConfig
    ) -> None:
        super().__init__()
        window, shift = window_and_shift(resolution, cfg.window_size)
        self.global_branch = nn.Sequential(
            SwinBlock(dim, mlp_hidden, heads, cfg, window, (0, 0)),
            SwinBlock(dim, mlp_hidden, heads, cfg, window, shift),
        )
        self.local_branch = LocalBranch(dim, cfg.ca_reduction)
        self.gfu = GateFusionUnit(dim, resolution)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, H, W, C)`` → ``(B, H, W, C)``."""
        return self.gfu(self.global_branch(x), self.local_branch(x))


# ---------------------------------------------------------------------------------------------
# Stages


class PatchMerging(nn.Module):
    """Space-to-depth by ``factor`` then a linear map: ``(B, H, W, C)`` → ``(B, H/f, W/f, C')``."""

    def __init__(self, dim_in: int, dim_out: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.linear = nn.Linear(dim_in * factor**2, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        f = self.factor
        return self.linear(rearrange(x, "b (h p) (w q) c -> b h w (p q c)", p=f, q=f))  # (B, H/f, W/f, C')


class PatchExpanding(nn.Module):
    """Depth-to-space by ``factor`` then a linear map: ``(B, H, W, C)`` → ``(B, fH, fW, C')``."""

    def __init__(self, dim_in: int, dim_out: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.linear = nn.Linear(dim_in // factor**2, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        f = self.factor
        return self.linear(rearrange(x, "b h w (c p q) -> b (h p) (w q) c", p=f, q=f))  # (B, fH, fW, C')


class Stage(nn.Module):
    """Resampling (merge or expand), optional skip concatenation, then ``depth`` Rainformer blocks."""

    def __init__(
        self,
        resample: nn.Module,
        dim: int,
        mlp_hidden: int,
        heads: int,
        resolution: Size2,
        cfg: RainformerConfig,
    ) -> None:
        super().__init__()
        self.resample = resample
        self.blocks = nn.Sequential(
            *[RainformerBlock(dim, mlp_hidden, heads, resolution, cfg) for _ in range(cfg.depth)]
        )

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        """``x (B, H, W, C_in)`` [+ ``skip (B, H', W', C_skip)``] → ``(B, H', W', C)``."""
        x = self.resample(x)  # (B, H', W', C - C_skip)
        if skip is not None:
            x = torch.cat([x, skip], dim=-1)  # (B, H', W', C)
        return self.blocks(x)


def build_stages(cfg: RainformerConfig) -> tuple[nn.ModuleList, nn.ModuleList]:
    """Encoder stages (coarser each time) and decoder stages (finest last, ending at full size)."""
    widths, factors, heads, ratio = cfg.widths(), cfg.downscaling_factors, cfg.heads, cfg.mlp_ratio
    resolutions, (h, w) = [], cfg.padded_size()
    for f in factors:
        h, w = h // f, w // f
        resolutions.append((h, w))
    encoder, dim_in = nn.ModuleList(), cfg.in_len * cfg.channels_in
    for i, (f, dim) in enumerate(zip(factors, widths, strict=True)):
        merge = PatchMerging(dim_in, dim, f)
        encoder.append(Stage(merge, dim, ratio * dim, heads[i], resolutions[i], cfg))
        dim_in = dim
    decoder, expanded = nn.ModuleList(), cfg.expanded_widths()
    for i in reversed(range(len(factors) - 1)):  # level i from level i+1, with skip i
        expand = PatchExpanding(expanded[i + 1], widths[i], factors[i + 1])
        decoder.append(Stage(expand, 2 * widths[i], ratio * widths[i], heads[i + 1], resolutions[i], cfg))
    dim_out = final_width(cfg)
    expand = PatchExpanding(expanded[0], dim_out, factors[0])
    decoder.append(Stage(expand, dim_out, ratio * dim_out, heads[0], cfg.padded_size(), cfg))
    return encoder, decoder


def final_width(cfg: RainformerConfig) -> int:
    """Width of the full-size stage: the output channels ``T_out·C_out`` (official), at least 4.

    A LayerNorm over a single channel outputs its bias whatever the input, so a one-frame,
    one-channel forecast would switch off the final stage's attention; it runs wider instead and
    a linear head maps it to the output channels.
    """
    return max(cfg.out_len * cfg.channels_out, MIN_FINAL_WIDTH)


class Rainformer(BaselineForecaster):
    """Rainformer over frames stacked as channels (see the module docstring)."""

    config_class: ClassVar[type[ShapeConfig]] = RainformerConfig
    accepts_targets: ClassVar[bool] = False

    def __init__(self, config: RainformerConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.encoder, self.decoder = build_stages(self.config)
        dim_out = self.config.out_len * self.config.channels_out
        width = final_width(self.config)
        self.head = nn.Linear(width, dim_out) if width != dim_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Forecast: ``x (B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``."""
        self.check_input(x)
        c = self.config
        (hp, wp), (h, w) = c.padded_size(), (c.height, c.width)
        z = rearrange(x, "b t h w c -> b h w (t c)")  # (B, H, W, T_in·C_in)
        z = F.pad(z, (0, 0, 0, wp - w, 0, hp - h))  # (B, Hp, Wp, T_in·C_in)
        skips = []
        for stage in self.encoder:
            z = stage(z)  # (B, Hp/F_i, Wp/F_i, C_i)
            skips.append(z)
        skips = [*reversed(skips[:-1]), None]  # finest skip last, none for the full-size stage
        for stage, skip in zip(self.decoder, skips, strict=True):
            z = stage(z, skip)
        z = self.head(z[:, :h, :w])  # (B, H, W, T_out·C_out)
        return rearrange(z, "b h w (t c) -> b t h w c", t=c.out_len)


#: Named presets (config overrides); ``sevir``/``enso`` match the parameter counts of the tables.
PRESETS: dict[str, dict[str, Any]] = {
    # The official widths at 384×384 give 198 M parameters (two thirds in the GFUs: 3×3 convs on
    # the deep maps, per-pixel LayerNorms on the fine ones); the table's 184 M is met with the
    # official depth, widths and heads by narrower MLPs (ratio 2) and heads (24 features).
    "sevir": {"mlp_ratio": 2, "head_dim": 24},
    # 24×48 months: three ×2 stages (12×24, 6×12, 3×6 maps, no padding) and 6×6 windows.
    "enso": {
        "in_len": 12,
        "out_len": 14,
        "height": 24,
        "width": 48,
        "hidden_dim": 68,
        "downscaling_factors": (2, 2, 2),
        "heads": (3, 6, 12),
        "window_size": 6,
    },
    # N-body benchmark on CPU (10 → 10, 32×32): maps of 8×8, 4×4 and 2×2 after the ×4 stem.
    "small": {
        "in_len": 10,
        "out_len": 10,
        "height": 32,
        "width": 32,
        "hidden_dim": 16,
        "downscaling_factors": (4, 2, 2),
        "heads": (2, 4, 8),
        "head_dim": 16,
        "window_size": 4,
    },
    "tiny": {
        "in_len": 4,
        "out_len": 3,
        "height": 16,
        "width": 16,
        "hidden_dim": 8,
        "downscaling_factors": (2, 2),
        "heads": (1, 2),
        "head_dim": 4,
        "window_size": 4,
    },
}
