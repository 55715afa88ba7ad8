"""``AutoencoderKL``: PreDiff's frame-wise KL autoencoder (SPEC §5.2, Stable-Diffusion style).

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel; ``n`` frames (``b·t``).

Public methods take ``(B, T, H, W, C)`` sequences, or ``(B, H, W, C)`` single frames, and return
the same rank; each frame is encoded independently. ``H`` and ``W`` must be multiples of
``config.downsample_factor``, so that decoding gives back the input size. Latents are
``(B, T, H/f, W/f, c)`` with ``f`` the factor and ``c = latent_channels``.

Data flow (widths ``w_0 … w_L``)::

    frame ─ conv3×3 → [ResNet×enc_blocks (w_i), Downsample]×L, ResNet×enc_blocks (w_L)
          ─ mid (ResNet, attention, ResNet) ─ GN, SiLU, conv3×3 → 2c ─ 1×1 quant conv → (μ, log σ²)
    z ─ 1×1 post-quant conv ─ conv3×3 → w_L ─ mid
      ─ [ResNet×dec_blocks (w_i), Upsample]×L from i = L down, ResNet×dec_blocks (w_0)
      ─ GN, SiLU, conv3×3 → C_out
"""

from __future__ import annotations

from itertools import pairwise

import torch.nn.functional as F
from torch import Tensor, nn

from earthcast.models.prediff.vae.blocks import (
    Downsample,
    MidBlock,
    ResnetBlock,
    Upsample,
    from_frames,
    group_norm,
    to_frames,
)
from earthcast.models.prediff.vae.config import VAEConfig
from earthcast.models.prediff.vae.distribution import DiagonalGaussian


def _stage(dims: list[int], cfg: VAEConfig) -> list[nn.Module]:
    """ResNet blocks ``dims[0] → dims[1] → …`` with the config's norm and dropout."""
    return [ResnetBlock(a, b, cfg.norm_groups, cfg.norm_eps, cfg.dropout) for a, b in pairwise(dims)]


class Encoder(nn.Module):
    """Frames ``(N, C_in, H, W)`` → posterior moments ``(N, 2c, H/f, W/f)``."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        widths = cfg.block_widths
        self.conv_in = nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1)
        layers: list[nn.Module] = []
        prev = widths[0]
        for i, width in enumerate(widths):
            layers += _stage([prev] + [width] * cfg.encoder_blocks, cfg)
            if i < len(widths) - 1:
                layers.append(Downsample(width))
            prev = width
        self.down = nn.Sequential(*layers)
        self.mid = MidBlock(prev, cfg.norm_groups, cfg.norm_eps, cfg.dropout, cfg.mid_attention)
        self.norm_out = group_norm(prev, cfg.norm_groups, cfg.norm_eps)
        self.conv_out = nn.Conv2d(prev, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C_in, H, W)`` → ``(N, 2c, H/f, W/f)``."""
        h = self.down(self.conv_in(x))  # (N, w_L, H/f, W/f)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (N, 2c, H/f, W/f)


class Decoder(nn.Module):
    """Latents ``(N, c, h, w)`` → frames ``(N, C_out, h·f, w·f)``."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        widths = cfg.block_widths
        prev = widths[-1]
        self.conv_in = nn.Conv2d(cfg.latent_channels, prev, 3, padding=1)
        self.mid = MidBlock(prev, cfg.norm_groups, cfg.norm_eps, cfg.dropout, cfg.mid_attention)
        layers: list[nn.Module] = []
        for i in reversed(range(len(widths))):
            layers += _stage([prev] + [widths[i]] * cfg.decoder_blocks, cfg)
            if i > 0:
                layers.append(Upsample(widths[i]))
            prev = widths[i]
        self.up = nn.Sequential(*layers)
        self.norm_out = group_norm(prev, cfg.norm_groups, cfg.norm_eps)
        self.conv_out = nn.Conv2d(prev, cfg.out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        """``(N, c, h, w)`` → ``(N, C_out, h·f, w·f)``."""
        h = self.mid(self.conv_in(z))  # (N, w_L, h, w)
        h = self.up(h)  # (N, w_0, h·f, w·f)
        return self.conv_out(F.silu(self.norm_out(h)))  # (N, C_out, h·f, w·f)


class AutoencoderKL(nn.Module):
    """Frame-wise KL autoencoder: ``encode`` → :class:`DiagonalGaussian`, ``decode`` → frames.

    Args:
        config: architecture (and, for the training system, loss) hyper-parameters.
    """

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or VAEConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        latent = self.config.latent_channels
        self.quant_conv = nn.Conv2d(2 * latent, 2 * latent, 1)
        self.post_quant_conv = nn.Conv2d(latent, latent, 1)

    @property
    def last_layer(self) -> nn.Parameter:
        """Weight of the decoder's output conv, where the adaptive GAN weight compares gradients."""
        return self.decoder.conv_out.weight

    def encode(self, x: Tensor) -> DiagonalGaussian:
        """Posterior of each frame.

        Args:
            x: ``(B, T, H, W, C_in)`` or ``(B, H, W, C_in)``; ``H``, ``W`` multiples of the factor.

        Returns:
            ``q(z | x)`` with parameters ``(B, T, H/f, W/f, c)`` (or ``(B, H/f, W/f, c)``).
        """
        factor = self.config.downsample_factor
        if x.shape[-3] % factor or x.shape[-2] % factor:
            raise ValueError(
                f"frame size {tuple(x.shape[-3:-1])} must be a multiple of the VAE's factor {factor}"
            )
        frames, batch = to_frames(x)  # (N, C_in, H, W)
        moments = self.quant_conv(self.encoder(frames))  # (N, 2c, H/f, W/f)
        moments = from_frames(moments, batch)  # (B, T, H/f, W/f, 2c)
        mean, logvar = moments.chunk(2, dim=-1)  # (B, T, H/f, W/f, c) each
        return DiagonalGaussian(mean, logvar, self.config.logvar_clamp)

    def decode(self, z: Tensor) -> Tensor:
        """Frames of latents: ``(B, T, h, w, c)`` → ``(B, T, h·f, w·f, C_out)`` (or without ``T``)."""
        frames, batch = to_frames(z)  # (N, c, h, w)
        out = self.decoder(self.post_quant_conv(frames))  # (N, C_out, h·f, w·f)
        return from_frames(out, batch)  # (B, T, h·f, w·f, C_out)

    def forward(self, x: Tensor, sample_posterior: bool = True) -> tuple[Tensor, DiagonalGaussian]:
        """Reconstruct ``x`` through a posterior sample (training) or its mode.

        Args:
            x: ``(B, T, H, W, C_in)`` or ``(B, H, W, C_in)``.
            sample_posterior: decode ``z ~ q(z | x)`` (as in training) instead of its mean.

        Returns:
            ``(x̂, q(z | x))`` with ``x̂`` of ``x``'s shape (``C_out`` channels).
        """
        posterior = self.encode(x)
        z = posterior.sample() if sample_posterior else posterior.mode()  # (B, T, h, w, c)
        return self.decode(z), posterior
