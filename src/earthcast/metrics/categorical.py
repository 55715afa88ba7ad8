"""Contingency-table scores over several thresholds: CSI, POD, SUCR, BIAS and HSS.

Axis legend: ``b`` batch, ``t`` lead time, ``h``/``w`` space, ``c`` channel, ``k`` threshold,
``q`` contingency-table cell (hits, misses, false alarms, correct negatives).

Contract (SPEC §4.1–4.2):

1. Inputs ``(B, T, H, W, C)`` are multiplied by ``scale`` to reach threshold units (VIL bytes
   for SEVIR: data scaled to [0, 1] times 255).
2. Optionally, each frame of both fields is max-pooled with kernel = stride = ``pool_size``
   ("CSI-pool4/16" of PreDiff).
3. Both fields are binarised with ``x >= τ``; hits ``H``, misses ``M``, false alarms ``F`` and
   correct negatives ``N`` are summed per threshold (mode ``"0"``) or per lead and threshold
   (modes ``"1"``/``"2"``).
4. Scores, with ε = 1e-4: ``CSI = H/(H+M+F+ε)``, ``POD = H/(H+M+ε)``, ``SUCR = H/(H+F+ε)``,
   ``BIAS = (H+F)/(H+M+ε)``, ``HSS = 2(HN − MF)/((H+M)(M+N) + (H+F)(F+N) + ε)``.

Deliberate differences from the Earthformer reference:

* **Missing pixels are excluded from every count.** A pixel is missing when the target is NaN
  or equals ``missing_value`` (in threshold units, e.g. 255 for SEVIR), or when the prediction
  is NaN. The reference instead counts NaN as "no event" in both fields, which inflates the
  correct negatives and can create misses/false alarms out of missing data.
* **BIAS is the plain frequency bias** ``(H+F)/(H+M+ε)``; the reference returns ``(BIAS/ln 2)²``.
  In mode ``"2"`` the per-lead biases are averaged arithmetically.
* **Pooling ignores missing pixels**: they are set to −∞ in both fields before the max-pool, so
  a pooled cell takes the maximum over its valid pixels and is missing only if all of its
  pixels are. Frames whose size is not a multiple of ``pool_size`` keep a partial last window
  (``ceil_mode``) rather than dropping the border.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor

from earthcast.metrics._base import COUNT_DTYPE, StreamingMetric, check_fields

SEVIR_THRESHOLDS: tuple[int, ...] = (16, 74, 133, 160, 181, 219)
"""SEVIR VIL thresholds in encoded byte units (≈ 0.15, 0.78, 3.53, 7.07, 12.14, 32.23 kg m⁻²).

