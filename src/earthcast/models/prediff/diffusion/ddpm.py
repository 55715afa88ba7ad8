"""``DDPMSampler``: ancestral sampling from the Gaussian posterior (Ho et al. 2020, Algorithm 2).

This is the sampler of the PreDiff reference (SPEC §5.3): ε-parameterisation, posterior mean from
the predicted ẑ_0 (no clipping), variance β̃_t with its log clipped at 1e-20, no noise on the last
step.

Exactness: with ``num_inference_steps = T`` (the default) every step is the trained transition. A
smaller ``num_inference_steps`` runs the *strided* chain t → t' over the chosen steps with betas
re-derived from the trained ᾱ: β' = 1 − ᾱ_t/ᾱ_{t'} (the "respacing" of Nichol & Dhariwal 2021,
§4). It keeps the marginals q(z_t) of the chosen steps but the ε-network was trained only for
one-step posteriors, so use DDIM for short chains.

Axis legend: ``b`` batch; ``...`` the latent's remaining axes (``t h w c`` for PreDiff). ``t`` in
signatures is the diffusion step, not a frame axis.
"""

from __future__ import annotations

import math

from torch import Tensor

from earthcast.models.prediff.diffusion.sampler_base import Sampler


class DDPMSampler(Sampler):
    """Ancestral DDPM sampler (see the module docstring for the strided variant).

    Args:
        schedule: the training :class:`~earthcast.models.prediff.diffusion.schedule.NoiseSchedule`.
        timestep_spacing: ``leading`` | ``trailing``; only matters when the chain is strided.

    The ``std`` handed to ``mean_shift`` equals the noise std of the step (√β̃, clipped at 1e-10).
    """

    name = "ddpm"

    def _transition(
        self, eps_pred: Tensor, z_t: Tensor, pred_z0: Tensor, abar_t: float, abar_prev: float
    ) -> tuple[Tensor, float, float]:
        """Posterior mean and std of the ancestral step t → t'."""
        # posterior mean μ̃ = c1·ẑ_0 + c2·z_t with the (strided) β' = 1 − ᾱ_t/ᾱ_{t'} (Ho et al. Eq. 7)
        beta = 1.0 - abar_t / abar_prev
        coef_z0 = beta * math.sqrt(abar_prev) / (1.0 - abar_t)
        coef_zt = (1.0 - abar_prev) * math.sqrt(1.0 - beta) / (1.0 - abar_t)
        mean = coef_z0 * pred_z0 + coef_zt * z_t
        # variance β̃ (log clipped at 1e-20); the base step adds the noise (none on the last step)
        std = self._clipped_std(self._strided_posterior_variance(abar_t, abar_prev))
        return mean, std, std
