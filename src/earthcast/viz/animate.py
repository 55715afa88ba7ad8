"""GIF of truth and forecast side by side (matplotlib ``PillowWriter``, Agg canvas).

Axis legend: ``t`` frame, ``h``/``w`` space.

One GIF frame per time step: the context frames first (both panels show the observation, titled
``context −10 min`` …), then one frame per lead time (``+5 min`` …) with the truth on the left
and the forecast on the right. Without a truth the forecast is shown alone. The colour bar
carries the units. ``origin="lower"`` draws row 0 at the bottom, for south-first grids such as
ENSO (``earthcast.viz.sequences.image_origin``). The file is written to a temporary name and
renamed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter

from earthcast.utils.io import atomic_path
from earthcast.viz._figure import add_colorbar, new_figure
from earthcast.viz.colormaps import ColorSpec, continuous_colors
from earthcast.viz.sequences import as_frames, check_origin, context_minutes, format_minutes, lead_minutes

__all__ = ["animate_forecast"]


def _steps(
    forecast: np.ndarray, truth: np.ndarray | None, context: np.ndarray | None, interval: float | None
) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """``(title, left, right)`` per GIF frame; ``left`` is None when there is no truth."""
    clock = interval is not None
    steps: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    if context is not None:
        for minutes, frame in zip(context_minutes(len(context), interval), context):
            steps.append((f"context {format_minutes(minutes, clock)}", frame, frame))
    for i, minutes in enumerate(lead_minutes(len(forecast), interval)):
        left = truth[i] if truth is not None and i < len(truth) else None
        steps.append((f"lead {format_minutes(minutes, clock)}", left, forecast[i]))
    return steps


def animate_forecast(
    forecast: np.ndarray,
    path: str | os.PathLike,
    truth: np.ndarray | None = None,
    context: np.ndarray | None = None,
    *,
    interval_minutes: float | None = 5.0,
    colors: ColorSpec | None = None,
    fps: float = 2.0,
    title: str | None = None,
    dpi: int = 100,
    origin: str = "upper",
) -> int:
    """Write a GIF of ``truth`` | ``forecast`` through the lead times (after the ``context``).

    Args:
        forecast, truth, context: ``(T, H, W)`` (or ``(T, H, W, 1)``) sequences of one sample.
        path: output ``.gif``.
        interval_minutes: minutes between frames, for the titles (None: label frame steps).
        colors: colour map and norm; default ``continuous_colors`` over the frames.
        fps: GIF frames per second.
        title: figure title.
        dpi: resolution.
        origin: ``"upper"`` draws row 0 at the top, ``"lower"`` at the bottom (south-first grids).

    Returns:
        The number of GIF frames written (``T_context + T_forecast``).
    """
    if Path(path).suffix.lower() != ".gif":
        raise ValueError(f"animation path '{path}' must end in .gif")
    check_origin(origin)
    forecast = as_frames(forecast, "forecast")
    truth = None if truth is None else as_frames(truth, "truth")
    context = None if context is None else as_frames(context, "context")
    if colors is None:
        colors = continuous_colors(np.concatenate([a.ravel() for a in (forecast, truth) if a is not None]))
    steps = _steps(forecast, truth, context, interval_minutes)
    with_truth = truth is not None
    fig = new_figure(5.6 if with_truth else 3.4, 3.0 if title else 2.7)
    axes = fig.subplots(1, 2 if with_truth else 1, squeeze=False)[0]
    blank = np.full(forecast.shape[1:], np.nan, dtype=np.float32)
    images = []
    for ax, name in zip(axes, ("truth", "forecast") if with_truth else ("forecast",)):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(name, fontsize=9)
        images.append(
            ax.imshow(blank, cmap=colors.cmap, norm=colors.norm, interpolation="nearest", origin=origin)
        )
    add_colorbar(fig, list(axes), colors)
    heading = fig.suptitle("", fontsize=9)

    def draw(index: int):
        name, left, right = steps[index]
        frames = (left, right) if with_truth else (right,)
        for image, frame in zip(images, frames):
            image.set_data(np.ma.masked_invalid(blank if frame is None else frame))
        heading.set_text(f"{title} — {name}" if title else name)
        return [*images, heading]

    animation = FuncAnimation(fig, draw, frames=len(steps), blit=False)
    with atomic_path(path) as tmp:
        gif = tmp.with_name(tmp.name + ".gif")  # Pillow picks the format from the extension
        try:
            animation.save(gif, writer=PillowWriter(fps=fps), dpi=dpi)
            os.replace(gif, tmp)
        finally:
            gif.unlink(missing_ok=True)
    return len(steps)