Source: Veillette, Samsi & Mattioli, "SEVIR: A Storm Event Imagery Dataset for Deep Learning
Applications in Radar and Satellite Meteorology", NeurIPS 2020, and the benchmark code of
github MIT-AI-Accelerator/neurips-2020-sevir; reused by Earthformer and PreDiff (SPEC §3.1, §4.1).
"""
SEVIR_MISSING_VALUE = 255
"""VIL byte value that marks a missing pixel (SEVIR catalogue: values 0–254 valid, 255 missing)."""
SEVIR_SCALE = 255.0
"""Multiplier from the "01" scaled VIL used for training back to byte units."""
EPS = 1e-4
"""ε added to score denominators, as in the reference scores (SPEC §4.1)."""

Mode = Literal["0", "1", "2"]
SCORE_NAMES = ("csi", "pod", "sucr", "bias", "hss")


def pool_frames(field: Tensor, valid: Tensor, pool_size: int) -> tuple[Tensor, Tensor]:
    """Non-overlapping max-pool of every frame, ignoring missing pixels.

    Args:
        field: ``(B, T, H, W, C)`` values.
        valid: ``(B, T, H, W, C)`` boolean mask of usable pixels.
        pool_size: kernel size and stride.

    Returns:
        The pooled field and its validity mask, both ``(B, T, ⌈H/s⌉, ⌈W/s⌉, C)``. A pooled cell is
        valid if any of its pixels is.
    """
    if pool_size == 1:
        return field, valid
    t = field.shape[1]
    field = field.masked_fill(~valid, float("-inf"))
    stacked = rearrange([field, valid.to(field.dtype)], "f b t h w c -> (f b t) c h w")
    pooled = F.max_pool2d(stacked, pool_size, stride=pool_size, ceil_mode=True)
    field, valid = rearrange(pooled, "(f b t) c h w -> f b t h w c", f=2, t=t)
    return field, valid > 0


def contingency_counts(pred: Tensor, target: Tensor, valid: Tensor, thresholds: Tensor) -> Tensor:
    """Per-lead contingency tables for each threshold.

    Args:
        pred: ``(B, T, H, W, C)`` forecast in threshold units.
        target: ``(B, T, H, W, C)`` observation in threshold units.
        valid: ``(B, T, H, W, C)`` boolean mask; pixels outside it are not counted.
        thresholds: ``(K,)`` event thresholds; an event is ``x >= τ``.

    Returns:
        ``(4, T, K)`` int64 counts: hits, misses, false alarms, correct negatives.
    """
    n_valid = reduce(valid.to(COUNT_DTYPE), "b t h w c -> t", "sum")
    tables = []
    for tau in thresholds:
        forecast_yes = (pred >= tau) & valid
        observed_yes = (target >= tau) & valid
        hits = reduce((forecast_yes & observed_yes).to(COUNT_DTYPE), "b t h w c -> t", "sum")
        n_forecast = reduce(forecast_yes.to(COUNT_DTYPE), "b t h w c -> t", "sum")
        n_observed = reduce(observed_yes.to(COUNT_DTYPE), "b t h w c -> t", "sum")
        misses, false_alarms = n_observed - hits, n_forecast - hits
        correct_negatives = n_valid - hits - misses - false_alarms
        tables.append(torch.stack([hits, misses, false_alarms, correct_negatives]))  # (4, T)
    return rearrange(tables, "k q t -> q t k")


def scores_from_counts(counts: Tensor, eps: float = EPS) -> dict[str, Tensor]:
    """Skill scores from contingency tables.

    Args:
        counts: ``(4, ...)`` hits, misses, false alarms, correct negatives.
        eps: added to every denominator.

    Returns:
        ``{"csi", "pod", "sucr", "bias", "hss"}``, each of shape ``counts.shape[1:]`` (float64).
    """
    h, m, f, n = counts.to(torch.float64)
    return {
        "csi": h / (h + m + f + eps),
        "pod": h / (h + m + eps),
        "sucr": h / (h + f + eps),
        "bias": (h + f) / (h + m + eps),
        "hss": 2 * (h * n - m * f) / ((h + m) * (m + n) + (h + f) * (f + n) + eps),
    }


def threshold_key(score: str, tau: float) -> str:
    """Dictionary key of a per-threshold score, e.g. ``csi@16`` or ``pod@0.5``."""
    return f"{score}@{tau:g}"


class ContingencyScores(StreamingMetric):
    """Streaming CSI / POD / SUCR / BIAS / HSS at several thresholds (SPEC §4.1–4.2).

    See the module docstring for the exact contract and how missing pixels are treated.

    Args:
        thresholds: event thresholds in threshold units (``x * scale >= τ``).
        mode: ``"0"`` pool counts over all pixels, frames and samples and score once;
            ``"1"`` score every lead time (vectors of length ``T``); ``"2"`` score every lead
            time, then average over lead times.
        pool_size: non-overlapping max-pool kernel applied to each frame before thresholding
            (1 = no pooling).
        scale: inputs are multiplied by this to reach threshold units (255 for "01" VIL).
        missing_value: target value (in threshold units) that marks a missing pixel, or None.
        n_leads: number of lead times for modes 1/2; if None it is taken from the first batch.
        eps: added to every score denominator.

    Example:
        >>> metric = ContingencyScores(SEVIR_THRESHOLDS, missing_value=SEVIR_MISSING_VALUE)
        >>> metric.update(pred, target)  # (B, T, H, W, C) in [0, 1]
        >>> metric.compute()["csi_m"]
    """

    higher_is_better = None  # CSI/POD/SUCR/HSS: higher is better; BIAS: closest to 1

    def __init__(
        self,
        thresholds: Sequence[float],
        mode: Mode = "0",
        pool_size: int = 1,
        scale: float = SEVIR_SCALE,
        missing_value: float | None = None,
        n_leads: int | None = None,
        eps: float = EPS,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        mode = str(mode)
        if mode not in ("0", "1", "2"):
            raise ValueError(f"ContingencyScores: mode must be '0', '1' or '2', got {mode!r}")
        if len(thresholds) == 0:
            raise ValueError("ContingencyScores: give at least one threshold")
        if int(pool_size) != pool_size or pool_size < 1:
            raise ValueError(f"ContingencyScores: pool_size must be a positive integer, got {pool_size}")
        self.thresholds = tuple(float(tau) for tau in thresholds)
        self.mode, self.pool_size, self.scale = mode, int(pool_size), float(scale)
        self.missing_value, self.eps = missing_value, eps
        k = len(self.thresholds)
        if mode == "0":
            self.add_state("counts", torch.zeros(4, k, dtype=COUNT_DTYPE), dist_reduce_fx="sum")
        else:
            shape = None if n_leads is None else (4, n_leads, k)
            self._add_lazy_state("counts", COUNT_DTYPE, shape)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Accumulate contingency tables.

        Args:
            pred: ``(B, T, H, W, C)`` forecast (``pred * scale`` is in threshold units).
            target: ``(B, T, H, W, C)`` observation, same scale.
        """
        check_fields(pred, target, "ContingencyScores")
        pred, target = pred.float() * self.scale, target.float() * self.scale
        valid = ~(torch.isnan(pred) | torch.isnan(target))
        if self.missing_value is not None:
            valid &= target != self.missing_value
        pred, valid_pred = pool_frames(pred, valid, self.pool_size)
        target, _ = pool_frames(target, valid, self.pool_size)
        thresholds = torch.tensor(self.thresholds, device=pred.device)
        counts = contingency_counts(pred, target, valid_pred, thresholds)  # (4, T, K)
        if self.mode == "0":
            self.counts += reduce(counts, "q t k -> q k", "sum")
        else:
            self._sized_state("counts", tuple(counts.shape), counts.device).add_(counts)

    def compute(self) -> dict[str, Tensor]:
        """Return ``csi@τ, pod@τ, sucr@τ, bias@τ, hss@τ`` for every threshold, and ``csi_m``.

        Mode ``"1"`` gives tensors of shape ``(T,)`` (``csi_m`` is the mean over thresholds per
        lead); modes ``"0"`` and ``"2"`` give scalars.
        """
        scores = scores_from_counts(self.counts, self.eps)  # each (K,) or (T, K)
        if self.mode == "2":
            scores = {name: reduce(value, "t k -> k", "mean") for name, value in scores.items()}
        result: dict[str, Tensor] = {}
        for i, tau in enumerate(self.thresholds):
            for name in SCORE_NAMES:
                result[threshold_key(name, tau)] = scores[name][..., i]
        result["csi_m"] = scores["csi"].mean(dim=-1)
        return result


