"""Which grid position may attend to which in one cuboid self-attention layer, as a matrix.

:func:`allowed_attention` is the public, documented view of a layer's decomposition: it answers
"can token ``i`` see token ``j`` directly in this layer?" for every pair of real positions,
taking clamping, padding, dilation and the shifted-window mask into account. Global vectors are
not part of this relation (they are an indirect path; see ``global_vectors.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from earthcast.nn.cuboid.decomposition import (
    check_padding_type,
    check_sizes,
    clamp_cuboid,
    decompose,
    nearest_readback,
    normalize_strategy,
    pad_amounts,
    roll,
)
from earthcast.nn.cuboid.masks import self_attention_mask


def cuboid_layout(
    shape: Sequence[int],
    cuboid_size: Sequence[int],
    strategy: str | Sequence[str] = "l",
    shift_size: Sequence[int] = (0, 0, 0),
    padding_type: str = "ignore",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where every padded-grid slot of every cuboid comes from and goes to.

    Returns:
        ``source (n, v)``: flat index ``t*H*W + h*W + w`` of the real position whose value fills
        the slot (−1 for a zero pad); ``readback (n, v)``: flat index of the real position whose
        output is read from the slot (−1 if none); ``allowed (n, v, v)`` bool mask.
    """
    t, h, w = check_sizes("shape", tuple(shape)[:3], 3, 1)
    strategy = normalize_strategy(strategy)
    cuboid_size = check_sizes("cuboid_size", cuboid_size, 3, 1)
    shift_size = check_sizes("shift_size", shift_size, 3, 0)
    check_padding_type(padding_type)
    cuboid, shift = clamp_cuboid((t, h, w), cuboid_size, shift_size, strategy)
    pads = pad_amounts((t, h, w), cuboid)
    grid = tuple(s + p for s, p in zip((t, h, w), pads))
    flat = np.arange(t * h * w).reshape(t, h, w)
    if padding_type == "nearest":
        # nearest resize to the padded grid; each position is read back from a slot holding its copy
        src_idx = [np.floor(np.arange(g) * s / g).astype(int) for g, s in zip(grid, (t, h, w))]
        source_grid = flat[np.ix_(*src_idx)]
        back_idx = [np.array(nearest_readback(s, g)) for g, s in zip(grid, (t, h, w))]
        readback_grid = np.full(grid, -1)
        readback_grid[np.ix_(*back_idx)] = flat
    else:
        source_grid = np.full(grid, -1)
        source_grid[:t, :h, :w] = flat
        readback_grid = source_grid
    source = _to_cuboids(source_grid, cuboid, shift, strategy)
    readback = _to_cuboids(readback_grid, cuboid, shift, strategy)
    allowed, _ = self_attention_mask((t, h, w), cuboid, shift, strategy, padding_type)
    n, v = source.shape
    allowed_np = np.ones((n, v, v), dtype=bool) if allowed is None else allowed.numpy()
    if padding_type == "ignore":
        allowed_np &= (source >= 0)[:, :, None] & (source >= 0)[:, None, :]
    return source, readback, allowed_np


def _to_cuboids(grid: np.ndarray, cuboid, shift, strategy) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(grid))[None, ..., None]
    return decompose(roll(x, shift), cuboid, strategy)[0, ..., 0].numpy()


def allowed_attention(
    shape: Sequence[int],
    cuboid_size: Sequence[int],
    strategy: str | Sequence[str] = "l",
    shift_size: Sequence[int] = (0, 0, 0),
    padding_type: str = "ignore",
) -> np.ndarray:
    """Attention connectivity of one cuboid self-attention layer.

    Args:
        shape: ``(T, H, W)`` of the real grid (a trailing channel entry is ignored).
        cuboid_size: requested ``(bT, bH, bW)`` (clamped as at runtime).
        strategy: ``"l"``/``"d"`` per axis, e.g. ``("l", "d", "d")``, or one letter for all.
        shift_size: cyclic shift ``(sT, sH, sW)``.
        padding_type: ``"ignore"``, ``"zeros"`` or ``"nearest"``.

    Returns:
        NumPy bool array ``(T*H*W, T*H*W)``; ``[i, j]`` is True when position ``i`` may attend to
        position ``j`` (flat index ``t*H*W + h*W + w``). Under ``zeros`` padding real tokens also
        attend to zero pads, which are not positions and do not appear; under ``nearest`` a pad
        slot holds a copy of a real position, so attending to it counts as attending to that one.

    Example:
        >>> m = allowed_attention((2, 4, 4), (1, 4, 1))   # attention along H only
        >>> bool(m[0, 4]), bool(m[0, 1])                  # (0,0,0)→(0,1,0) yes, →(0,0,1) no
        (True, False)
    """
    t, h, w = (int(s) for s in shape[:3])
    source, readback, allowed = cuboid_layout((t, h, w), cuboid_size, strategy, shift_size, padding_type)
    out = np.zeros((t * h * w, t * h * w), dtype=bool)
    cub, qi, ki = np.nonzero(allowed)
    rows, cols = readback[cub, qi], source[cub, ki]
    keep = (rows >= 0) & (cols >= 0)
    out[rows[keep], cols[keep]] = True
    return out
