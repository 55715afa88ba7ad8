"""Learned additive space-time positional embeddings (SPEC §2.3)."""

from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn

PosEmbedType = Literal["t+h+w", "t+hw"]


class SpaceTimePosEmbed(nn.Module):
    """``x + E_T[t] + E_H[h] + E_W[w]`` (``t+h+w``) or ``x + E_T[t] + E_HW[h·W_max + w]`` (``t+hw``).

    Tables have ``max_t``, ``max_h``, ``max_w`` (or ``max_h·max_w``) rows; inputs may be smaller.
    """

    def __init__(self, dim: int, max_t: int, max_h: int, max_w: int, kind: str = "t+h+w") -> None:
        super().__init__()
        if kind not in ("t+h+w", "t+hw"):
            raise ValueError(f"pos_embed_type must be 't+h+w' or 't+hw', got '{kind}'")
        self.kind, self.max_w = kind, max_w
        self.max_shape = (max_t, max_h, max_w)
        self.t = nn.Embedding(max_t, dim)
        if kind == "t+h+w":
            self.h = nn.Embedding(max_h, dim)
            self.w = nn.Embedding(max_w, dim)
        else:
            self.hw = nn.Embedding(max_h * max_w, dim)
        for emb in self.children():
            nn.init.trunc_normal_(emb.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, T, H, W, C)`` → ``x`` plus the embedding of every position."""
        t, h, w = x.shape[1:4]
        if any(s > m for s, m in zip((t, h, w), self.max_shape)):
            raise ValueError(f"grid {(t, h, w)} exceeds the positional-embedding size {self.max_shape}")
        dev = x.device
        emb = rearrange(self.t(torch.arange(t, device=dev)), "t c -> t 1 1 c")
        if self.kind == "t+h+w":
            emb = emb + rearrange(self.h(torch.arange(h, device=dev)), "h c -> 1 h 1 c")
            emb = emb + rearrange(self.w(torch.arange(w, device=dev)), "w c -> 1 1 w c")
        else:
            idx = torch.arange(h, device=dev)[:, None] * self.max_w + torch.arange(w, device=dev)
            emb = emb + self.hw(idx)[None]
        return x + emb