POOL_SIZES = (4, 16)
"""PreDiff's pooled CSI neighbourhoods (CSI-pool4, CSI-pool16, SPEC §5.8)."""


class PooledCSI(ContingencyScores):
    """CSI on max-pooled frames, keyed by the pool size: ``csi@τ_pool{s}`` per threshold and
    ``csi_m_pool{s}`` (PreDiff's "CSI-pool4/16"), next to the pixel-level scores of an unpooled
    :class:`ContingencyScores` in the same metric dictionary.

    Only CSI is reported: on pooled frames it measures whether an event is forecast within an
    ``s``-pixel neighbourhood, which is what the papers compare; POD/SUCR/BIAS of pooled frames
    are kept by :class:`ContingencyScores` with ``pool_size`` for who needs them.

    Args: those of :class:`ContingencyScores`; ``pool_size`` must be at least 2.
    """

    def __init__(self, thresholds: Sequence[float], pool_size: int, **kwargs) -> None:
        if not isinstance(pool_size, int) or pool_size < 2:
            raise ValueError(f"PooledCSI: pool_size must be an integer >= 2, got {pool_size!r}")
        super().__init__(thresholds, pool_size=pool_size, **kwargs)

    def compute(self) -> dict[str, Tensor]:
        suffix = f"_pool{self.pool_size}"
        return {key + suffix: value for key, value in super().compute().items() if key.startswith("csi")}
