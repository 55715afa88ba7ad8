"""What PredRNN and E3D-LSTM share: space-to-depth patches, the frame fed at each step, the rollout.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel, ``p1``/``p2`` the rows and
columns inside one patch.

Both official codes (PredRNN: Wang et al. NeurIPS 2017 / TPAMI 2022; E3D-LSTM: Wang et al. ICLR
2019) follow one recipe, written down here once:

1. **Patching.** A frame ``(H, W, C)`` is cut into ``p × p`` patches stacked on the channel axis,
   ``(H/p, W/p, p²C)``, so the recurrent cells run at ``1/p`` resolution (``reshape_patch`` in
   the official codes).
2. **One recurrence over ``T_in + T_out - 1`` steps.** Step ``t`` reads frame ``t`` and predicts
   frame ``t + 1``; the last ``T_out`` predictions are the forecast.
3. **The frame read at step ``t``** (:class:`FrameFeeder`) is the observed frame for
   ``t < T_in`` and the previous prediction afterwards. In training, with targets, scheduled
   sampling replaces a prediction by the true frame with probability ``p`` (drawn per sample and
   step, :class:`~earthcast.models.baselines._base.ScheduledSampling`); in ``reverse`` mode
   (PredRNN-V2) context frames ``1 … T_in-1`` may also be replaced by predictions.

Channel rule when ``C_in != C_out``: a fed-back frame must have ``C_in`` channels. Its first
``k = min(C_in, C_out)`` channels come from the prediction (or the true target); the remaining
``C_in - k`` channels (covariates that are never forecast) are copied from the last observed frame
(or, for context steps, from that step's observed frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from torch import Tensor

from earthcast.models.baselines._base import (
    BaselineForecaster,
    SamplingMode,
    ScheduledSampling,
    ShapeConfig,
    truth_mask,
)


@dataclass(frozen=True)
class RolloutConfig(ShapeConfig):
    """Fields shared by the ST-LSTM family (on top of :class:`ShapeConfig`).

    Attributes:
        patch_size: side ``p`` of the space-to-depth patches; must divide ``height`` and ``width``.
        sampling_mode: scheduled-sampling mode in training (``none``, ``teacher_forcing``,
            ``linear`` or ``reverse``). Default ``linear``, as in both official training scripts.
        sampling_steps: optimiser steps over which the truth probability decays to 0 (the
            official scripts: start 1.0, decrement 2e-5 per step, i.e. 50 000 steps).
        sampling_reverse_start: ``reverse`` only: probability of feeding a true context frame at
            step 0, rising to 1 over ``sampling_steps``.
    """

    patch_size: int = 4
    sampling_mode: SamplingMode = "linear"
    sampling_steps: int = 50_000
    sampling_reverse_start: float = 0.5

    def validate(self) -> None:
        name = type(self).__name__
        if self.patch_size < 1 or self.height % self.patch_size or self.width % self.patch_size:
            raise ValueError(
                f"invalid {name}: patch_size={self.patch_size} must divide height={self.height} and "
                f"width={self.width}; choose a patch_size that divides both (1 always does)"
            )
        if not 0.0 <= self.sampling_reverse_start <= 1.0:
            raise ValueError(
                f"invalid {name}: sampling_reverse_start={self.sampling_reverse_start} not in [0, 1]"
            )
        self.sampling  # noqa: B018  (builds ScheduledSampling, which checks mode and steps)

    @property
    def sampling(self) -> ScheduledSampling:
        return ScheduledSampling(self.sampling_mode, self.sampling_steps, self.sampling_reverse_start)


#: Preset overrides common to PredRNN and E3D-LSTM; each model adds its own ``hidden`` to ``small``.
#: ENSO uses the official Moving-MNIST settings at 12 → 14 months on the 24×48 grid.
ENSO_PRESET: dict[str, Any] = {"in_len": 12, "out_len": 14, "height": 24, "width": 48}
#: N-body 10 → 10 at 32×32 on CPU: 8×8 patches (a 4×4 latent grid) keep one fwd+bwd of a batch of 16
#: near 1 s on 2 threads; sampling decays over 2 000 steps to suit short CPU runs.
SMALL_PRESET: dict[str, Any] = {
    "in_len": 10,
    "out_len": 10,
    "height": 32,
    "width": 32,
    "patch_size": 8,
    "num_layers": 2,
    "kernel_size": 3,
    "sampling_steps": 2_000,
}
TINY_PRESET: dict[str, Any] = {  # 4 → 3 frames of 16×16, like every other *_tiny preset
    "in_len": 4,
    "out_len": 3,
    "hidden": 8,
    "num_layers": 2,
    "kernel_size": 3,
    "patch_size": 2,
    "height": 16,
    "width": 16,
}


def to_patches(frame: Tensor, patch: int) -> Tensor:
    """Space-to-depth, channels-first: ``(B, H, W, C)`` → ``(B, p²C, H/p, W/p)``."""
    return rearrange(frame, "b (h p1) (w p2) c -> b (p1 p2 c) h w", p1=patch, p2=patch)


def from_patches(z: Tensor, patch: int) -> Tensor:
    """Inverse of :func:`to_patches`: ``(B, p²C, H/p, W/p)`` → ``(B, H, W, C)``."""
    return rearrange(z, "b (p1 p2 c) h w -> b (h p1) (w p2) c", p1=patch, p2=patch)


class FrameFeeder:
    """Chooses the frame read at each rollout step (see the module docstring, item 3).

    Truth masks are drawn once per forward, at construction: ``(B, L, 1, 1, 1)`` floats where 1
    means "feed the true frame". Without targets (evaluation) nothing is drawn and the feeder is
    deterministic: observed frames while they last, then the model's own predictions.
    """

    def __init__(
        self, x: Tensor, targets: Tensor | None, out_len: int, sampling: ScheduledSampling, step: int
    ) -> None:
        b, t_in = x.shape[:2]
        self.x, self.targets, self.t_in, self.out_len = x, targets, t_in, out_len
        self.context_mask: Tensor | None = None  # None: always the observed context frame
        self.forecast_mask: Tensor | None = None  # None: always the prediction
        if targets is None:
            return
        p_context = sampling.context_probability(step)
        if p_context < 1.0:
            self.context_mask = truth_mask(p_context, b, t_in - 1, x.device).to(x.dtype)
        p_forecast = sampling.forecast_probability(step)
        if p_forecast > 0.0:
            self.forecast_mask = truth_mask(p_forecast, b, out_len, x.device).to(x.dtype)

    @property
    def num_steps(self) -> int:
        """``T_in + T_out - 1``: the last step predicts the last target frame."""
        return self.t_in + self.out_len - 1

    def frame(self, t: int, prediction: Tensor | None) -> Tensor:
        """The frame ``(B, H, W, C_in)`` read at step ``t``.

        ``prediction`` ``(B, H, W, C_out)`` is the model's frame ``t`` (``None`` at step 0).
        """
        if t < self.t_in:
            observed = self.x[:, t]  # (B, H, W, C_in)
            if t == 0 or self.context_mask is None or prediction is None:
                return observed
            return _merge(observed, prediction, self.context_mask[:, t - 1], observed)
        covariates = self.x[:, -1]  # (B, H, W, C_in): channels >= C_out persist from the last observation
        if self.forecast_mask is None:
            return _merge(prediction, prediction, None, covariates)
        truth = self.targets[:, t - self.t_in]  # (B, H, W, C_out)
        return _merge(truth, prediction, self.forecast_mask[:, t - self.t_in], covariates)


def _merge(truth: Tensor, prediction: Tensor, mask: Tensor | None, covariates: Tensor) -> Tensor:
    """``(B, H, W, C_in)``: the first ``k`` channels ``mask·truth + (1-mask)·prediction``, then covariates."""
    k = min(covariates.shape[-1], prediction.shape[-1])
    main = prediction[..., :k] if mask is None else mask * truth[..., :k] + (1 - mask) * prediction[..., :k]
    if k == covariates.shape[-1]:
        return main
    return torch.cat([main, covariates[..., k:]], dim=-1)  # (B, H, W, C_in)


class RolloutForecaster(BaselineForecaster):
    """Base of PredRNN and E3D-LSTM: the autoregressive loop; subclasses define one step.

    Subclasses implement ``_initial_state(x)`` (any object, built from the input's batch, device
    and dtype), ``_step(patches, state) -> (patches_out, state)`` mapping
    ``(B, p²C_in, H/p, W/p)`` → ``(B, p²C_out, H/p, W/p)``, and optionally ``_end_rollout(state)``.
    """

    accepts_targets = True
    config: RolloutConfig

    def forward(self, x: Tensor, targets: Tensor | None = None, step: int = 0) -> Tensor:
        """Forecast ``x (B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``.

        With ``targets (B, T_out, H, W, C_out)`` (training), true frames are fed back following the
        config's scheduled sampling at optimiser step ``step``; without, the forecast is free-running.
        """
        self.check_input(x)
        self.check_targets(targets)
        c = self.config
        feeder = FrameFeeder(x, targets, c.out_len, c.sampling, step)
        state = self._initial_state(x)
        predictions: list[Tensor] = []
        prediction = None
        for t in range(feeder.num_steps):
            frame = feeder.frame(t, prediction)  # (B, H, W, C_in)
            z, state = self._step(to_patches(frame, c.patch_size), state)  # (B, p²C_out, H/p, W/p)
            prediction = from_patches(z, c.patch_size)  # (B, H, W, C_out): frame t + 1
            predictions.append(prediction)
        self._end_rollout(state)
        return torch.stack(predictions[-c.out_len :], dim=1)  # (B, T_out, H, W, C_out)

    def _initial_state(self, x: Tensor) -> Any:
        raise NotImplementedError

    def _step(self, patches: Tensor, state: Any) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def _end_rollout(self, state: Any) -> None:
        """Hook after the last step (PredRNN-V2 collects its decoupling loss here)."""
