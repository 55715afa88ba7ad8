"""Diffusion components of PreDiff: noise schedule, samplers, sampling loop and guidance rule.

Separate objects (STYLE convention 8): :class:`NoiseSchedule` owns the forward process; samplers
(:class:`DDPMSampler`, :class:`DDIMSampler`) follow the ``set_timesteps`` / ``step`` contract of
``sampler_base`` and return a :class:`SamplerOutput`; :func:`sample_latents` runs the loop with a
caller-supplied ``denoiser_fn``; :class:`KnowledgeGuidance` is a ``mean_shift`` plug-in.

Axis legend: ``b`` batch; ``...`` the latent's remaining axes (``t h w c`` for PreDiff); the
diffusion step ``t`` is not a frame axis.
"""

from __future__ import annotations

from typing import Any

from earthcast.models.prediff.diffusion.ddim import DDIMSampler
from earthcast.models.prediff.diffusion.ddpm import DDPMSampler
from earthcast.models.prediff.diffusion.guidance import KnowledgeGuidance
from earthcast.models.prediff.diffusion.sampler_base import MeanShift, Sampler, SamplerOutput, make_timesteps
from earthcast.models.prediff.diffusion.sampling import sample_latents
from earthcast.models.prediff.diffusion.schedule import NoiseSchedule, Posterior

SAMPLERS: dict[str, type[Sampler]] = {"ddpm": DDPMSampler, "ddim": DDIMSampler}


def create_sampler(name: str, schedule: NoiseSchedule, **kwargs: Any) -> Sampler:
    """A sampler by (case-insensitive) name: ``ddpm`` | ``ddim``; ``kwargs`` go to its constructor."""
    key = name.lower()
    if key not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[key](schedule, **kwargs)


__all__ = [
    "SAMPLERS",
    "DDIMSampler",
    "DDPMSampler",
    "KnowledgeGuidance",
    "MeanShift",
    "NoiseSchedule",
    "Posterior",
    "Sampler",
    "SamplerOutput",
    "create_sampler",
    "make_timesteps",
    "sample_latents",
]
