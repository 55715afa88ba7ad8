"""Energy error of N-body forecasts: PreDiff's E.MSE / E.MAE (SPEC §4.5).

Axis legend: ``b`` batch, ``s`` ensemble member, ``t`` lead time, ``h``/``w`` space, ``c`` channel.

The error is between the energy of the forecast and the (conserved) energy of its context:
``e_mse = mean (Ê(x̂) − E_ref)²`` and ``e_mae = mean |Ê(x̂) − E_ref|`` over forecasts. Generated
pixels carry no positions or velocities, so ``Ê`` is an energy estimator network
(:class:`~earthcast.models.prediff.knowledge.energy.EnergyEstimator`) applied to the forecast
frames. The reference ``E_ref`` is either given as energies ``(B,)`` (e.g. the true energy of the
last context frame, ``batch["meta"]["energy"]``) or as context frames ``(B, T_in, H, W, C)``,
whose energy the same estimator reads.

Ensembles ``(B, S, T, H, W, C)`` score every member against its context's reference (the mean
error over members, not the error of the ensemble mean). Without an estimator, ``update`` takes
energies directly: predictions ``(B,)`` or ``(B, S)`` and references ``(B,)``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from earthcast.metrics._base import SUM_DTYPE, StreamingMetric


class EnergyError(StreamingMetric):
    """Streaming ``e_mse`` / ``e_mae`` between forecast energies and context energies.

    Args:
        estimator: energy estimator ``(B, T, H, W, C) -> (B, 1)`` applied to frames; ``None``:
            ``update`` receives energies instead of frames. It is used frozen, in eval mode.
    """

    higher_is_better = False

    def __init__(self, estimator: nn.Module | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.estimator = estimator.requires_grad_(False).eval() if estimator is not None else None
        self.add_state("sum_sq", torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")
        self.add_state("sum_abs", torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")

    def update(self, pred: Tensor, reference: Tensor) -> None:
        """Accumulate the errors of a batch.

        Args:
            pred: forecast frames ``(B, T, H, W, C)`` / ensemble ``(B, S, T, H, W, C)`` (with an
                estimator), or forecast energies ``(B,)`` / ``(B, S)`` (without).
            reference: context energies ``(B,)``, or context frames ``(B, T_in, H, W, C)`` (with an
                estimator).
        """
        energy = self._forecast_energy(pred)  # (B, S)
        ref = self._reference_energy(reference)  # (B,)
        if ref.shape != energy.shape[:1]:
            raise ValueError(f"EnergyError: {energy.shape[0]} forecasts but {ref.shape[0]} references")
        error = energy.to(SUM_DTYPE) - rearrange(ref.to(SUM_DTYPE), "b -> b 1")  # (B, S)
        self.sum_sq += error.square().sum()
        self.sum_abs += error.abs().sum()
        self.count += error.numel()

    def compute(self) -> dict[str, Tensor]:
        """``{"e_mse": …, "e_mae": …}`` (NaN before any update)."""
        count = self.count if self.count > 0 else torch.full_like(self.count, float("nan"))
        return {"e_mse": self.sum_sq / count, "e_mae": self.sum_abs / count}

    @torch.no_grad()
    def _forecast_energy(self, pred: Tensor) -> Tensor:
        if self.estimator is None:
            if pred.ndim not in (1, 2):
                raise ValueError(
                    "EnergyError without an estimator takes energies (B,) or (B, S); got shape "
                    f"{tuple(pred.shape)} (pass estimator=... to score frames)"
                )
            return pred if pred.ndim == 2 else rearrange(pred, "b -> b 1")
        if pred.ndim == 5:
            pred = rearrange(pred, "b t h w c -> b 1 t h w c")  # one member
        if pred.ndim != 6:
            raise ValueError(f"EnergyError: forecasts must be (B, [S,] T, H, W, C), got {tuple(pred.shape)}")
        b = pred.shape[0]
        self.estimator.eval()  # a parent's .train() may have flipped it
        energy = self.estimator(rearrange(pred, "b s t h w c -> (b s) t h w c"))  # (B·S, 1)
        return rearrange(energy, "(b s) 1 -> b s", b=b)  # (B, S)

    @torch.no_grad()
    def _reference_energy(self, reference: Tensor) -> Tensor:
        if reference.ndim == 1:
            return reference
        if self.estimator is None or reference.ndim != 5:
            raise ValueError(
                "EnergyError: references are energies (B,) or, with an estimator, context frames "
                f"(B, T_in, H, W, C); got shape {tuple(reference.shape)}"
            )
        return self.estimator.eval()(reference)[:, 0]  # (B,)
