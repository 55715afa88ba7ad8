"""Ensemble verification at a glance: rank histogram and reliability diagram.

Input: the score dictionary of ``earthcast.metrics.score_arrays(..., ensemble=True)``, or the JSON
of ``earthcast score`` on an ensemble forecast (where empty bins are ``null``): ``rank_histogram``
(relative frequency of the observation's rank ``0 … S``) and, for SEVIR, per threshold τ the
reliability-diagram vectors ``bin_prob@τ`` (mean forecast probability per bin), ``bin_freq@τ``
(observed frequency) and ``bin_count@τ``, with ``brier@τ``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure

from earthcast.viz._figure import new_figure, save_figure

__all__ = ["plot_ensemble_verification", "reliability_thresholds"]


def reliability_thresholds(scores: Mapping[str, Any]) -> list[str]:
    """Thresholds (as written in the keys) that have reliability-diagram vectors, in key order."""
    prefix = "bin_prob@"
    return [k[len(prefix) :] for k, v in scores.items() if k.startswith(prefix) and isinstance(v, list)]


def plot_ensemble_verification(
    scores: Mapping[str, Any],
    path: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """Rank histogram (left) and, when present, the reliability diagram (right).

    Raises:
        ValueError: ``scores`` holds no ``rank_histogram`` (it was not scored as an ensemble).
    """
    ranks = scores.get("rank_histogram")
    if not isinstance(ranks, list) or len(ranks) < 2:
        raise ValueError(
            "these scores hold no rank histogram: score an ensemble forecast (a 'member' dimension, "
            "or --ensemble) to plot its verification"
        )
    thresholds = reliability_thresholds(scores)
    panels = 2 if thresholds else 1
    fig = new_figure(4.2 * panels, 3.6, layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    _rank_histogram(axes[0], ranks, scores.get("spread_skill_corrected"))
    if thresholds:
        _reliability(axes[1], scores, thresholds)
    if title:
        fig.suptitle(title)
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    return fig


def _rank_histogram(ax, ranks: list[float], spread_skill: float | None) -> None:
    members = len(ranks) - 1
    ax.bar(range(len(ranks)), ranks, color="tab:blue", width=0.85)
    ax.axhline(1 / len(ranks), color="black", linestyle="--", linewidth=1, label="calibrated (flat)")
    ax.set_xlabel(f"rank of the observation among {members} members")
    ax.set_ylabel("relative frequency")
    subtitle = "" if spread_skill is None else f"\nspread/skill (corrected) {spread_skill:.2f}"
    ax.set_title("rank histogram" + subtitle, fontsize=10)
    ax.legend(fontsize=8, loc="upper center")


def _reliability(ax, scores: Mapping[str, Any], thresholds: list[str]) -> None:
    ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="perfect")
    for tau in thresholds:
        pairs = [
            (p, f)
            for p, f in zip(scores[f"bin_prob@{tau}"], scores[f"bin_freq@{tau}"])
            if _number(p) and _number(f)
        ]
        if not pairs:
            continue
        brier = scores.get(f"brier@{tau}")
        label = f"τ = {tau}" + ("" if brier is None else f" (BS {brier:.3f})")
        ax.plot(*zip(*pairs), marker="o", markersize=3, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("forecast probability P(x ≥ τ)")
    ax.set_ylabel("observed frequency")
    ax.set_title("reliability diagram", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")


def _number(value) -> bool:
    """A finite bin value: empty bins are NaN in memory and ``null`` in the score JSON."""
    return value is not None and not math.isnan(value)
