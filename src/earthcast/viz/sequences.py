"""Context / truth / forecast panels: one row per sequence, one column per frame → PNG.

Axis legend: ``t`` frame, ``h``/``w`` space.

Every panel is titled with its time relative to the forecast reference time (the last context
frame): context frames at ``−(T_in − 1)·Δ … 0``, truth and forecast frames at lead times
``Δ, 2Δ, … T_out·Δ`` with Δ the frame interval in minutes (frame steps ``t−1, t0, t+1 …`` for data
without a fixed clock interval, such as monthly ENSO fields). All rows share one colour map and one
colour bar whose label carries the units (``earthcast.viz.colormaps``). NaN pixels are drawn
light grey (missing data).

Orientation: ``origin="upper"`` (default) draws row 0 at the top, right for data stored
north-first (SEVIR, radar composites). Grids stored south-first (ENSO: row 0 is 55°S;
NetCDF/Zarr stores whose latitude grows with the row index) need ``origin="lower"`` or every map
is upside down; ``image_origin(row_order)`` turns a contract's / forecast file's ``row_order``
into the right one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from earthcast.viz._figure import add_colorbar, new_figure, save_figure
from earthcast.viz.colormaps import ColorSpec, continuous_colors

__all__ = [
    "PanelRow",
    "as_frames",
    "context_minutes",
    "forecast_rows",
    "format_minutes",
    "image_origin",
    "lead_minutes",
    "plot_rows",
]


@dataclass(frozen=True)
class PanelRow:
    """One row of panels.

    Attributes:
        label: row title (``"context"``, ``"truth"``, ``"forecast"``, …).
        frames: ``(T, H, W)`` values.
        minutes: time of each frame relative to the forecast reference time, in minutes (in
            frame steps when ``clock`` is False).
        clock: whether ``minutes`` are clock minutes (False for data without a fixed interval).
    """

    label: str
    frames: np.ndarray
    minutes: tuple[float, ...]
    clock: bool = True


ORIGINS = ("upper", "lower")


def image_origin(row_order: str | None) -> str:
    """``imshow`` origin that puts north at the top: ``"lower"`` for ``"south_first"`` grids,
    ``"upper"`` otherwise (north-first data, and unknown order, drawn as stored)."""
    return "lower" if row_order == "south_first" else "upper"


def check_origin(origin: str) -> str:
    """``origin`` itself, or a ValueError: a typo would otherwise draw maps silently flipped."""
    if origin not in ORIGINS:
        raise ValueError(
            f"origin must be 'upper' (row 0 at the top) or 'lower' (row 0 at the bottom), got {origin!r}"
        )
    return origin


def lead_minutes(n: int, interval_minutes: float | None) -> tuple[float, ...]:
    """Lead times of ``n`` forecast frames: ``Δ, 2Δ, …, nΔ`` (steps ``1 … n`` when Δ is None)."""
    step = 1.0 if interval_minutes is None else float(interval_minutes)
    return tuple((i + 1) * step for i in range(n))


def context_minutes(n: int, interval_minutes: float | None) -> tuple[float, ...]:
    """Times of ``n`` context frames ending at the reference time: ``−(n − 1)Δ, …, 0``."""
    step = 1.0 if interval_minutes is None else float(interval_minutes)
    return tuple((i - n + 1) * step for i in range(n))


def format_minutes(minutes: float, clock: bool = True) -> str:
    """``+5 min``, ``−60 min``, ``0 min``; hours from 3 h, days from 2 d; ``t+1`` steps without a clock."""
    sign = "+" if minutes > 0 else "−"
    size = abs(minutes)
    if not clock:
        return "t0" if minutes == 0 else f"t{sign}{size:g}"
    if minutes == 0:
        return "0 min"
    if size < 180:
        return f"{sign}{size:g} min"
    if size < 2880:
        return f"{sign}{size / 60:g} h"
    return f"{sign}{size / 1440:.4g} d"


def as_frames(array: np.ndarray, name: str) -> np.ndarray:
    """One sample's frames as float32 ``(T, H, W)``; a trailing channel axis of size 1 is dropped."""
    frames = np.asarray(array, dtype=np.float32)
    if frames.ndim == 4 and frames.shape[-1] == 1:
        frames = frames[..., 0]  # (t, h, w, 1) -> (t, h, w)
    if frames.ndim != 3:
        raise ValueError(
            f"{name} must be one sequence of frames (T, H, W) or (T, H, W, 1), got shape {frames.shape}; "
            "select one sample (and one channel) first"
        )
    return frames


def forecast_rows(
    forecast: np.ndarray,
    truth: np.ndarray | None = None,
    context: np.ndarray | None = None,
    *,
    interval_minutes: float | None = 5.0,
    forecast_label: str = "forecast",
) -> list[PanelRow]:
    """Rows ``context``, ``truth``, ``forecast`` (those given) from ``(T, H, W)`` sequences.

    ``interval_minutes`` None labels frames by step (``t−1``, ``t0``, ``t+1``), e.g. monthly data.
    """
    clock = interval_minutes is not None
    rows = []
    if context is not None:
        frames = as_frames(context, "context")
        rows.append(PanelRow("context", frames, context_minutes(len(frames), interval_minutes), clock))
    if truth is not None:
        frames = as_frames(truth, "truth")
        rows.append(PanelRow("truth", frames, lead_minutes(len(frames), interval_minutes), clock))
    frames = as_frames(forecast, "forecast")
    rows.append(PanelRow(forecast_label, frames, lead_minutes(len(frames), interval_minutes), clock))
    return rows


def plot_rows(
    rows: Sequence[PanelRow],
    colors: ColorSpec | None = None,
    *,
    title: str | None = None,
    path: str | os.PathLike | None = None,
    panel_inches: float = 1.4,
    dpi: int = 100,
    origin: str = "upper",
) -> Figure:
    """Draw ``rows`` as a grid (one column per frame) with a shared, labelled colour bar.

    Args:
        rows: the rows, top to bottom; rows may differ in length (shorter rows leave blanks).
        colors: colour map and norm; default ``continuous_colors`` over all frames.
        title: figure title.
        path: save the figure there (PNG/PDF/SVG by extension, written atomically).
        panel_inches: size of one panel.
        dpi: resolution of the saved image.
        origin: ``"upper"`` draws row 0 at the top, ``"lower"`` at the bottom (south-first
            grids such as ENSO; ``image_origin``).

    Returns:
        The matplotlib figure.
    """
    if not rows:
        raise ValueError("plot_rows needs at least one row")
    check_origin(origin)
    if colors is None:
        colors = continuous_colors(np.concatenate([r.frames.ravel() for r in rows]))
    n_rows, n_cols = len(rows), max(len(r.frames) for r in rows)
    height, width = rows[0].frames.shape[1:]
    aspect = min(max(width / height, 0.5), 3.0)  # wide grids (ENSO 24 × 48) get wide panels
    fig = new_figure(panel_inches * aspect * n_cols + 1.6, panel_inches * n_rows + (0.7 if title else 0.4))
    axes = fig.subplots(n_rows, n_cols, squeeze=False, gridspec_kw={"wspace": 0.05, "hspace": 0.3})
    for r, row in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row.frames):
                ax.set_axis_off()
                continue
            frame = np.ma.masked_invalid(row.frames[c])
            ax.imshow(frame, cmap=colors.cmap, norm=colors.norm, interpolation="nearest", origin=origin)
            ax.set_title(format_minutes(row.minutes[c], row.clock), fontsize=8)
        axes[r, 0].set_ylabel(row.label, fontsize=9)
    add_colorbar(fig, axes.ravel().tolist(), colors)
    if title:
        fig.suptitle(title, fontsize=10)
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig
