"""Learned relative position bias for attention inside (or between) cuboids (SPEC §1.6, §1.9).

A table of ``(2·Et−1)(2·Eh−1)(2·Ew−1)`` rows × heads, indexed by the per-axis offset between a
query and a key token (mixed radix). ``E`` is the configured maximum extent; the index is built for
the *actual* query/key cuboid extents at runtime (≤ ``E``), so a clamped cuboid still reads the
bias of its true offsets (the reference slices a bias built for the configured size instead).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from earthcast.nn.tensor_cache import tensor_cache


@tensor_cache(maxsize=256)
@torch.inference_mode(False)  # cached tensors must stay usable by autograd
def relative_index(
    extent: tuple[int, int, int], q_cuboid: tuple[int, int, int], k_cuboid: tuple[int, int, int]
) -> Tensor:
    """``(vq, vk)`` row of the bias table for each (query, key) token pair."""
    if any(q > e or k > e for q, k, e in zip(q_cuboid, k_cuboid, extent)):
        raise ValueError(f"cuboid {q_cuboid}/{k_cuboid} exceeds the bias table extent {extent}")
    q_coords = _coords(q_cuboid)  # (vq, 3)
    k_coords = _coords(k_cuboid)  # (vk, 3)
    offset = q_coords[:, None, :] - k_coords[None, :, :] + torch.tensor(extent) - 1  # (vq, vk, 3)
    radix = torch.tensor([(2 * extent[1] - 1) * (2 * extent[2] - 1), 2 * extent[2] - 1, 1])
    return (offset * radix).sum(-1)


def _coords(cuboid: Sequence[int]) -> Tensor:
    grids = torch.meshgrid(*(torch.arange(b) for b in cuboid), indexing="ij")
    return rearrange(torch.stack(grids), "three t h w -> (t h w) three")


class RelativePositionBias(nn.Module):
    """Bias table for offsets within an extent ``(Et, Eh, Ew)``; forward gives ``(heads, vq, vk)``."""

    def __init__(self, extent: Sequence[int], num_heads: int) -> None:
        super().__init__()
        self.extent = tuple(int(e) for e in extent)
        rows = (2 * self.extent[0] - 1) * (2 * self.extent[1] - 1) * (2 * self.extent[2] - 1)
        self.table = nn.Parameter(torch.zeros(rows, num_heads))
        nn.init.trunc_normal_(self.table, std=0.02)

    def forward(self, q_cuboid: Sequence[int], k_cuboid: Sequence[int] | None = None) -> Tensor:
        """Bias ``(heads, vq, vk)`` for query cuboid ``q_cuboid`` and key cuboid (default same)."""
        index = relative_index(self.extent, tuple(q_cuboid), tuple(k_cuboid or q_cuboid))
        bias = self.table[index.to(self.table.device)]  # (vq, vk, heads)
        return rearrange(bias, "vq vk h -> h vq vk")
