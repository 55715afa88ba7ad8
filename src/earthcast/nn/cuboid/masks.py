"""Which token may attend to which inside a cuboid: shifted-window and padding masks.

Axis legend: ``n`` cuboids, ``v`` cuboid volume (``vx``/``vm`` for cross-attention query/memory).

*Shift mask* (SPEC §1.4): after the cyclic shift, the last ``s`` positions of an axis hold content
that wrapped around from the start. Label each position of the rolled, padded grid with a region
id per shifted axis — ``[0, L−b)``, ``[L−b, L−s)``, ``[L−s, L)`` — and let two tokens of a cuboid
attend only when all their ids agree. Axes without shift have a single region.

*Padding mask*: under ``padding_type="ignore"`` padded tokens are excluded as keys and queries.

Masks are pure functions of static shapes; they are cached per (shapes, device).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor

from earthcast.nn.cuboid.decomposition import decompose, pad_amounts, roll
from earthcast.nn.tensor_cache import tensor_cache


def _axis_regions(length: int, extent: int, shift: int) -> Tensor:
    """Region id (0, 1, 2) of every position of a rolled axis of padded ``length``."""
    ids = torch.zeros(length, dtype=torch.long)
    if shift > 0:
        ids[length - extent : length - shift] = 1
        ids[length - shift :] = 2
    return ids


def _region_grid(grid: Sequence[int], cuboid_size: Sequence[int], shift: Sequence[int]) -> Tensor:
    """``(1, T', H', W', 1)`` combined region id of every position of the padded grid."""
    rt, rh, rw = (_axis_regions(L, b, s) for L, b, s in zip(grid, cuboid_size, shift))
    ids = rt[:, None, None] * 9 + rh[None, :, None] * 3 + rw[None, None, :]
    return ids[None, ..., None]


def _validity_grid(shape: Sequence[int], pads: Sequence[int], time_pad_left: bool = False) -> Tensor:
    """``(1, T', H', W', 1)`` bool: True on real positions, False on padding."""
    t, h, w = shape
    pt, ph, pw = pads
    valid = torch.zeros(1, t + pt, h + ph, w + pw, 1, dtype=torch.bool)
    t0 = pt if time_pad_left else 0
    valid[:, t0 : t0 + t, :h, :w] = True
    return valid


def _cuboid_view(grid: Tensor, cuboid_size: Sequence[int], strategy: Sequence[str]) -> Tensor:
    """``(1, T', H', W', 1)`` → ``(n, v)`` in cuboid order."""
    return rearrange(decompose(grid, cuboid_size, strategy), "1 n v 1 -> n v")


@tensor_cache(maxsize=256)
@torch.inference_mode(False)  # cached tensors must stay usable by autograd
def self_attention_mask(
    shape: tuple[int, int, int],
    cuboid_size: tuple[int, int, int],
    shift_size: tuple[int, int, int],
    strategy: tuple[str, str, str],
    padding_type: str,
    device: torch.device | str = "cpu",
) -> tuple[Tensor | None, Tensor | None]:
    """Mask of one cuboid self-attention layer for a real grid ``shape = (T, H, W)``.

    Args: cuboid/shift sizes are the *clamped* ones used at runtime.

    Returns:
        ``allowed`` — bool ``(n, v, v)`` or ``None`` when every pair inside a cuboid may attend;
        ``valid`` — bool ``(n, v)`` real-token indicator in cuboid order, or ``None`` when no
        token is masked (only ``ignore`` padding masks tokens).
    """
    pads = pad_amounts(shape, cuboid_size)
    grid = tuple(s + p for s, p in zip(shape, pads))
    allowed = None
    if any(shift_size):
        regions = _cuboid_view(_region_grid(grid, cuboid_size, shift_size), cuboid_size, strategy)
        allowed = regions[:, :, None] == regions[:, None, :]
    valid = None
    if padding_type == "ignore" and any(pads):
        valid = _cuboid_view(roll(_validity_grid(shape, pads), shift_size), cuboid_size, strategy)
        pair = valid[:, :, None] & valid[:, None, :]
        allowed = pair if allowed is None else allowed & pair
    return _to(allowed, device), _to(valid, device)


@tensor_cache(maxsize=256)
@torch.inference_mode(False)  # cached tensors must stay usable by autograd
def cross_attention_mask(
    t_x: int,
    t_mem: int,
    hw: tuple[int, int],
    n_temporal: int,
    cuboid_hw: tuple[int, int],
    shift_hw: tuple[int, int],
    strategy: tuple[str, str, str],
    padding_type: str,
    device: torch.device | str = "cpu",
) -> Tensor | None:
    """Mask ``(n, vx, vm)`` of a cuboid cross-attention layer, or ``None`` when nothing is masked.

    Queries ``(t_x, H, W)`` are padded on the right in time, memory ``(t_mem, H, W)`` on the left;
    spatial shift regions must agree; under ``ignore`` padding padded tokens are excluded.
    """
    h, w = hw
    pad_tx, pad_h, pad_w = pad_amounts((t_x, h, w), (n_temporal, *cuboid_hw))
    pad_tm = pad_amounts((t_mem, 1, 1), (n_temporal, 1, 1))[0]
    x_cuboid = ((t_x + pad_tx) // n_temporal, *cuboid_hw)
    m_cuboid = ((t_mem + pad_tm) // n_temporal, *cuboid_hw)
    shift3 = (0, *shift_hw)
    allowed = None
    if any(shift_hw):
        region = _region_grid((1, h + pad_h, w + pad_w), (1, *cuboid_hw), shift3)
        rx = _cuboid_view(region.expand(1, t_x + pad_tx, -1, -1, 1), x_cuboid, strategy)
        rm = _cuboid_view(region.expand(1, t_mem + pad_tm, -1, -1, 1), m_cuboid, strategy)
        allowed = rx[:, :, None] == rm[:, None, :]
    if padding_type == "ignore" and (pad_tx or pad_tm or pad_h or pad_w):
        vx = _validity_grid((t_x, h, w), (pad_tx, pad_h, pad_w))
        vm = _validity_grid((t_mem, h, w), (pad_tm, pad_h, pad_w), time_pad_left=True)
        vx = _cuboid_view(roll(vx, shift3), x_cuboid, strategy)
        vm = _cuboid_view(roll(vm, shift3), m_cuboid, strategy)
        pair = vx[:, :, None] & vm[:, None, :]
        allowed = pair if allowed is None else allowed & pair
    return _to(allowed, device)


def _to(mask: Tensor | None, device: torch.device | str) -> Tensor | None:
    return None if mask is None else mask.to(device)
