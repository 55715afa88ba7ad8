"""Building blocks of the PreDiff frame autoencoder (SPEC §5.2), channels-first on frames.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel; ``n`` frames (``b·t``).

The VAE works frame by frame, so its internals are 2-D convolutions on ``(N, C, H, W)``;
:func:`to_frames` / :func:`from_frames` are the only places that convert from and to the
package's ``(B, T, H, W, C)`` layout.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from earthcast.models.prediff.vae.config import group_count


def to_frames(x: Tensor) -> tuple[Tensor, int | None]:
    """``(B, T, H, W, C)`` or ``(B, H, W, C)`` → frames ``(N, C, H, W)`` and the batch size to restore.

    The returned batch size is ``None`` for single frames, so :func:`from_frames` gives back the
    rank it was given.
    """
    if x.ndim == 5:
        return rearrange(x, "b t h w c -> (b t) c h w"), x.shape[0]
    if x.ndim == 4:
        return rearrange(x, "b h w c -> b c h w"), None
    raise ValueError(f"expected (B, T, H, W, C) or (B, H, W, C), got shape {tuple(x.shape)}")


def from_frames(x: Tensor, batch: int | None) -> Tensor:
    """Inverse of :func:`to_frames`: ``(N, C, H, W)`` → ``(B, T, H, W, C)`` (or ``(B, H, W, C)``)."""
    if batch is None:
        return rearrange(x, "b c h w -> b h w c")
    return rearrange(x, "(b t) c h w -> b t h w c", b=batch)


def group_norm(channels: int, groups: int, eps: float) -> nn.GroupNorm:
    return nn.GroupNorm(group_count(channels, groups), channels, eps=eps)


class ResnetBlock(nn.Module):
    """GN → SiLU → Conv3×3 → GN → SiLU → dropout → Conv3×3, plus a 1×1 skip on a width change."""

    def __init__(self, dim: int, out_dim: int, groups: int, eps: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(dim, groups, eps)
        self.conv1 = nn.Conv2d(dim, out_dim, 3, padding=1)
        self.norm2 = group_norm(out_dim, groups, eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, padding=1)
        self.skip = nn.Conv2d(dim, out_dim, 1) if dim != out_dim else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` → ``(N, C_out, H, W)``."""
        h = self.conv1(F.silu(self.norm1(x)))  # (N, C_out, H, W)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h  # (N, C_out, H, W)


class SpatialAttention(nn.Module):
    """Single-head self-attention over the ``H·W`` positions of a frame, with a residual path."""

    def __init__(self, dim: int, groups: int, eps: float) -> None:
        super().__init__()
        self.norm = group_norm(dim, groups, eps)
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` → ``(N, C, H, W)``."""
        height = x.shape[-2]
        tokens = rearrange(self.norm(x), "n c h w -> n (h w) c")  # (N, H·W, C)
        q, k, v = self.to_q(tokens), self.to_k(tokens), self.to_v(tokens)
        out = self.to_out(F.scaled_dot_product_attention(q, k, v))  # (N, H·W, C)
        return x + rearrange(out, "n (h w) c -> n c h w", h=height)  # (N, C, H, W)


class Downsample(nn.Module):
    """Halve ``H, W``: zero-pad one row/column at the bottom/right, then a stride-2 3×3 conv.

    The asymmetric pad (not ``padding=1``) keeps the reference's pixel alignment, which matters
    for loading its weights.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` → ``(N, C, H/2, W/2)`` (``H``, ``W`` even)."""
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # (N, C, H/2, W/2)


class Upsample(nn.Module):
    """Double ``H, W``: nearest-neighbour ×2, then a 3×3 conv."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` → ``(N, C, 2H, 2W)``."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (N, C, 2H, 2W)


class MidBlock(nn.Module):
    """ResNet → (optional) spatial attention → ResNet at the coarsest resolution."""

    def __init__(self, dim: int, groups: int, eps: float, dropout: float, attention: bool) -> None:
        super().__init__()
        self.block1 = ResnetBlock(dim, dim, groups, eps, dropout)
        self.attn = SpatialAttention(dim, groups, eps) if attention else nn.Identity()
        self.block2 = ResnetBlock(dim, dim, groups, eps, dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` → ``(N, C, H, W)``."""
        return self.block2(self.attn(self.block1(x)))
