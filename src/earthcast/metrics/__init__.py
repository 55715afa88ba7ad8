"""Streaming verification metrics (torchmetrics ``Metric`` subclasses) and their registry.

Every metric follows init → ``update`` → ``merge_state`` / DDP sync → ``compute``. Deterministic
metrics take ``(pred, target)`` of shape ``(B, T, H, W, C)``; ensemble metrics take
``(ensemble, target)`` with the ensemble ``(B, S, T, H, W, C)``.

Modules:
    categorical: contingency-table scores (CSI, POD, SUCR, BIAS, HSS), pooling, SEVIR thresholds.
    continuous: MSE / MAE (pixel-mean or frame-sum) and frame-wise SSIM.
    spatial: Fractions Skill Score and radially averaged power spectra.
    enso: Niño3.4 index, correlation skill (C-Nino3.4-M / -WM), index RMSE.
    probabilistic: CRPS, rank histogram, spread–skill ratio, Brier score.
    score: ``score_arrays`` for saved forecasts (the ``earthcast score`` command).

Registry names (``get_metric(name, **overrides)``; ``list_metrics()``):
    ``sevir_csi``, ``contingency``, ``mse``, ``mae``, ``ssim``, ``fss``, ``power_spectrum``,
    ``enso``, ``crps``, ``rank_histogram``, ``spread_skill``, ``brier``. Third-party packages can
    add metrics through the ``earthcast.metrics`` entry-point group.
"""

from __future__ import annotations

from typing import Any

from torchmetrics import Metric

from earthcast._registry import Registry
from earthcast.metrics.categorical import (
    SEVIR_MISSING_VALUE,
    SEVIR_SCALE,
    SEVIR_THRESHOLDS,
    ContingencyScores,
    PooledCSI,
)
from earthcast.metrics.continuous import MAE, MSE, SSIM
from earthcast.metrics.energy import EnergyError
from earthcast.metrics.enso import EnsoScores, lead_weights, nino34_index
from earthcast.metrics.probabilistic import CRPS, BrierScore, RankHistogram, SpreadSkill, crps_ensemble
from earthcast.metrics.score import score_arrays
from earthcast.metrics.spatial import FSS, PowerSpectrum, rapsd

METRICS: Registry[Metric] = Registry("metric", "earthcast.metrics")

SEVIR_FSS_SCALES = (1, 4, 16)
"""Default FSS neighbourhoods (pixels), matching the CSI pooling sizes 1/4/16 of PreDiff."""


@METRICS.register("sevir_csi")
def sevir_csi(**overrides: Any) -> ContingencyScores:
    """SEVIR categorical scores: SEVIR thresholds, inputs in [0, 1] (×255), 255 = missing."""
    kwargs = {"thresholds": SEVIR_THRESHOLDS, "scale": SEVIR_SCALE, "missing_value": SEVIR_MISSING_VALUE}
    return ContingencyScores(**{**kwargs, **overrides})


@METRICS.register("sevir_csi_pool")
def sevir_csi_pool(pool_size: int = 4, **overrides: Any) -> PooledCSI:
    """CSI-pool``s`` of PreDiff (``csi@τ_pool{s}``, ``csi_m_pool{s}``) with the SEVIR defaults."""
    kwargs = {"thresholds": SEVIR_THRESHOLDS, "scale": SEVIR_SCALE, "missing_value": SEVIR_MISSING_VALUE}
    return PooledCSI(pool_size=pool_size, **{**kwargs, **overrides})


@METRICS.register("fss")
def sevir_fss(**overrides: Any) -> FSS:
    """Fractions Skill Score; defaults to the SEVIR thresholds on [0, 1] VIL."""
    kwargs = {"thresholds": SEVIR_THRESHOLDS, "scales": SEVIR_FSS_SCALES, "scale": SEVIR_SCALE}
    return FSS(**{**kwargs, **overrides})


@METRICS.register("brier")
def sevir_brier(**overrides: Any) -> BrierScore:
    """Brier score of threshold exceedance; defaults to the SEVIR thresholds on [0, 1] VIL."""
    kwargs = {"thresholds": SEVIR_THRESHOLDS, "scale": SEVIR_SCALE}
    return BrierScore(**{**kwargs, **overrides})


for _name, _factory in (
    ("contingency", ContingencyScores),
    ("mse", MSE),
    ("mae", MAE),
    ("ssim", SSIM),
    ("power_spectrum", PowerSpectrum),
    ("enso", EnsoScores),
    ("crps", CRPS),
    ("rank_histogram", RankHistogram),
    ("spread_skill", SpreadSkill),
    ("energy_error", EnergyError),
):
    METRICS.add(_name, _factory)


def get_metric(name: str, **kwargs: Any) -> Metric:
    """Build a registered metric by (case-insensitive) name; ``kwargs`` override its defaults."""
    return METRICS.create(name, **kwargs)


def list_metrics() -> list[str]:
    """Names of all registered metrics, sorted."""
    return METRICS.names()


__all__ = [
    "CRPS",
    "FSS",
    "MAE",
    "METRICS",
    "MSE",
    "SEVIR_MISSING_VALUE",
    "SEVIR_THRESHOLDS",
    "SSIM",
    "BrierScore",
    "ContingencyScores",
    "EnsoScores",
    "PowerSpectrum",
    "RankHistogram",
    "SpreadSkill",
    "crps_ensemble",
    "get_metric",
    "lead_weights",
    "list_metrics",
    "nino34_index",
    "rapsd",
    "score_arrays",
]
