"""``DDIMSampler``: the non-Markovian sampler of Song et al. (2021), any number of steps.

Step t → t' (Song et al. Eq. 12), with ᾱ_{t'} = 1 after the last chosen step:

    ẑ_0 = (z_t − √(1−ᾱ_t) ε̂) / √ᾱ_t
    σ_t = η · √((1−ᾱ_{t'})/(1−ᾱ_t)) · √(1 − ᾱ_t/ᾱ_{t'})      (Eq. 16; σ_t² = η² β̃ of the strided chain)
    z_{t'} = √ᾱ_{t'} ẑ_0 + √(1−ᾱ_{t'}−σ_t²) ε̂ + σ_t ξ,   ξ ~ N(0, I)

η = 0 is deterministic; η = 1 with all T steps is *exactly* the DDPM ancestral transition (same mean
and variance; the tests check this path by path). The default spacing is ``leading`` (see
``sampler_base``); ``trailing`` starts at t = T−1.

Axis legend: ``b`` batch; ``...`` the latent's remaining axes (``t h w c`` for PreDiff). ``t`` in
signatures is the diffusion step, not a frame axis.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from earthcast.models.prediff.diffusion.sampler_base import Sampler, TimestepSpacing
from earthcast.models.prediff.diffusion.schedule import NoiseSchedule


class DDIMSampler(Sampler):
    """DDIM sampler.

    Args:
        schedule: the training :class:`~earthcast.models.prediff.diffusion.schedule.NoiseSchedule`.
        eta: η ≥ 0, the stochasticity (0 deterministic, 1 DDPM-like).
        timestep_spacing: ``leading`` (default) | ``trailing``.

    The ``std`` handed to ``mean_shift`` is the posterior std √β̃ of the strided transition — the
    η = 1 noise std — whatever η is, so guidance keeps its strength for deterministic (η = 0)
    sampling, where the actual noise std is zero.
    """

    name = "ddim"

    def __init__(
        self, schedule: NoiseSchedule, eta: float = 0.0, timestep_spacing: TimestepSpacing = "leading"
    ) -> None:
        if eta < 0:
            raise ValueError(f"eta={eta} must be >= 0")
        self.eta = float(eta)
        super().__init__(schedule, timestep_spacing)

    def _init_kwargs(self) -> dict[str, Any]:
        return {"eta": self.eta, **super()._init_kwargs()}

    def _transition(
        self, eps_pred: Tensor, z_t: Tensor, pred_z0: Tensor, abar_t: float, abar_prev: float
    ) -> tuple[Tensor, float, float]:
        """Mean and σ_t of the DDIM step t → t' (Eq. 12); noise is drawn only when η > 0."""
        # σ_t (Eq. 16) = η √β̃ of the strided transition
        posterior_variance = self._strided_posterior_variance(abar_t, abar_prev)
        sigma = self.eta * math.sqrt(posterior_variance)
        # mean = √ᾱ_{t'} ẑ_0 + "direction pointing to z_t"; clamp guards round-off when η ≈ 1
        direction = math.sqrt(max(1.0 - abar_prev - sigma**2, 0.0))
        mean = math.sqrt(abar_prev) * pred_z0 + direction * eps_pred
        # the step adds σ_t ξ (none on the last step, where σ_t = 0 anyway); guidance sees √β̃
        return mean, sigma, self._clipped_std(posterior_variance)
