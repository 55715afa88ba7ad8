"""Picture of a cuboid decomposition: one 3-D panel per layer, one colour per cuboid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from earthcast.nn.cuboid.connectivity import cuboid_layout
from earthcast.nn.cuboid.patterns import get_self_pattern


def cuboid_ids(shape: Sequence[int], cuboid_size, strategy, shift_size=(0, 0, 0)) -> np.ndarray:
    """``(T, H, W)`` int array: the cuboid each real position belongs to in one layer."""
    t, h, w = shape[:3]
    source, _, _ = cuboid_layout((t, h, w), cuboid_size, strategy, shift_size, "ignore")
    ids = np.full(t * h * w, -1)
    cub, slot = np.nonzero(source >= 0)
    ids[source[cub, slot]] = cub
    return ids.reshape(t, h, w)


def plot_decomposition(pattern: str | list, shape: Sequence[int], path: str | Path | None = None, title=None):
    """Draw how ``pattern`` (a registered name or a list of layers) splits a ``(T, H, W)`` grid.

    Every layer of the pattern is a 3-D voxel panel (axes T, H, W); voxels of the same cuboid
    share a colour. Returns the matplotlib figure (saved to ``path`` when given).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    layers = get_self_pattern(pattern, shape) if isinstance(pattern, str) else pattern
    fig = plt.figure(figsize=(3.2 * len(layers), 3.4))
    cmap = plt.get_cmap("tab20")
    for i, (cuboid, strategy, shift) in enumerate(layers):
        ids = cuboid_ids(shape, cuboid, strategy, shift)
        ax = fig.add_subplot(1, len(layers), i + 1, projection="3d")
        colours = cmap((ids % 20) / 19.0)
        colours[..., 3] = 0.85
        ax.voxels(
            np.ones(ids.shape, dtype=bool), facecolors=colours, edgecolor=(0, 0, 0, 0.25), linewidth=0.3
        )
        ax.set_xlabel("T")
        ax.set_ylabel("H")
        ax.set_zlabel("W")
        ax.set_title(
            f"{tuple(cuboid)} {''.join(strategy)}" + (f" shift {tuple(shift)}" if any(shift) else ""),
            fontsize=8,
        )
        ax.set_box_aspect(ids.shape)
    fig.suptitle(title or (pattern if isinstance(pattern, str) else "cuboid decomposition"))
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
