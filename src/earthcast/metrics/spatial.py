"""Scale-aware verification: Fractions Skill Score and radially averaged power spectra.

Axis legend: ``b`` batch, ``t`` lead time, ``h``/``w`` space, ``c`` channel, ``k`` threshold,
``l`` neighbourhood scale, ``r`` radial wavenumber, ``n`` frames (``b t c`` flattened).

* **FSS** (Roberts & Lean, 2008, Mon. Wea. Rev. 136, 78–97): binarise both fields with
  ``x >= τ``, turn each binary frame into a fraction field with an ``n × n`` box filter (zero
  padding, output the same size as the input), then
  ``FSS = 1 − Σ(P_f − P_o)² / Σ(P_f² + P_o²)``, the sums running over all pixels and frames.
  The two sums are the streaming state, so the score is exact under merging. If neither field
  has an event the score is undefined and returned as NaN. NaN pixels are non-events.
* **RAPSD**: the power spectrum ``|FFT(x)|² / (H·W)`` of each frame averaged over rings of equal
  wavenumber. Forecasts that blur lose power at high wavenumbers compared with the target.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor

from earthcast.metrics._base import SUM_DTYPE, StreamingMetric, check_fields


def box_fractions(binary: Tensor, size: int) -> Tensor:
    """Fraction of events in the ``size × size`` neighbourhood of every pixel.

    Args:
        binary: ``(N, K, H, W)`` 0/1 fields.
        size: neighbourhood width in pixels. An even window spans ``size // 2`` pixels before
            and ``size // 2 − 1`` after the centre (the ``scipy.ndimage.uniform_filter`` convention).

    Returns:
        ``(N, K, H, W)`` fractions; outside the frame counts as "no event" (zero padding).
    """
    if size == 1:
        return binary
    before, after = size // 2, (size - 1) // 2
    padded = F.pad(binary, (before, after, before, after))  # (N, K, H + size − 1, W + size − 1)
    return F.avg_pool2d(padded, size, stride=1)  # (N, K, H, W)


class FSS(StreamingMetric):
    """Streaming Fractions Skill Score for several thresholds and neighbourhood sizes.

    Args:
        thresholds: event thresholds in threshold units (``x * scale >= τ``).
        scales: neighbourhood widths in pixels.
        scale: inputs are multiplied by this to reach threshold units.
    """

    higher_is_better = True

    def __init__(
        self, thresholds: Sequence[float], scales: Sequence[int], scale: float = 1.0, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        if any(int(n) != n for n in scales):
            raise ValueError(f"FSS: scales are neighbourhood widths in whole pixels, got {list(scales)}")
        if len(thresholds) == 0 or len(scales) == 0 or min(scales) < 1:
            raise ValueError("FSS: give at least one threshold and at least one positive neighbourhood scale")
        self.thresholds = tuple(float(tau) for tau in thresholds)
        self.scales = tuple(int(n) for n in scales)
        self.scale = float(scale)
        shape = (len(self.thresholds), len(self.scales))
        self.add_state("sq_diff", torch.zeros(shape, dtype=SUM_DTYPE), dist_reduce_fx="sum")
        self.add_state("reference", torch.zeros(shape, dtype=SUM_DTYPE), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Accumulate the FSS sums.

        Args:
            pred: ``(B, T, H, W, C)`` forecast.
            target: ``(B, T, H, W, C)`` observation.
        """
        check_fields(pred, target, "FSS")
        thresholds = torch.tensor(self.thresholds, device=pred.device)
        events = []
        for field in (pred, target):
            field = rearrange(field.float() * self.scale, "b t h w c -> (b t c) 1 h w")
            events.append((field >= rearrange(thresholds, "k -> 1 k 1 1")).float())  # (N, K, H, W)
        for j, size in enumerate(self.scales):
            frac_pred, frac_target = (box_fractions(e, size) for e in events)
            sq_diff = reduce((frac_pred - frac_target).square(), "n k h w -> k", "sum")
            reference = reduce(frac_pred.square() + frac_target.square(), "n k h w -> k", "sum")
            self.sq_diff[:, j] += sq_diff.to(SUM_DTYPE)
            self.reference[:, j] += reference.to(SUM_DTYPE)

    def compute(self) -> dict[str, Tensor]:
        """Return ``{"fss@τ/n": score}`` for every threshold ``τ`` and neighbourhood ``n``."""
        fss = torch.where(self.reference > 0, 1 - self.sq_diff / self.reference, torch.nan)  # (K, L)
        return {
            f"fss@{tau:g}/{size}": fss[i, j]
            for i, tau in enumerate(self.thresholds)
            for j, size in enumerate(self.scales)
        }


