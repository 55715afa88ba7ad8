"""Diffusion timestep embedding (SPEC §5.4): sinusoidal features followed by a two-layer MLP.

Axis legend: ``b`` batch, ``k`` frequency index (``dim // 2`` of them), ``c`` channels.

For a timestep ``t`` and ``half = dim // 2`` frequencies ``ω_k = max_period^(−k/half)``
(``k = 0 … half−1``) the features are ``[cos(t·ω_0) … cos(t·ω_{half−1}), sin(t·ω_0) … sin(t·ω_{half−1})]``
— cosines first, as in the reference (DDPM / Stable Diffusion ``timestep_embedding``); an odd
``dim`` gets one trailing zero.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal features of (possibly fractional) timesteps: ``t (B,)`` → ``(B, dim)`` float32."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * k / half)  # (k,)
    args = rearrange(t.float(), "b -> b 1") * rearrange(freqs, "k -> 1 k")  # (B, k)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2k)
    return F.pad(emb, (0, dim % 2))  # (B, dim)


class TimestepEmbedding(nn.Module):
    """``t (B,)`` → sinusoid ``(B, dim)`` → Linear → SiLU → Linear → ``(B, hidden)``."""

    def __init__(self, dim: int, hidden: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        self.dim, self.max_period = dim, max_period
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: Tensor) -> Tensor:
        """``t (B,)`` integer or float timesteps → ``(B, hidden)``."""
        emb = timestep_embedding(t, self.dim, self.max_period)  # (B, dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))  # (B, hidden)
