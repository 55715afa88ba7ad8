"""3-D convolutional ResNet block with an optional timestep embedding (SPEC §5.4).

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channels, ``e`` embedding width.

``y = skip(x) + Conv(Drop(SiLU(GN(Conv(SiLU(GN(x))) + Linear(SiLU(emb))))))`` with 3×3×3
convolutions over ``(t, h, w)``; ``skip`` is the identity or a 1×1×1 convolution when the width
changes. Without an embedding it is a plain ResNet block (the denoiser's ``first_proj``). The
embedding is *added* between the convolutions (the reference's ``use_scale_shift_norm=False``).
The public interface is channels-last; convolutions run channels-first inside.
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

from earthcast.nn.dropout import Dropout


def group_count(channels: int, groups: int = 32) -> int:
    """GroupNorm groups: ``groups`` when it divides ``channels``, else one group per channel.

    Per-channel groups keep odd widths usable, e.g. the 64 latent channels plus the context
    indicator (65 → 65 groups), where a fixed 32 would not divide the width.
    """
    return groups if channels % groups == 0 else channels


class ResNetBlock3D(nn.Module):
    """Pre-activation ResNet block over ``(t, h, w)``, optionally conditioned on an embedding.

    Args:
        in_channels / out_channels: widths (``out_channels`` defaults to ``in_channels``).
        emb_dim: width of the conditioning embedding; ``None`` builds an unconditioned block.
        dropout: rate before the second convolution.
        norm_groups: see :func:`group_count`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        emb_dim: int | None = None,
        dropout: float = 0.0,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = nn.GroupNorm(group_count(in_channels, norm_groups), in_channels)
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels)) if emb_dim else None
        self.norm2 = nn.GroupNorm(group_count(out_channels, norm_groups), out_channels)
        self.drop = Dropout(dropout)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv3d(in_channels, out_channels, 1)
        self.act = nn.SiLU()

    def zero_init_output_(self) -> None:
        """Zero the last convolution so the block starts as its skip path."""
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        """``x (B, T, H, W, C_in)`` [, ``emb (B, E)``] → ``(B, T, H, W, C_out)``."""
        if (emb is None) != (self.emb_proj is None):
            raise ValueError("pass an embedding exactly when the block was built with emb_dim")
        # a dense copy, not a permuted view: torch 2.13's CPU GroupNorm backward crashes on
        # channels-last inputs that do not require grad (the denoiser's raw input)
        x = rearrange(x, "b t h w c -> b c t h w").contiguous()
        h = self.conv1(self.act(self.norm1(x)))  # (B, C_out, T, H, W)
        if self.emb_proj is not None:
            h = h + rearrange(self.emb_proj(emb), "b c -> b c 1 1 1")  # same time shift at every voxel
        h = self.conv2(self.drop(self.act(self.norm2(h))))  # (B, C_out, T, H, W)
        return rearrange(self.skip(x) + h, "b c t h w -> b t h w c")  # (B, T, H, W, C_out)
