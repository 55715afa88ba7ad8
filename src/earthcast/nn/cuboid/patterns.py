"""Named cuboid decomposition patterns (SPEC §1.9, §1.10), selectable by name.

A *self* pattern maps a feature shape ``(T, H, W, C)`` to the layers of one block: a list of
``(cuboid_size, strategy, shift_size)``. A *cross* pattern maps the memory shape to a list of
``(cuboid_hw, shift_hw, strategy, n_temporal)``. Sizes are before runtime clamping.

========================  ===================================================================
name                      layers
========================  ===================================================================
``full``                  ``(T,H,W)`` — plain global attention
``axial``                 ``(T,1,1)``, ``(1,H,1)``, ``(1,1,W)``
``divided_st``            ``(T,1,1)``, ``(1,H,W)``
``video_swin[_PxM]``      ``(P,M,M)``, then the same shifted by ``(P//2, M//2, M//2)``
``spatial_lg[_M]``        ``(T,1,1)``, ``(1,M,M)`` local, ``(1,M,M)`` dilated
``axial_space_dilate_K``  ``(T,1,1)``, ``(1,H/K,1)`` d, ``(1,H/K,1)`` l, ``(1,1,W/K)`` d, ``(1,1,W/K)`` l
``cross_KxK``             one ``(K,K)`` local layer over all memory frames
``cross_KxK_lg``          ``(K,K)`` local then dilated
``cross_KxK_heter``       local, dilated, local shifted by ``K//2``
========================  ===================================================================

New patterns are added with ``@SELF_PATTERNS.register("name")`` (or ``CROSS_PATTERNS``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from earthcast._registry import Registry

SelfLayer = tuple[tuple[int, int, int], tuple[str, str, str], tuple[int, int, int]]
CrossLayer = tuple[tuple[int, int], tuple[int, int], tuple[str, str, str], int]

SELF_PATTERNS: Registry[list[SelfLayer]] = Registry("self-attention pattern", "earthcast.cuboid_patterns")
CROSS_PATTERNS: Registry[list[CrossLayer]] = Registry("cross-attention pattern", "earthcast.cuboid_patterns")

LOCAL = ("l", "l", "l")
DILATED = ("d", "d", "d")
NO_SHIFT = (0, 0, 0)


def get_self_pattern(name: str, shape: Sequence[int]) -> list[SelfLayer]:
    """Layers of self pattern ``name`` for feature shape ``(T, H, W[, C])``."""
    return SELF_PATTERNS.get(name)(tuple(shape[:3]))


def get_cross_pattern(name: str, mem_shape: Sequence[int]) -> list[CrossLayer]:
    """Layers of cross pattern ``name`` for memory shape ``(T, H, W[, C])``."""
    return CROSS_PATTERNS.get(name)(tuple(mem_shape[:3]))


def list_patterns(kind: str = "self") -> list[str]:
    """Registered pattern names of ``kind`` ``"self"`` or ``"cross"``."""
    if kind not in ("self", "cross"):
        raise ValueError(f"pattern kind must be 'self' or 'cross', got {kind!r}")
    return (SELF_PATTERNS if kind == "self" else CROSS_PATTERNS).names()


@SELF_PATTERNS.register("full")
def full(shape: Sequence[int]) -> list[SelfLayer]:
    t, h, w = shape
    return [((t, h, w), LOCAL, NO_SHIFT)]


@SELF_PATTERNS.register("axial")
def axial(shape: Sequence[int]) -> list[SelfLayer]:
    t, h, w = shape
    return [((t, 1, 1), LOCAL, NO_SHIFT), ((1, h, 1), LOCAL, NO_SHIFT), ((1, 1, w), LOCAL, NO_SHIFT)]


@SELF_PATTERNS.register("divided_st")
def divided_space_time(shape: Sequence[int]) -> list[SelfLayer]:
    t, h, w = shape
    return [((t, 1, 1), LOCAL, NO_SHIFT), ((1, h, w), LOCAL, NO_SHIFT)]


def video_swin(shape: Sequence[int], p: int = 2, m: int = 4) -> list[SelfLayer]:
    t, h, w = shape
    p, m = min(p, t), min(m, h, w)
    return [((p, m, m), LOCAL, NO_SHIFT), ((p, m, m), LOCAL, (p // 2, m // 2, m // 2))]


def spatial_local_global(shape: Sequence[int], m: int = 4) -> list[SelfLayer]:
    t, h, w = shape
    if h <= m and w <= m:
        return divided_space_time(shape)
    return [((t, 1, 1), LOCAL, NO_SHIFT), ((1, m, m), LOCAL, NO_SHIFT), ((1, m, m), DILATED, NO_SHIFT)]


def axial_space_dilate(shape: Sequence[int], k: int = 2) -> list[SelfLayer]:
    t, h, w = shape
    k = min(k, h, w)
    return [
        ((t, 1, 1), LOCAL, NO_SHIFT),
        ((1, h // k, 1), DILATED, NO_SHIFT),
        ((1, h // k, 1), LOCAL, NO_SHIFT),
        ((1, 1, w // k), DILATED, NO_SHIFT),
        ((1, 1, w // k), LOCAL, NO_SHIFT),
    ]


def cross_kxk(shape: Sequence[int], k: int) -> list[CrossLayer]:
    _, h, w = shape
    k = min(k, h, w)
    return [((k, k), (0, 0), LOCAL, 1)]


def cross_kxk_lg(shape: Sequence[int], k: int) -> list[CrossLayer]:
    _, h, w = shape
    k = min(k, h, w)
    return [((k, k), (0, 0), LOCAL, 1), ((k, k), (0, 0), DILATED, 1)]


def cross_kxk_heter(shape: Sequence[int], k: int) -> list[CrossLayer]:
    _, h, w = shape
    k = min(k, h, w)
    return [((k, k), (0, 0), LOCAL, 1), ((k, k), (0, 0), DILATED, 1), ((k, k), (k // 2, k // 2), LOCAL, 1)]


def _register_family(registry: Registry, name: str, fn: Callable, **kwargs) -> None:
    registry.add(name, functools.partial(fn, **kwargs))


SELF_PATTERNS.add("video_swin", video_swin)
SELF_PATTERNS.add("spatial_lg_v1", spatial_local_global)
SELF_PATTERNS.add("spatial_lg", spatial_local_global)
for _p in (1, 2, 4, 8, 10):
    for _m in (1, 2, 4, 8, 16, 32):
        _register_family(SELF_PATTERNS, f"video_swin_{_p}x{_m}", video_swin, p=_p, m=_m)
for _m in (1, 2, 4, 8, 16, 32):
    _register_family(SELF_PATTERNS, f"spatial_lg_{_m}", spatial_local_global, m=_m)
for _k in (2, 4, 8):
    _register_family(SELF_PATTERNS, f"axial_space_dilate_{_k}", axial_space_dilate, k=_k)
for _k in (1, 2, 4, 8):
    _register_family(CROSS_PATTERNS, f"cross_{_k}x{_k}", cross_kxk, k=_k)
    _register_family(CROSS_PATTERNS, f"cross_{_k}x{_k}_lg", cross_kxk_lg, k=_k)
    _register_family(CROSS_PATTERNS, f"cross_{_k}x{_k}_heter", cross_kxk_heter, k=_k)
