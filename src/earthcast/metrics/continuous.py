"""Point-wise continuous scores: MSE, MAE (two reduction conventions) and frame-wise SSIM.

Axis legend: ``b`` batch, ``t`` lead time, ``h``/``w`` space, ``c`` channel.

Reduction conventions (SPEC §4.3):

* ``"pixel_mean"``: mean over every element (SEVIR, ENSO; Earthformer reports it ×1e-3 / ×1e-4).
* ``"frame_sum"``: per-frame sum of the errors, averaged over frames, i.e. the pixel mean × H × W
  (N-body MNIST and Moving MNIST tables).

Target pixels that are NaN are excluded from the error and from the element count. A NaN in the
prediction where the target is valid is *not* masked and makes the score NaN, on purpose: a
forecast must not hide broken output.
"""

from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange, reduce
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from earthcast.metrics._base import SUM_DTYPE, StreamingMetric, check_fields

Reduction = Literal["pixel_mean", "frame_sum"]


class _PointwiseError(StreamingMetric):
    """Streaming mean of a point-wise error, optionally per lead time.

    Args:
        reduction: ``"pixel_mean"`` or ``"frame_sum"`` (pixel mean × H × W).
        per_lead: if True, :meth:`compute` returns a ``(T,)`` vector (one score per lead time).
        n_leads: number of lead times when ``per_lead``; taken from the first batch if None.
    """

    higher_is_better = False

    def __init__(
        self,
        reduction: Reduction = "pixel_mean",
        per_lead: bool = False,
        n_leads: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if reduction not in ("pixel_mean", "frame_sum"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'pixel_mean' or 'frame_sum'")
        self.reduction, self.per_lead = reduction, per_lead
        if per_lead:
            shape = None if n_leads is None else (n_leads,)
            self._add_lazy_state("total", SUM_DTYPE, shape)  # Σ error × (H·W if frame_sum), per lead
            self._add_lazy_state("count", SUM_DTYPE, shape)  # number of valid elements, per lead
        else:
            self.add_state("total", torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")
            self.add_state("count", torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")

    def _pointwise(self, diff: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Accumulate errors.

        Args:
            pred: ``(B, T, H, W, C)`` forecast.
            target: ``(B, T, H, W, C)`` observation; NaN marks missing pixels.
        """
        check_fields(pred, target, type(self).__name__)
        _, t, h, w, _ = pred.shape
        valid = ~torch.isnan(target)
        error = self._pointwise(pred.to(SUM_DTYPE) - target.to(SUM_DTYPE)).masked_fill(~valid, 0.0)
        factor = h * w if self.reduction == "frame_sum" else 1
        total = reduce(error, "b t h w c -> t", "sum") * factor
        count = reduce(valid.to(SUM_DTYPE), "b t h w c -> t", "sum")
        if self.per_lead:
            self._sized_state("total", (t,), pred.device).add_(total)
            self._sized_state("count", (t,), pred.device).add_(count)
        else:
            self.total += total.sum()
            self.count += count.sum()

    def compute(self) -> Tensor:
        """Return the score: a scalar, or ``(T,)`` if ``per_lead``."""
        return self.total / self.count


class MSE(_PointwiseError):
    """Streaming mean squared error (see :class:`_PointwiseError` for the arguments)."""

    def _pointwise(self, diff: Tensor) -> Tensor:
        return diff.square()


class MAE(_PointwiseError):
    """Streaming mean absolute error (see :class:`_PointwiseError` for the arguments)."""

    def _pointwise(self, diff: Tensor) -> Tensor:
        return diff.abs()


class SSIM(StreamingMetric):
    """Mean structural similarity over all frames (torchmetrics' Gaussian 11×11, σ = 1.5 default).

    Each frame is an image ``(C, H, W)``; the score is the average over all ``B·T`` frames seen.
    NaNs are not supported.

    Args:
        data_range: value range of the data (1.0 for [0, 1] data, 255.0 for bytes).
        **ssim_kwargs: passed to
            :func:`torchmetrics.functional.image.structural_similarity_index_measure`
            (e.g. ``gaussian_kernel``, ``sigma``, ``kernel_size``, ``k1``, ``k2``).
    """

    higher_is_better = True

    def __init__(self, data_range: float = 1.0, **ssim_kwargs) -> None:
        metric_kwargs = {key: ssim_kwargs.pop(key) for key in list(ssim_kwargs) if key in _METRIC_KWARGS}
        super().__init__(**metric_kwargs)
        self.data_range, self.ssim_kwargs = float(data_range), ssim_kwargs
        self.add_state("total", torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Accumulate per-frame SSIM.

        Args:
            pred: ``(B, T, H, W, C)`` forecast.
            target: ``(B, T, H, W, C)`` observation.
        """
        check_fields(pred, target, "SSIM")
        frames_pred = rearrange(pred.float(), "b t h w c -> (b t) c h w")
        frames_target = rearrange(target.float(), "b t h w c -> (b t) c h w")
        per_frame = structural_similarity_index_measure(
            frames_pred, frames_target, data_range=self.data_range, reduction="none", **self.ssim_kwargs
        )  # (B·T,)
        self.total += per_frame.to(SUM_DTYPE).sum()
        self.count += per_frame.numel()

    def compute(self) -> Tensor:
        """Return the mean SSIM over all frames."""
        return self.total / self.count


_METRIC_KWARGS = ("compute_on_cpu", "dist_sync_on_step", "process_group", "dist_sync_fn", "sync_on_compute")
