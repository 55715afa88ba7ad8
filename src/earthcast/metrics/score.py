"""Score saved forecasts: one function from arrays to a flat dictionary (used by ``earthcast score``).

Axis legend: ``n`` sample, ``s`` ensemble member, ``t`` lead time, ``h``/``w`` space, ``c`` channel.

``score_arrays`` checks options and shapes up front, then streams the samples through the metric
objects of this package in chunks (checking values chunk by chunk), so memory-mapped arrays
larger than RAM can be scored.

Ensembles (``ensemble=True``, ``pred`` ``(N, S, T, H, W[, C])``): every score of the kind is that
of the ensemble mean, and the ensemble itself adds ``crps`` (eCDF form), ``spread`` (root mean
ensemble variance), ``rmse`` (of the mean), ``spread_skill`` and ``spread_skill_corrected``
(``√((S+1)/S)·spread/rmse``, 1 for a calibrated ensemble), all in the units the kind scores in
(``[0, 1]`` for ``"sevir"``), and ``rank_histogram`` (relative frequency of the observation's rank
``0 … S`` among the members; flat for a calibrated ensemble). ``"sevir"`` ensembles also get, per
threshold τ, the Brier score of ``P(x ≥ τ)`` with its decomposition (``brier@τ``,
``reliability@τ``, ``resolution@τ``, ``uncertainty@τ``) and the reliability-diagram vectors
``bin_prob@τ``, ``bin_freq@τ``, ``bin_count@τ`` (10 probability bins; NaN where a bin is empty).

Kinds:

* ``"sevir"``: VIL. ``csi@τ, pod@τ, sucr@τ, bias@τ, hss@τ`` for the SEVIR thresholds and
  ``csi_m`` (aggregated with ``mode``), PreDiff's pooled CSI ``csi@τ_pool4``, ``csi_m_pool4``
  (and ``…_pool16``: frames max-pooled 4×4 / 16×16 first), plus pixel-mean ``mse`` and ``mae`` on
  the [0, 1] scale.
  Target pixels equal to 255 (byte units) or NaN are missing and excluded everywhere.
* ``"enso"``: min-max normalised SST on the 24 × 48 grid, no missing values.
  ``c_nino34_m, c_nino34_wm, nino_rmse, mse`` and the per-lead correlation ``cor``.
* ``"continuous"``: pixel-mean (or, with ``reduction="frame_sum"``, per-frame summed) ``mse`` and
  ``mae`` on the data's own scale and frame-wise
  ``ssim`` with ``data_range`` 1 (scale ``"01"``) or 255 (scale ``"255"``).

Every kind also reports ``scored_pixels`` and ``missing_pixels``: target pixels scored and left
out as missing (counts, not scores).
"""

from __future__ import annotations

import sys
from typing import Literal

import numpy as np
import torch
from einops import rearrange
from torch import Tensor
from torchmetrics import Metric
from tqdm.auto import tqdm

from earthcast.metrics.categorical import (
    POOL_SIZES,
    SEVIR_SCALE,
    SEVIR_THRESHOLDS,
    ContingencyScores,
    PooledCSI,
)
from earthcast.metrics.continuous import MAE, MSE, SSIM
from earthcast.metrics.enso import ENSO_GRID, NINO_WINDOW, EnsoScores

Kind = Literal["sevir", "enso", "continuous"]
ScaleName = Literal["01", "255"]
KINDS = ("sevir", "enso", "continuous")
SCALES = ("01", "255")
MODES = ("0", "1", "2")
REDUCTIONS = ("pixel_mean", "frame_sum")
SSIM_MIN_SIZE = 11
"""SSIM's default Gaussian window is 11 × 11, so frames must be at least that large."""


def score_arrays(
    pred: np.ndarray,
    target: np.ndarray,
    kind: Kind = "sevir",
    scale: ScaleName = "01",
    mode: str = "0",
    chunk_size: int = 16,
    progress: bool | None = None,
    ensemble: bool = False,
    reduction: str = "pixel_mean",
) -> dict[str, float | list[float]]:
    """Score forecasts against targets.

    Args:
        pred: ``(N, T, H, W)`` or ``(N, T, H, W, C)`` forecasts (a channel axis is added to 4-D
            input), or with ``ensemble`` ``(N, S, T, H, W[, C])`` members. Must be finite.
        target: same shape as ``pred``; NaN (and 255 in byte units for ``"sevir"``) is missing.
        kind: ``"sevir"``, ``"enso"`` or ``"continuous"`` (see the module docstring).
        scale: value scale of the arrays, ``"01"`` or ``"255"`` (bytes); ``"enso"`` needs ``"01"``.
        mode: aggregation of the categorical scores (``"sevir"`` only): ``"0"`` pooled,
            ``"1"`` per lead time (lists), ``"2"`` per lead time then averaged.
        chunk_size: samples per chunk.
        progress: show a tqdm bar; None shows it only when stderr is a terminal.
        ensemble: ``pred``'s second axis holds ensemble members (see the module docstring).
        reduction: ``"continuous"`` only: ``mse``/``mae`` as ``"pixel_mean"`` or ``"frame_sum"``
            (summed over each frame's pixels, then averaged: the N-body / Moving MNIST convention
            of the papers' tables and of ``earthcast test`` on those data sets).

    Returns:
        Flat dictionary of Python floats (scalars) and lists of floats (per-lead vectors), plus
        the integer counts ``scored_pixels`` and ``missing_pixels`` of the target.

    Raises:
        ValueError: unknown ``kind``/``scale``/``mode``, wrong ``ndim``, shape mismatch,
            non-finite predictions, a grid unsuitable for the kind, or an all-missing target.
    """
    mode = str(mode)
    _check_options(kind, scale, mode)
    if chunk_size < 1:
        raise ValueError(f"score_arrays: chunk_size must be a positive number of samples, got {chunk_size}")
    pred = _as_ensemble(pred) if ensemble else _as_5d(pred, "pred")
    target = _as_5d(target, "target")
    forecast_shape = tuple(pred.shape[:1] + pred.shape[2:]) if ensemble else tuple(pred.shape)
    _check_shapes(forecast_shape, tuple(target.shape), kind)
    if reduction not in REDUCTIONS:
        raise ValueError(f"score_arrays: unknown reduction {reduction!r}; use one of {', '.join(REDUCTIONS)}")
    if reduction != "pixel_mean" and kind != "continuous":
        raise ValueError(f"score_arrays: reduction={reduction!r} applies to kind='continuous' only")
    metrics = _build_metrics(kind, scale, mode, reduction)
    members_metrics = _ensemble_metrics(kind, pred.shape[1]) if ensemble else {}
    n_samples, n_valid = pred.shape[0], 0
    show = sys.stderr.isatty() if progress is None else progress
    for start in tqdm(
        range(0, n_samples, chunk_size), desc=f"scoring {kind}", unit="chunk", disable=not show
    ):
        p = _chunk(pred, start, chunk_size, "pred", allow_nan=False)
        t = _chunk(target, start, chunk_size, "target", allow_nan=True)
        if kind == "sevir":
            _check_sevir_scale(t, scale, start)
            _check_sevir_pred_scale(p, t, scale, start)
            p, t = _sevir_to_01(p, t, scale)
        elif kind == "enso" and bool(torch.isnan(t).any()):
            raise ValueError(
                "score_arrays: kind='enso' needs a complete target; it contains NaN "
                f"(in samples {start}–{start + len(t) - 1}). "
                "Fill missing cells, e.g. with the normalised zero anomaly."
            )
        n_valid += int((~torch.isnan(t)).sum())
        for metric in members_metrics.values():
            metric.update(p, t)  # p: (n, s, t, h, w, c)
        if ensemble:
            p = p.mean(dim=1)  # (n, t, h, w, c): the ensemble mean
        for metric in metrics.values():
            metric.update(p, t)
    if n_valid == 0:
        missing = "NaN or 255 (bytes)" if kind == "sevir" else "NaN"
        raise ValueError(
            f"score_arrays: every target pixel is missing ({missing}), so nothing can be scored. "
            "Check that the right target file was given and that it was not scaled twice."
        )
    result: dict[str, float | list[float]] = {}
    for name, metric in {**metrics, **members_metrics}.items():
        value = metric.compute()
        values = value if isinstance(value, dict) else {name: value}
        result.update({key: _to_python(v) for key, v in values.items()})
    # say how much of the target was left out: a data set whose valid maximum is coded 255 / 1.0
    # would otherwise lose its strongest pixels without a word
    result["scored_pixels"] = n_valid
    result["missing_pixels"] = int(np.prod(target.shape)) - n_valid
    return result


def _check_options(kind: str, scale: str, mode: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"score_arrays: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if scale not in SCALES:
        raise ValueError(
            f"score_arrays: unknown scale {scale!r}; use '01' for [0, 1] data or '255' for bytes"
        )
    if mode not in MODES:
        raise ValueError(
            f"score_arrays: unknown mode {mode!r}; use '0' (pooled), '1' (per lead) or '2' (lead mean)"
        )
    if kind == "enso" and scale != "01":
        raise ValueError("score_arrays: kind='enso' expects min-max normalised SST; pass scale='01'")


def _as_5d(array: np.ndarray, name: str) -> np.ndarray:
    """Forecasts or targets ``(N, T, H, W[, C])`` with the channel axis."""
    hint = "reshape it, e.g. add a sample axis with array[None]"
    return _with_channel_axis(array, name, 5, "(N, T, H, W) or (N, T, H, W, C)", hint)


def _as_ensemble(array: np.ndarray) -> np.ndarray:
    """Members ``(N, S, T, H, W[, C])`` with the channel axis."""
    layouts = "(N, S, T, H, W) or (N, S, T, H, W, C)"
    return _with_channel_axis(array, "pred", 6, layouts, "members go on the second axis", "an ensemble pred")


def _with_channel_axis(
    array, name: str, ndim: int, layouts: str, hint: str, what: str | None = None
) -> np.ndarray:
    """``array`` checked (``ndim`` dimensions, or one fewer without the channel axis; numbers),
    with the channel axis added when it has none."""
    if not hasattr(array, "ndim"):
        array = np.asarray(array)
    if array.ndim not in (ndim - 1, ndim):
        raise ValueError(
            f"score_arrays: {what or name} must be {layouts}, got {array.ndim}-D shape "
            f"{tuple(array.shape)}; {hint}"
        )
    _check_numeric(array, name)
    return array[..., np.newaxis] if array.ndim == ndim - 1 else array


def _check_numeric(array, name: str) -> None:
    dtype = np.asarray(array[:0]).dtype  # works for memory maps, lazy rows and tensors alike
    if dtype.kind not in "biuf":
        raise ValueError(
            f"score_arrays: {name} holds {dtype} values, not numbers; "
            "pass numeric arrays, e.g. array.astype(np.float32)"
        )


def _ensemble_metrics(kind: str, members: int) -> dict[str, Metric]:
    from earthcast.metrics.probabilistic import BrierScore, RankHistogram, ensemble_skill_metrics

    metrics = {**ensemble_skill_metrics(), "rank_histogram": RankHistogram()}
    if members < 2:  # a single member has no spread; its CRPS is its MAE
        del metrics["spread_skill"]
    if kind == "sevir":  # chunks are on the [0, 1] scale here; thresholds are VIL codes
        metrics["brier"] = BrierScore(SEVIR_THRESHOLDS, n_bins=10, scale=SEVIR_SCALE)
    return metrics


def _check_shapes(pred: tuple[int, ...], target: tuple[int, ...], kind: str) -> None:
    """``pred`` and ``target`` shapes (an ensemble's without its member axis) agree and suit ``kind``."""
    if pred != target:
        raise ValueError(
            f"score_arrays: pred shape {pred} differs from target shape {target}; they must match "
            "sample for sample (check the number of output frames and the layout NTHWC)"
        )
    _, t, h, w, _ = pred
    if kind == "enso" and ((h, w) != ENSO_GRID or t < NINO_WINDOW):
        raise ValueError(
            f"score_arrays: kind='enso' needs SST on the 24×48 grid with at least {NINO_WINDOW} months, "
            f"got T={t}, H×W={h}×{w}"
        )
    if kind == "continuous" and min(h, w) < SSIM_MIN_SIZE:
        raise ValueError(
            f"score_arrays: kind='continuous' computes SSIM with an 11×11 window; frames are {h}×{w}. "
            "Use larger frames or score them with MSE/MAE from earthcast.metrics directly"
        )


def _chunk(array: np.ndarray, start: int, size: int, name: str, allow_nan: bool) -> Tensor:
    # a copy: memory-mapped arrays are read-only, which torch.from_numpy warns about
    chunk = torch.from_numpy(np.array(array[start : start + size], dtype=np.float32))
    bad = torch.isinf(chunk) if allow_nan else ~torch.isfinite(chunk)
    if bool(bad.any()):
        sample = start + int(torch.nonzero(bad)[0, 0])
        what = "inf" if allow_nan else "NaN or inf"
        raise ValueError(
            f"score_arrays: {name} contains {what} (first in sample {sample}). "
            + (
                "Predictions must be finite: fix the model output or clip it (np.nan_to_num)."
                if not allow_nan
                else "Mark missing target pixels with NaN instead of inf."
            )
        )
    return chunk


def _check_sevir_scale(target: Tensor, scale: str, first: int) -> None:
    """VIL targets are bytes (integers up to 255) or bytes / 255; anything else would give CSI 0
    or meaningless thresholds without a word, so name the scale that fits."""
    observed = target[~torch.isnan(target)]
    if not observed.numel():
        return
    low, high = float(observed.min()), float(observed.max())
    where = f"targets of samples {first}…"
    if low < -0.01:
        raise ValueError(
            f"score_arrays: {where} go down to {low:g}; SEVIR scores need VIL bytes (--scale 255) or "
            "bytes / 255 (--scale 01). De-normalise standardised data first, or score it with "
            "--metrics continuous"
        )
    if scale == "01" and high > 1.0 + 1e-3:
        raise ValueError(
            f"score_arrays: {where} reach {high:g}, but scale '01' means VIL in [0, 1]; for bytes "
            "(0–255) pass --scale 255"
        )
    if scale == "255" and high <= 1.0 and bool(((observed > 0) & (observed < 1)).any()):
        raise ValueError(
            f"score_arrays: {where} lie in [0, 1] with fractional values, but scale '255' means VIL "
            "bytes; for data in [0, 1] pass --scale 01"
        )


PRED_OVERSHOOT_01 = 2.0
"""Forecasts on scale ``01`` may overshoot 1 a little (an unclamped network); twice the range is
no overshoot but bytes."""


def _check_sevir_pred_scale(pred: Tensor, target: Tensor, scale: str, first: int) -> None:
    """Forecasts on another scale than their targets (bytes scored as ``01`` are scaled twice and
    give a plausible-looking CSI near 0; [0, 1] forecasts against bytes never reach a threshold),
    named like the targets' check."""
    high = float(pred.max())
    where = f"forecasts of samples {first}…"
    if scale == "01" and high > PRED_OVERSHOOT_01:
        raise ValueError(
            f"score_arrays: {where} reach {high:g}, but scale '01' means VIL in [0, 1]; the forecasts "
            "look like bytes (0–255): bring them to the targets' scale (divide by 255), or score "
            "bytes against bytes with --scale 255"
        )
    observed = target[~torch.isnan(target)]
    targets_are_bytes = observed.numel() > 0 and float(observed.max()) > 1.0
    fractional = bool(((pred > 0) & (pred < 1)).any())
    if scale == "255" and targets_are_bytes and high <= 1.0 and fractional:
        raise ValueError(
            f"score_arrays: {where} lie in [0, 1] while the targets are VIL bytes (scale '255'); "
            "bring the forecasts to bytes (multiply by 255), or score both in [0, 1] with --scale 01"
        )


def _sevir_to_01(pred: Tensor, target: Tensor, scale: str) -> tuple[Tensor, Tensor]:
    """Bring SEVIR chunks to [0, 1] and mark missing target pixels (byte value 255) as NaN."""
    if scale == "255":
        pred, target = pred / SEVIR_SCALE, target / SEVIR_SCALE
    missing = target * SEVIR_SCALE >= SEVIR_SCALE - 0.5  # rounds to 255
    return pred, target.masked_fill(missing, torch.nan)


def _build_metrics(kind: str, scale: str, mode: str, reduction: str = "pixel_mean") -> dict[str, Metric]:
    if kind == "sevir":
        pooled = {
            f"pool{size}": PooledCSI(SEVIR_THRESHOLDS, size, mode=mode, scale=SEVIR_SCALE)
            for size in POOL_SIZES
        }
        return {
            "categorical": ContingencyScores(SEVIR_THRESHOLDS, mode=mode, scale=SEVIR_SCALE),
            **pooled,
            "mse": MSE(),
            "mae": MAE(),
        }
    if kind == "enso":
        return {"enso": EnsoScores()}
    data_range = 1.0 if scale == "01" else 255.0
    return {"mse": MSE(reduction), "mae": MAE(reduction), "ssim": SSIM(data_range=data_range)}


def _to_python(value: Tensor) -> float | list[float]:
    return float(value) if value.ndim == 0 else [float(v) for v in rearrange(value, "... -> (...)")]
