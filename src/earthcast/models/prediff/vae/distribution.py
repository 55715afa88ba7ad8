"""Diagonal Gaussian posterior ``q(z | x) = N(μ, diag σ²)`` of the frame autoencoder.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` latent space, ``c`` latent channel.

Parameters are stored channel-last, ``(B, T, h, w, c)`` (or ``(B, h, w, c)`` for single frames);
everything is element-wise except :meth:`DiagonalGaussian.kl`, which sums one frame's
``h·w·c`` terms, i.e. over the last three axes.
"""

from __future__ import annotations

import torch
from torch import Tensor


class DiagonalGaussian:
    """``N(mean, exp(logvar))`` per latent element.

    Args:
        mean: posterior mean ``μ``, ``(..., h, w, c)``.
        logvar: posterior log-variance, same shape, clamped to ``logvar_clamp`` so that
            ``exp`` neither under- nor overflows (reference: ``[-30, 20]``).
    """

    def __init__(self, mean: Tensor, logvar: Tensor, logvar_clamp: tuple[float, float] = (-30.0, 20.0)):
        if mean.shape != logvar.shape:
            raise ValueError(f"mean {tuple(mean.shape)} and logvar {tuple(logvar.shape)} differ in shape")
        self.mean = mean
        self.logvar = logvar.clamp(*logvar_clamp)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    @property
    def shape(self) -> torch.Size:
        return self.mean.shape

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised draw ``μ + σ·ε`` (differentiable in ``μ, σ``); same ``generator`` → same draw."""
        eps = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * eps

    def mode(self) -> Tensor:
        """The most likely latent, ``μ``."""
        return self.mean

    def kl(self) -> Tensor:
        """``KL(q ‖ N(0, I))`` per frame: ``½ Σ_{h,w,c} (μ² + σ² − 1 − log σ²)``, shape ``(...)``."""
        return 0.5 * (self.mean.square() + self.var - 1.0 - self.logvar).sum(dim=(-3, -2, -1))