def radial_bins(height: int, width: int, device: torch.device | None = None) -> tuple[Tensor, int]:
    """Integer radial wavenumber of every FFT coefficient of an ``H × W`` frame.

    Wavenumbers are in cycles per ``max(H, W)`` pixels and rounded to the nearest integer; the
    last kept ring is the Nyquist wavenumber ``max(H, W) // 2``.

    Returns:
        ``(H, W)`` int64 ring index and the number of rings ``R = max(H, W) // 2 + 1``.
    """
    size = max(height, width)
    ky = torch.fft.fftfreq(height, device=device) * size
    kx = torch.fft.fftfreq(width, device=device) * size
    radius = torch.sqrt(rearrange(ky, "h -> h 1").square() + rearrange(kx, "w -> 1 w").square())
    return torch.round(radius).long(), size // 2 + 1


def rapsd(field: Tensor) -> Tensor:
    """Radially averaged power spectral density.

    Args:
        field: ``(..., H, W)`` real frames.

    Returns:
        ``(..., R)`` mean of ``|FFT(field)|² / (H·W)`` over each ring of integer wavenumber
        ``0 … max(H, W) // 2`` (cycles per domain); corners beyond Nyquist are left out.
    """
    height, width = field.shape[-2:]
    field = field if field.is_floating_point() else field.float()
    power = torch.fft.fft2(field).abs().square() / (height * width)  # (..., H, W)
    bins, n_rings = radial_bins(height, width, field.device)
    power = rearrange(power, "... h w -> ... (h w)")
    bins = rearrange(bins, "h w -> (h w)")
    keep = bins < n_rings
    power, bins = power[..., keep], bins[keep]
    sums = power.new_zeros((*power.shape[:-1], n_rings)).index_add_(-1, bins, power)  # (..., R)
    return sums / torch.bincount(bins, minlength=n_rings).to(power.dtype)


class PowerSpectrum(StreamingMetric):
    """Mean RAPSD of forecast and target frames (diagnoses blurring / loss of small scales)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._add_lazy_state("pred_sum", SUM_DTYPE)  # (R,)
        self._add_lazy_state("target_sum", SUM_DTYPE)  # (R,)
        self.add_state("n_frames", torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Accumulate spectra of every frame and channel.

        Args:
            pred: ``(B, T, H, W, C)`` forecast.
            target: ``(B, T, H, W, C)`` observation.
        """
        check_fields(pred, target, "PowerSpectrum")
        for name, field in (("pred_sum", pred), ("target_sum", target)):
            spectra = rapsd(rearrange(field, "b t h w c -> (b t c) h w"))  # (N, R)
            state = self._sized_state(name, (spectra.shape[-1],), field.device)
            state += reduce(spectra.to(SUM_DTYPE), "n r -> r", "sum")
        self.n_frames += pred.shape[0] * pred.shape[1] * pred.shape[4]

    def compute(self) -> dict[str, Tensor]:
        """Return ``{"wavenumber": (R,), "pred": (R,), "target": (R,)}`` mean spectra."""
        n_rings = self.pred_sum.shape[0]
        return {
            "wavenumber": torch.arange(n_rings, device=self.pred_sum.device),
            "pred": self.pred_sum / self.n_frames,
            "target": self.target_sum / self.n_frames,
        }
