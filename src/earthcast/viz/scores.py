"""Skill versus lead time: one panel per threshold, one line per model.

Input: the per-lead score dictionaries of ``earthcast.metrics.score_arrays(..., mode="1")`` (the
JSON written by ``earthcast score --mode 1``), whose categorical entries are lists, one value per
lead time, under keys ``"<score>@<threshold>"`` (``csi@16``, ``csi@74``, …) and ``csi_m``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from earthcast.viz._figure import new_figure, save_figure
from earthcast.viz.sequences import lead_minutes

__all__ = ["per_lead_thresholds", "plot_score_vs_lead"]


def per_lead_thresholds(scores: Mapping[str, Any], metric: str = "csi") -> list[str]:
    """Thresholds (as written in the keys) that have a per-lead list of ``metric``, in key order."""
    prefix = f"{metric}@"
    return [k[len(prefix) :] for k, v in scores.items() if k.startswith(prefix) and isinstance(v, list)]


def _check(scores: Mapping[str, Mapping[str, Any]], metric: str) -> list[str]:
    if not scores:
        raise ValueError("plot_score_vs_lead needs at least one score dictionary")
    thresholds: list[str] = []
    for name, values in scores.items():
        found = per_lead_thresholds(values, metric)
        if not found:
            scalar = any(k.startswith(f"{metric}@") for k in values)
            hint = (
                "it holds one value per threshold (aggregation mode 0 or 2); re-run "
                "`earthcast score ... --mode 1` for per-lead-time scores"
                if scalar
                else f"it has no '{metric}@<threshold>' entries (was it scored with --metrics sevir?)"
            )
            raise ValueError(f"scores '{name}' cannot be plotted against lead time: {hint}")
        thresholds += [t for t in found if t not in thresholds]
    return thresholds


def plot_score_vs_lead(
    scores: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike | None = None,
    *,
    metric: str = "csi",
    interval_minutes: float = 5.0,
    thresholds: Sequence[str] | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """Plot ``metric`` against lead time, one panel per threshold (plus the mean ``<metric>_m``).

    Args:
        scores: ``{model name: score dictionary}`` (mode-1 output of ``score_arrays``).
        path: save the figure there (written atomically).
        metric: ``"csi"``, ``"pod"``, ``"sucr"``, ``"bias"`` or ``"hss"``.
        interval_minutes: minutes between lead times (lead ``i`` is ``(i + 1) · interval``).
        thresholds: subset of thresholds to show (default: all found).
        title: figure title.
        dpi: resolution of the saved image.
    """
    found = _check(scores, metric)
    shown = [str(t) for t in thresholds] if thresholds is not None else found
    panels = [f"{metric}@{t}" for t in shown]
    if any(isinstance(v.get(f"{metric}_m"), list) for v in scores.values()):
        panels.append(f"{metric}_m")
    n_cols = min(3, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = new_figure(3.2 * n_cols, 2.6 * n_rows + (0.4 if title else 0.0), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, key in zip(axes, panels):
        for name, values in scores.items():
            series = values.get(key)
            if not isinstance(series, list):
                continue
            leads = lead_minutes(len(series), interval_minutes)
            ax.plot(leads, series, marker="o", markersize=3, label=name)
        heading = (
            f"{metric.upper()}, mean over thresholds"
            if key.endswith("_m")
            else key.upper().replace("@", " ≥ ")
        )
        ax.set_title(heading, fontsize=9)
        ax.set_xlabel("lead time (min)", fontsize=8)
        ax.set_ylabel(metric.upper(), fontsize=8)
        if metric != "bias":
            ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig
