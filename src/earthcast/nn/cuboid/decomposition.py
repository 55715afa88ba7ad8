"""Cuboid decomposition: clamp → pad → cyclic shift → regroup into cuboids, and its exact inverse.

Axis legend: ``b`` batch, ``t h w`` grid axes, ``c`` channels, ``n`` cuboid count, ``v`` cuboid
volume; per axis ``nt`` = number of cuboids along T and ``bt`` = cuboid extent along T (same for h, w).

Index maps (SPEC §1.1), per axis with padded length ``L`` and cuboid extent ``b``:

* local  (``"l"``): grid position ``p = n·b + i`` → einops group ``(nt bt)``
* dilated (``"d"``): grid position ``p = i·(L/b) + n`` → einops group ``(bt nt)``

The ``n`` cuboids are ordered ``(nt, nh, nw)`` row-major, tokens inside a cuboid ``(bt, bh, bw)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

Strategy = Literal["l", "d"]
PaddingType = Literal["ignore", "zeros", "nearest"]
Size3 = tuple[int, int, int]

PADDING_TYPES = ("ignore", "zeros", "nearest")
_AXES = ("t", "h", "w")


def normalize_strategy(strategy: str | Sequence[str]) -> tuple[str, str, str]:
    """Accept ``"l"``, ``"lld"``, ``("l", "l", "d")`` or ``"local"``/``"dilated"`` → 3-tuple of l/d."""
    if isinstance(strategy, str):
        if strategy in ("local", "dilated"):
            strategy = strategy[0] * 3
        strategy = tuple(strategy) if len(strategy) == 3 else (strategy,) * 3
    out = tuple(s[0] if s in ("local", "dilated") else s for s in strategy)
    if len(out) != 3 or any(s not in ("l", "d") for s in out):
        raise ValueError(f"strategy must be three of 'l' (local) / 'd' (dilated), got {strategy!r}")
    return out  # type: ignore[return-value]


def check_sizes(name: str, sizes: Sequence[int], length: int, minimum: int) -> tuple[int, ...]:
    """``sizes`` as a tuple of ``length`` ints ≥ ``minimum``, or a ValueError naming the fix."""
    values = tuple(sizes) if isinstance(sizes, Sequence) and not isinstance(sizes, str) else (sizes,)
    if len(values) != length or any(isinstance(v, bool) or int(v) != v or v < minimum for v in values):
        axes = "(T, H, W)" if length == 3 else "(H, W)"
        raise ValueError(
            f"{name} must be {length} whole numbers ≥ {minimum}, one per axis {axes}, got {sizes!r}"
        )
    return tuple(int(v) for v in values)


def check_padding_type(padding_type: str) -> str:
    if padding_type not in PADDING_TYPES:
        raise ValueError(f"padding_type must be one of {PADDING_TYPES}, got {padding_type!r}")
    return padding_type


def check_grid(x: Tensor, channels: int, what: str = "input") -> None:
    """Cuboid layers take channels-last 5-D grids; say so instead of failing inside einops."""
    if x.dim() != 5:
        raise ValueError(
            f"cuboid attention {what} must be (B, T, H, W, C), got shape {tuple(x.shape)}; "
            "add the missing batch/time axis (e.g. x[None] or x[:, None])"
        )
    if x.shape[-1] != channels:
        raise ValueError(
            f"cuboid attention {what} has {x.shape[-1]} channels in its last axis, the layer was built "
            f"for dim={channels}; channels go last: (B, T, H, W, C)"
        )


def clamp_cuboid(
    shape: Sequence[int], cuboid_size: Sequence[int], shift_size: Sequence[int], strategy: Sequence[str]
) -> tuple[Size3, Size3]:
    """Runtime clamping of SPEC §1.2.

    Dilated axes never shift; an axis whose data size is ≤ the requested cuboid extent gets the
    data size as extent and no shift. A shift of a whole padded axis or more is the same cyclic
    shift as its remainder, and the shift mask is built for that remainder.
    """
    cuboid, shift = list(cuboid_size), list(shift_size)
    for i, size in enumerate(shape):
        if strategy[i] == "d":
            shift[i] = 0
        if size <= cuboid[i]:
            cuboid[i] = size
            shift[i] = 0
        shift[i] %= -(-size // cuboid[i]) * cuboid[i]  # the padded length of the axis
    return tuple(cuboid), tuple(shift)  # type: ignore[return-value]


def pad_amounts(shape: Sequence[int], cuboid_size: Sequence[int]) -> Size3:
    """Amount appended to each axis so it divides into whole cuboids."""
    return tuple((b - s % b) % b for s, b in zip(shape, cuboid_size))  # type: ignore[return-value]


def pad(x: Tensor, pads: Sequence[int], padding_type: str, time_pad_left: bool = False) -> Tensor:
    """Pad ``x (B, T, H, W, C)`` by ``pads=(pt, ph, pw)`` at the end of each axis.

    ``zeros``/``ignore`` append zeros (``ignore`` masks them later); ``nearest`` resizes the grid
    with nearest interpolation instead. ``time_pad_left`` pads time at the start (cross-attention
    memory, so its last frame stays aligned).
    """
    pt, ph, pw = pads
    if pt == ph == pw == 0:
        return x
    if padding_type == "nearest":
        _, t, h, w, _ = x.shape
        return _resize(x, (t + pt, h + ph, w + pw))
    t_pad = (pt, 0) if time_pad_left else (0, pt)
    return F.pad(x, (0, 0, 0, pw, 0, ph, *t_pad))


def projection_commutes_with_padding(pads: Sequence[int], padding_type: str, has_bias: bool) -> bool:
    """Whether a per-token projection may run before :func:`pad` instead of after it.

    It always commutes with shifting and with ``nearest`` padding (padded tokens are copies);
    with ``zeros`` only without a bias (``W·0 = 0``); with ``ignore`` always (padded keys are
    masked, padded queries cropped)."""
    return not any(pads) or padding_type in ("nearest", "ignore") or not has_bias


def unpad(x: Tensor, pads: Sequence[int], padding_type: str) -> Tensor:
    """Exact inverse of :func:`pad`: crop, or for ``nearest`` read each position back from a slot
    holding its copy (:func:`nearest_readback`). ``x (B, T', H', W', C)`` → ``(B, T, H, W, C)``."""
    pt, ph, pw = pads
    if pt == ph == pw == 0:
        return x
    _, t, h, w, _ = x.shape
    if padding_type == "nearest":
        for axis, (padded, amount) in enumerate(zip((t, h, w), pads), start=1):
            index = torch.tensor(nearest_readback(padded - amount, padded), device=x.device)
            x = x.index_select(axis, index)
        return x
    return x[:, : t - pt, : h - ph, : w - pw]


def nearest_readback(size: int, padded: int) -> list[int]:
    """Slot of a nearest-resized axis (``size`` → ``padded``) holding a copy of each position.

    Nearest resizing fills slot ``q`` with position ``⌊q·size/padded⌋``; slot
    ``⌈p·padded/size⌉`` holds position ``p``, so reading it back is an exact inverse. (The
    reference resizes back with nearest interpolation instead, which is not an inverse: for
    5 → 8 → 5 it returns positions 0, 0, 1, 2, 3.)
    """
    return [-(-p * padded // size) for p in range(size)]


def _resize(x: Tensor, size: Size3) -> Tensor:
    x = rearrange(x, "b t h w c -> b c t h w")
    x = F.interpolate(x, size=size, mode="nearest")
    return rearrange(x, "b c t h w -> b t h w c")


def roll(x: Tensor, shift: Sequence[int], inverse: bool = False, first_axis: int = 1) -> Tensor:
    """Cyclic shift by ``-shift`` (or ``+shift`` when ``inverse``) over the three grid axes."""
    if not any(shift):
        return x
    sign = 1 if inverse else -1
    return torch.roll(x, shifts=tuple(sign * s for s in shift), dims=tuple(range(first_axis, first_axis + 3)))


def _group(axis: str, strategy: str) -> str:
    # local: the cuboid index varies slowest; dilated: the in-cuboid index varies slowest
    return f"(n{axis} b{axis})" if strategy == "l" else f"(b{axis} n{axis})"


def _grid_pattern(strategy: Sequence[str]) -> str:
    return " ".join(_group(a, s) for a, s in zip(_AXES, strategy))


def decompose(x: Tensor, cuboid_size: Sequence[int], strategy: Sequence[str]) -> Tensor:
    """Regroup a divisible grid into cuboids: ``(B, T, H, W, C)`` → ``(B, n, v, C)``."""
    bt, bh, bw = cuboid_size
    return rearrange(
        x,
        f"b {_grid_pattern(strategy)} c -> b (nt nh nw) (bt bh bw) c",
        bt=bt,
        bh=bh,
        bw=bw,
    )


def merge(x: Tensor, cuboid_size: Sequence[int], strategy: Sequence[str], grid: Sequence[int]) -> Tensor:
    """Inverse of :func:`decompose`: ``(B, n, v, C)`` → ``(B, T, H, W, C)`` for the padded ``grid``."""
    return rearrange(
        x,
        f"b (nt nh nw) (bt bh bw) c -> b {_grid_pattern(strategy)} c",
        **_axis_sizes(cuboid_size, grid),
    )


def _axis_sizes(cuboid_size: Sequence[int], grid: Sequence[int]) -> dict[str, int]:
    """einops sizes of the cuboid extents ``b*`` and cuboid counts ``n*`` per axis."""
    sizes = {}
    for axis, extent, length in zip(_AXES, cuboid_size, grid):
        sizes[f"b{axis}"], sizes[f"n{axis}"] = extent, length // extent
    return sizes


def to_cuboid_heads(
    x: Tensor, cuboid_size: Sequence[int], strategy: Sequence[str], heads: int, parts: int = 1
) -> Tensor:
    """Projected grid → attention layout in one copy.

    ``(B, T, H, W, parts·heads·d)`` → ``(parts, B, n, heads, v, d)`` (``parts=3`` splits q, k, v).
    """
    bt, bh, bw = cuboid_size
    return rearrange(
        x,
        f"b {_grid_pattern(strategy)} (parts h d) -> parts b (nt nh nw) h (bt bh bw) d",
        bt=bt,
        bh=bh,
        bw=bw,
        parts=parts,
        h=heads,
    )


def from_cuboid_heads(
    x: Tensor, cuboid_size: Sequence[int], strategy: Sequence[str], grid: Sequence[int]
) -> Tensor:
    """Inverse of :func:`to_cuboid_heads` for one part.

    ``(B, n, heads, v, d)`` → ``(B, T, H, W, heads·d)`` for the padded ``grid``.
    """
    return rearrange(
        x,
        f"b (nt nh nw) h (bt bh bw) d -> b {_grid_pattern(strategy)} (h d)",
        **_axis_sizes(cuboid_size, grid),
    )
