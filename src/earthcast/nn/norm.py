"""Normalisation layers selectable by name."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

NormName = Literal["layer_norm", "rms_norm"]


class RMSNorm(nn.Module):
    """Root-mean-square normalisation (Zhang & Sennrich, 2019) over the last axis."""

    def __init__(self, dim: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        rms = x.norm(2, dim=-1, keepdim=True) * x.shape[-1] ** -0.5
        return self.weight * (x / (rms + self.eps))


def make_norm(name: str, dim: int, eps: float = 1e-5) -> nn.Module:
    """``layer_norm`` (eps 1e-5, as every Earthformer config) or ``rms_norm``."""
    if name == "layer_norm":
        return nn.LayerNorm(dim, eps=eps)
    if name == "rms_norm":
        return RMSNorm(dim)
    raise ValueError(f"unknown norm '{name}', choose 'layer_norm' or 'rms_norm'")
