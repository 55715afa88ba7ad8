"""The ensemble verification figure: rank histogram and reliability diagram from score dictionaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from earthcast.metrics.score import score_arrays
from earthcast.viz.ensemble import plot_ensemble_verification, reliability_thresholds


def _scores(kind: str) -> dict:
    rng = np.random.default_rng(3)
    truth = rng.random((4, 3, 16, 16), dtype=np.float32) * 0.9
    members = np.clip(truth[:, None] + rng.normal(0, 0.15, (4, 6, 3, 16, 16)), 0, 0.99).astype(np.float32)
    return score_arrays(members, truth, kind, ensemble=True)


def test_sevir_scores_give_both_panels(tmp_path):
    scores = _scores("sevir")
    assert reliability_thresholds(scores) == ["16", "74", "133", "160", "181", "219"]
    fig = plot_ensemble_verification(scores, tmp_path / "v.png", title="t")
    left, right = fig.axes
    heights = [patch.get_height() for patch in left.patches]
    assert heights == pytest.approx(scores["rank_histogram"])  # one bar per rank 0 … S
    plotted = {line.get_label().split(" ")[2] for line in right.lines if line.get_label().startswith("τ")}
    thresholds = reliability_thresholds(scores)
    with_data = {t for t in thresholds if not all(map(math.isnan, scores[f"bin_prob@{t}"]))}
    assert plotted == with_data and (tmp_path / "v.png").stat().st_size > 0


def test_scores_read_back_from_the_json_plot_the_same(tmp_path):
    import json

    from earthcast.utils.jsonsafe import strict_json

    scores = _scores("sevir")
    reloaded = json.loads(json.dumps(strict_json(scores), allow_nan=False))  # empty bins: null
    lines = [line.get_xydata().tolist() for line in plot_ensemble_verification(reloaded).axes[1].lines]
    assert lines == [line.get_xydata().tolist() for line in plot_ensemble_verification(scores).axes[1].lines]


def test_continuous_scores_give_the_rank_histogram_only():
    fig = plot_ensemble_verification(_scores("continuous"))
    assert len(fig.axes) == 1


def test_deterministic_scores_are_refused():
    truth = np.zeros((2, 3, 16, 16), np.float32)
    with pytest.raises(ValueError, match="no rank histogram"):
        plot_ensemble_verification(score_arrays(truth, truth, "sevir"))
