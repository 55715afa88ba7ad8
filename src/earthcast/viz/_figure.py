"""Figure plumbing shared by the plotting modules: Agg canvases and atomic saving.

Figures are built with the object-oriented API on an Agg canvas (no ``pyplot``, no global state,
no display), and saved through ``atomic_path`` so an interrupted run leaves no partial image.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from earthcast.utils.io import atomic_path
from earthcast.viz.colormaps import ColorSpec

_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg", ".jpg": "jpg", ".jpeg": "jpg"}


def new_figure(width: float, height: float, **kwargs) -> Figure:
    """A figure of ``width`` × ``height`` inches attached to an Agg canvas."""
    fig = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    return fig


def image_format(path: str | os.PathLike) -> str:
    """Image format from the file extension (ValueError naming the supported ones)."""
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(
            f"cannot save a figure as '{path}': unknown extension '{suffix or '(none)'}'; "
            f"use one of {', '.join(sorted(_FORMATS))}"
        )
    return _FORMATS[suffix]


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save ``fig`` atomically in the format given by the extension of ``path``."""
    fmt = image_format(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")  # crop margins left by fixed aspects
    return Path(path)


def add_colorbar(fig: Figure, axes, colors: ColorSpec):
    """A colour bar for ``colors`` beside ``axes``, with units in its label and SEVIR/rain ticks."""
    from matplotlib.cm import ScalarMappable

    mappable = ScalarMappable(norm=colors.norm, cmap=colors.cmap)
    bar = fig.colorbar(mappable, ax=axes, extend=colors.extend, shrink=0.9, pad=0.02)
    bar.set_label(colors.label)
    if colors.ticks is not None:
        bar.set_ticks(list(colors.ticks))
        if colors.ticklabels is not None:
            bar.set_ticklabels(list(colors.ticklabels))
    bar.ax.tick_params(labelsize=7)
    return bar
