"""``sample_latents``: the reverse-diffusion loop from pure noise, for any sampler.

The network never appears here: the caller passes ``denoiser_fn(z_t, t) -> ε̂`` that closes over the
conditioning (context latents, classifier-free scale, …), and an optional ``mean_shift`` (e.g.
:class:`~earthcast.models.prediff.diffusion.guidance.KnowledgeGuidance`) that the sampler applies to
every transition mean.

Axis legend: ``b`` batch; ``...`` the latent's remaining axes (``t h w c`` for PreDiff). ``t`` is
the diffusion step, handed to ``denoiser_fn`` as a LongTensor ``(b,)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from earthcast.models.prediff.diffusion.noise import NoiseSource, standard_normal
from earthcast.models.prediff.diffusion.sampler_base import MeanShift, Sampler

DenoiserFn = Callable[[Tensor, Tensor], Tensor]


@torch.no_grad()
def sample_latents(
    denoiser_fn: DenoiserFn,
    shape: Sequence[int],
    sampler: Sampler,
    num_inference_steps: int,
    generator: NoiseSource = None,
    mean_shift: MeanShift | None = None,
    progress: bool = False,
    noise: Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Run the reverse chain z_T ~ N(0, I) → z_0.

    Runs under ``torch.no_grad`` (the guidance object re-enables grad for its own gradient).

    Args:
        denoiser_fn: ``(z_t (b, ...), t (b,)) -> ε̂ (b, ...)``.
        shape: latent shape ``(b, ...)``, e.g. ``(b, t, h, w, c)``.
        sampler: a DDPM/DDIM sampler; its ``set_timesteps(num_inference_steps)`` is called here.
        num_inference_steps: length of the chain.
        generator: seeds the initial noise and every step's noise (reproducible samples); a
            sequence gives every context its own stream (``diffusion/noise.py``).
        mean_shift: optional ``(z_t, t, mean, std) -> Tensor | None`` added to every transition mean.
        progress: show a tqdm bar over the steps.
        noise: optional initial z_T ``shape``; drawn from ``generator`` when omitted.
        device, dtype: of the drawn initial noise (ignored when ``noise`` is given).

    Returns:
        The final latent z_0, ``shape``.
    """
    z = _initial_noise(shape, generator, noise, device, dtype)  # (b, ...)
    sampler.set_timesteps(num_inference_steps)
    for t in tqdm(sampler.timesteps.tolist(), desc="sampling", disable=not progress, leave=False):
        t_batch = torch.full((z.shape[0],), t, dtype=torch.long, device=z.device)  # (b,)
        eps = denoiser_fn(z, t_batch)  # (b, ...)
        z = sampler.step(eps, t, z, generator=generator, mean_shift=mean_shift).prev_sample  # (b, ...)
    return z


def _initial_noise(
    shape: Sequence[int],
    generator: NoiseSource,
    noise: Tensor | None,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> Tensor:
    if noise is not None:
        if tuple(noise.shape) != tuple(shape):
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
        return noise
    return standard_normal(shape, generator, device, dtype)
