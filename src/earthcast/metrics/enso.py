"""ENSO skill: the Niño3.4 index of SST-anomaly forecasts and its correlation skill per lead.

Axis legend: ``b`` batch, ``t`` month, ``h``/``w`` grid rows/columns (24 × 48, 5°), ``c`` channel,
``l`` lead month of the index.

Steps (SPEC §3.5, §4.4):

1. De-normalise the min-max scaled SST anomaly: ``x · (SST_MAX − SST_MIN) + SST_MIN``.
2. Niño3.4 index per month = mean over grid rows 10–12 and columns 19–29 (5°S–5°N,
   170°W–120°W), then a 3-month running mean (window 3, stride 1): ``T`` months → ``T − 2``
   index values (14 output months → 12 leads).
3. Per lead ``l``: Pearson correlation over all samples
   ``cor_l = Σ(p − p̄)(y − ȳ) / (sqrt(Σ(p − p̄)² Σ(y − ȳ)²) + 1e-6)``, accumulated as running
   sums (Σp, Σy, Σp², Σy², Σpy, n) so it streams and merges exactly.
4. ``C-Nino3.4-M = mean_l cor_l``; ``C-Nino3.4-WM = mean_l a_l ln(l) cor_l`` with the Tianchi
   weights ``a_l`` = 1.5 (l ≤ 4), 2 (l ≤ 11), 3 (l ≤ 18), 4 beyond; ``nino_rmse = mean_l
   sqrt(mean_n (p − y)²)``; ``mse`` = pixel mean over all output frames on the normalised scale.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange, reduce
from torch import Tensor

from earthcast.metrics._base import SUM_DTYPE, StreamingMetric, check_fields

SST_MIN = -16.549121856689453
"""Global minimum SST anomaly over CMIP5/6 in the ICAR-ENSO training data (SPEC §3.5)."""
SST_MAX = 10.198975563049316
"""Global maximum SST anomaly over CMIP5/6 in the ICAR-ENSO training data (SPEC §3.5)."""
ENSO_GRID = (24, 48)
"""Rows × columns of the ICAR-ENSO grid after restricting longitudes to 95°E–330°E."""
NINO34_ROWS = slice(10, 13)
"""Grid rows 10–12 (5°S–5°N) of the Niño3.4 box; indices from the Earthformer ENSO loader."""
NINO34_COLS = slice(19, 30)
"""Grid columns 19–29 (170°W–120°W) of the Niño3.4 box."""
NINO_WINDOW = 3
"""Length (months) of the running mean that defines the Niño3.4 index."""
CORR_EPS = 1e-6
"""Added to the correlation denominator, as in the reference score."""


def denormalise_sst(sst: Tensor) -> Tensor:
    """Map min-max normalised SST anomalies back to °C."""
    return sst * (SST_MAX - SST_MIN) + SST_MIN


def normalise_sst(sst: Tensor) -> Tensor:
    """Map SST anomalies in °C to the [0, 1] scale used for training."""
    return (sst - SST_MIN) / (SST_MAX - SST_MIN)


def running_mean(series: Tensor, window: int = NINO_WINDOW) -> Tensor:
    """Running mean along the last axis with stride 1: ``(..., T) → (..., T − window + 1)``."""
    if series.shape[-1] < window:
        raise ValueError(f"running_mean: need at least {window} time steps, got {series.shape[-1]}")
    return series.unfold(-1, window, 1).mean(dim=-1)


def nino34_index(sst_anomaly: Tensor) -> Tensor:
    """Niño3.4 index from SST-anomaly fields (already de-normalised).

    Args:
        sst_anomaly: ``(B, T, 24, 48)`` or ``(B, T, 24, 48, 1)`` SST anomaly.

    Returns:
        ``(B, T − 2)`` 3-month running mean of the Niño3.4 box average.
    """
    if sst_anomaly.ndim == 5:
        sst_anomaly = rearrange(sst_anomaly, "b t h w 1 -> b t h w")
    if sst_anomaly.ndim != 4 or tuple(sst_anomaly.shape[-2:]) != ENSO_GRID:
        raise ValueError(
            f"nino34_index: expected (B, T, 24, 48[, 1]) SST anomalies, got {tuple(sst_anomaly.shape)}"
        )
    box = sst_anomaly[:, :, NINO34_ROWS, NINO34_COLS]  # (B, T, 3, 11)
    monthly = reduce(box, "b t h w -> b t", "mean")  # (B, T)
    return running_mean(monthly)  # (B, T − 2)


def lead_weights(n_leads: int) -> Tensor:
    """Tianchi lead weights ``a_l · ln(l)`` for ``l = 1 … n_leads`` (float64, ``(n_leads,)``)."""
    weights = []
    for lead in range(1, n_leads + 1):
        a = 1.5 if lead <= 4 else 2.0 if lead <= 11 else 3.0 if lead <= 18 else 4.0
        weights.append(a * math.log(lead))
    return torch.tensor(weights, dtype=torch.float64)


class EnsoScores(StreamingMetric):
    """Streaming Niño3.4 correlation skill, index RMSE and field MSE.

    Args:
        n_leads: number of index leads (``T − 2``); taken from the first batch if None.
        denormalise: if True, the inputs are min-max normalised SST and are mapped back to °C
            before forming the index; set False when they are anomalies in °C already.
    """

    higher_is_better = None  # correlations: higher is better; RMSE/MSE: lower

    def __init__(self, n_leads: int | None = None, denormalise: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.denormalise = denormalise
        shape = None if n_leads is None else (n_leads,)
        for name in ("sum_p", "sum_y", "sum_pp", "sum_yy", "sum_py", "sum_sq_err"):
            self._add_lazy_state(name, SUM_DTYPE, shape)  # (L,) sums over samples
        self.add_state("n_samples", torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")
        self.add_state("field_sq_err", torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")
        self.add_state("field_count", torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, target_nino: Tensor | None = None) -> None:
        """Accumulate index statistics and field errors.

        Args:
            pred: ``(B, T, 24, 48, 1)`` forecast SST (normalised unless ``denormalise=False``).
            target: ``(B, T, 24, 48, 1)`` observed SST, same scale.
            target_nino: optional ``(B, T − 2)`` target index (e.g. the dataset's ``nino``
                labels) used instead of the index computed from ``target``.
        """
        check_fields(pred, target, "EnsoScores")
        self.field_sq_err += (pred.to(SUM_DTYPE) - target.to(SUM_DTYPE)).square().sum()
        self.field_count += pred.numel()
        if self.denormalise:
            pred, target = denormalise_sst(pred.to(SUM_DTYPE)), denormalise_sst(target.to(SUM_DTYPE))
        p = nino34_index(pred.to(SUM_DTYPE))  # (B, L)
        y = nino34_index(target.to(SUM_DTYPE)) if target_nino is None else target_nino.to(SUM_DTYPE)
        if y.shape != p.shape:
            raise ValueError(
                f"EnsoScores: target_nino must have shape {tuple(p.shape)}, got {tuple(y.shape)}"
            )
        n_leads = p.shape[1]
        for name, value in (
            ("sum_p", p),
            ("sum_y", y),
            ("sum_pp", p * p),
            ("sum_yy", y * y),
            ("sum_py", p * y),
            ("sum_sq_err", (p - y).square()),
        ):
            self._sized_state(name, (n_leads,), p.device).add_(reduce(value, "b l -> l", "sum"))
        self.n_samples += p.shape[0]

    def correlation(self) -> Tensor:
        """Per-lead Pearson correlation ``(L,)`` (SPEC §4.4, +1e-6 in the denominator)."""
        n = self.n_samples
        cov = self.sum_py - self.sum_p * self.sum_y / n
        var_p = (self.sum_pp - self.sum_p.square() / n).clamp_min(0)
        var_y = (self.sum_yy - self.sum_y.square() / n).clamp_min(0)
        return cov / (torch.sqrt(var_p * var_y) + CORR_EPS)

    def compute(self) -> dict[str, Tensor]:
        """Return ``c_nino34_m``, ``c_nino34_wm``, ``nino_rmse``, ``mse`` and the ``(L,)`` ``cor``."""
        cor = self.correlation()
        weights = lead_weights(cor.shape[0]).to(cor.device)
        return {
            "c_nino34_m": cor.mean(),
            "c_nino34_wm": (weights * cor).mean(),
            "nino_rmse": torch.sqrt(self.sum_sq_err / self.n_samples).mean(),
            "mse": self.field_sq_err / self.field_count,
            "cor": cor,
        }
