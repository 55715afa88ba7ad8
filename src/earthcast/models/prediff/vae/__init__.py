"""PreDiff's first stage: a frame-wise KL autoencoder, its PatchGAN critic and its loss (SPEC §5.2).

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel.

``AutoencoderKL(get_preset("vae_sevirlr"))`` maps ``(B, T, 128, 128, 1)`` frames to latents
``(B, T, 16, 16, 64)``; its training system is ``earthcast.training.vae_module.VAESystem``.
"""

from earthcast.models.prediff.vae.autoencoder import AutoencoderKL as AutoencoderKL
from earthcast.models.prediff.vae.config import PRESETS as PRESETS
from earthcast.models.prediff.vae.config import VAEConfig as VAEConfig
from earthcast.models.prediff.vae.config import get_preset as get_preset
from earthcast.models.prediff.vae.discriminator import NLayerDiscriminator as NLayerDiscriminator
from earthcast.models.prediff.vae.distribution import DiagonalGaussian as DiagonalGaussian
from earthcast.models.prediff.vae.loss import VAELoss as VAELoss
