"""The sampler contract shared by DDPM and DDIM (diffusers-style ``set_timesteps`` / ``step``).

Contract:

1. ``sampler.set_timesteps(n)`` chooses ``n`` of the T training steps and stores them, descending,
   in ``sampler.timesteps`` (LongTensor ``(n,)``).
2. For each ``t`` in ``sampler.timesteps``: ``out = sampler.step(eps_pred, t, z_t, generator, mean_shift)``
   maps z_t to z_{t'} where t' is the next (smaller) chosen step, or the clean sample after the
   last one; ``out`` is a :class:`SamplerOutput`.
3. ``mean_shift(z_t, t, mean, std)`` (optional) returns a tensor that is *added* to the transition
   mean before noise is drawn, or ``None`` to leave the step untouched (so a disabled guidance is
   bit-identical to no guidance). ``t`` is the LongTensor ``(b,)``; ``std`` is the posterior std
   √β̃ of the (possibly strided) transition, ``(b, 1, …)`` — see each sampler for how it relates to
   the noise actually added. This is where knowledge control plugs in (SPEC §5.6).

Spacing of the chosen steps (``timestep_spacing``):

* ``leading``: t ∈ {0, k, 2k, …, (n−1)k} with k = T // n — ends exactly at t = 0, so the last step
  is the ordinary DDPM t = 0 step (the diffusers default);
* ``trailing``: t = round(T − i·T/n) − 1 for i = 0 … n−1 — starts at t = T−1, which matches the
  pure-noise start better when n ≪ T (Lin et al. 2024, "Common diffusion noise schedules and sample
  steps are flawed", Table 2).
With n = T both give every step T−1 … 0.

Axis legend: ``b`` batch; ``...`` the latent's remaining axes (``t h w c`` for PreDiff). ``t`` in
signatures is the diffusion step, not a frame axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from earthcast.models.prediff.diffusion.noise import NoiseSource, standard_normal
from earthcast.models.prediff.diffusion.schedule import _LOG_VARIANCE_FLOOR, NoiseSchedule

TimestepSpacing = Literal["leading", "trailing"]
_SPACINGS = ("leading", "trailing")
MeanShift = Callable[[Tensor, Tensor, Tensor, Tensor], "Tensor | None"]


@dataclass(frozen=True)
class SamplerOutput:
    """What one reverse step produced.

    Attributes:
        prev_sample: z_{t'} ``(b, ...)``, the input of the next step (the clean sample after the last).
        pred_z0: the ε-implied clean estimate ẑ_0 ``(b, ...)`` (never clipped; SPEC §5.3).
        mean: the transition mean ``(b, ...)`` *including* any mean shift.
        std: the std of the noise added to ``mean``, ``(b, 1, …)``; zero on the last step.
    """

    prev_sample: Tensor
    pred_z0: Tensor
    mean: Tensor
    std: Tensor


def make_timesteps(num_train_timesteps: int, num_inference_steps: int, spacing: TimestepSpacing) -> Tensor:
    """The chosen diffusion steps, descending LongTensor ``(num_inference_steps,)``."""
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(f"num_inference_steps={num_inference_steps} must lie in [1, {num_train_timesteps}]")
    if spacing == "leading":
        stride = num_train_timesteps // num_inference_steps
        steps = torch.arange(num_inference_steps) * stride
        return steps.flip(0).long()
    if spacing == "trailing":
        stride = num_train_timesteps / num_inference_steps
        steps = torch.round(num_train_timesteps - torch.arange(num_inference_steps) * stride) - 1
        return steps.long()
    raise ValueError(f"timestep_spacing={spacing!r} (choose one of {list(_SPACINGS)})")


class Sampler:
    """Base class: step bookkeeping and the shared parts of a step (ẑ_0, then "shift the mean, add noise").

    Subclasses supply only :meth:`_transition` (the step's mean and noise std).

    Args:
        schedule: the training noise schedule.
        timestep_spacing: ``leading`` or ``trailing`` (module docstring).
    """

    name = "base"  # registry name, overridden by subclasses

    def __init__(self, schedule: NoiseSchedule, timestep_spacing: TimestepSpacing = "leading") -> None:
        if timestep_spacing not in _SPACINGS:
            raise ValueError(f"timestep_spacing={timestep_spacing!r} (choose one of {list(_SPACINGS)})")
        self.schedule = schedule
        self.timestep_spacing = timestep_spacing
        self.set_timesteps(schedule.num_train_timesteps)

    def set_timesteps(self, num_inference_steps: int) -> None:
        """Choose the steps of the reverse chain; stored descending in ``self.timesteps``."""
        self.num_inference_steps = num_inference_steps
        self.timesteps = make_timesteps(
            self.schedule.num_train_timesteps, num_inference_steps, self.timestep_spacing
        )
        chosen = self.timesteps.tolist()
        self._prev = dict(zip(chosen, [*chosen[1:], -1]))  # −1 marks "clean sample"

    def previous_timestep(self, t: int | Tensor) -> int:
        """The step a transition from ``t`` lands on (−1 after the last chosen step)."""
        t = int(t)
        if t not in self._prev:
            raise ValueError(f"t={t} is not one of the {self.num_inference_steps} steps set by set_timesteps")
        return self._prev[t]

    def step(
        self,
        eps_pred: Tensor,
        t: int | Tensor,
        z_t: Tensor,
        generator: NoiseSource = None,
        mean_shift: MeanShift | None = None,
    ) -> SamplerOutput:
        """One reverse step z_t → z_{t'}: ẑ_0, the subclass's transition, then :meth:`_finish`.

        Args:
            eps_pred: predicted noise ε̂(z_t, t), ``(b, ...)``.
            t: the current step, one of ``self.timesteps`` (int or 0-d tensor).
            z_t: the current latent, ``(b, ...)``.
            generator: source of the step's noise (not drawn from when the step adds none).
            mean_shift: optional ``(z_t, t, mean, std) -> Tensor | None`` added to the mean.

        Returns:
            :class:`SamplerOutput` with ``prev_sample`` ``(b, ...)``.
        """
        t = int(t)
        abar_t, abar_prev = self._alphas_cumprod_pair(t)
        # ẑ_0 = (z_t − √(1−ᾱ_t) ε̂)/√ᾱ_t from the ε-prediction, not clipped (reference: clip_denoised=False)
        pred_z0 = self.schedule.predict_z0(z_t, eps_pred, t)
        mean, noise_std, guide_std = self._transition(eps_pred, z_t, pred_z0, abar_t, abar_prev)
        return self._finish(z_t, t, pred_z0, mean, noise_std, guide_std, generator, mean_shift)

    def _transition(
        self, eps_pred: Tensor, z_t: Tensor, pred_z0: Tensor, abar_t: float, abar_prev: float
    ) -> tuple[Tensor, float, float]:
        """The sampler-specific part of a step: (transition mean ``(b, ...)``, noise std, guide std)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Init arguments (the serialisable config), with the schedule nested."""
        return {"name": self.name, "schedule": self.schedule.to_dict(), **self._init_kwargs()}

    def _init_kwargs(self) -> dict[str, Any]:
        return {"timestep_spacing": self.timestep_spacing}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._init_kwargs().items())
        return f"{type(self).__name__}({args}, num_inference_steps={self.num_inference_steps})"

    # ----------------------------------------------------------------- shared algebra
    def _alphas_cumprod_pair(self, t: int) -> tuple[float, float]:
        """(ᾱ_t, ᾱ_{t'}) in float64 python floats; ᾱ of the clean sample (t' = −1) is 1."""
        abar = self.schedule.alphas_cumprod
        t_prev = self.previous_timestep(t)
        return float(abar[t]), (float(abar[t_prev]) if t_prev >= 0 else 1.0)

    @staticmethod
    def _strided_posterior_variance(abar_t: float, abar_prev: float) -> float:
        """β̃ of the strided transition t → t': β' = 1 − ᾱ_t/ᾱ_{t'}, β̃ = β'(1 − ᾱ_{t'})/(1 − ᾱ_t).

        With t' = t − 1 this is exactly the schedule's β̃_t (Ho et al. Eq. 7).
        """
        beta = 1.0 - abar_t / abar_prev
        return beta * (1.0 - abar_prev) / (1.0 - abar_t)

    @staticmethod
    def _clipped_std(variance: float) -> float:
        # the reference takes exp(½ · log(max(β̃, 1e-20))), so β̃ = 0 gives 1e-10, not 0
        return math.exp(0.5 * math.log(max(variance, _LOG_VARIANCE_FLOOR)))

    def _finish(
        self,
        z_t: Tensor,
        t: int,
        pred_z0: Tensor,
        mean: Tensor,
        noise_std: float,
        guide_std: float,
        generator: NoiseSource,
        mean_shift: MeanShift | None,
    ) -> SamplerOutput:
        """Shared tail: (1) optional mean shift, (2) add noise unless this is the last step."""
        per_sample = (z_t.shape[0],) + (1,) * (z_t.ndim - 1)
        if mean_shift is not None:
            t_batch = torch.full((z_t.shape[0],), t, dtype=torch.long, device=z_t.device)
            shift = mean_shift(z_t, t_batch, mean, z_t.new_full(per_sample, guide_std))
            if shift is not None:
                mean = mean + shift
        is_last = self.previous_timestep(t) < 0
        if is_last or noise_std == 0.0:
            # no draw: keeps the generator state untouched when no noise is needed
            std = z_t.new_zeros(per_sample)
            return SamplerOutput(prev_sample=mean, pred_z0=pred_z0, mean=mean, std=std)
        std = z_t.new_full(per_sample, noise_std)
        noise = standard_normal(z_t.shape, generator, z_t.device, z_t.dtype)
        return SamplerOutput(prev_sample=mean + std * noise, pred_z0=pred_z0, mean=mean, std=std)
