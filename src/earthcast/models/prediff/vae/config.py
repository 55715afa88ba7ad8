"""``VAEConfig``: the single source of defaults of the PreDiff frame autoencoder, plus presets.

Defaults are the reference SEVIR-LR VAE (SPEC §5.2, ``PD:scripts/vae/sevirlr/cfg.yaml``): a
Stable-Diffusion-style KL autoencoder mapping one ``128×128×1`` frame to a ``16×16×64`` latent,
trained with L1 + 1e-6·KL and a PatchGAN hinge discriminator switched on after 50 001 steps.

Presets (``PRESETS`` / :func:`get_preset`):

* ``vae_sevirlr``: the reference sizes (84 499 393 parameters, SPEC: 84.50 M).
* ``vae_nbody``: 64×64 N-body MNIST frames; widths (64, 128, 256) so the factor is **4** and the
  latent is ``16×16×16``. The latent grid matches SEVIR-LR's (16×16, so denoiser presets carry
  over) and, like the reference (128²·1 = 16²·64), the latent holds as many numbers as the frame
  (64²·1 = 16²·16). Its discriminator is the reference one (fits 64×64 frames).
* ``vae_tiny``: toy sizes for tests (widths (8, 16), factor 2, latent 4 channels, 4 groups, a
  2-layer discriminator of 8 filters that accepts frames from 16×16 up).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VAEConfig:
    """Hyper-parameters of :class:`~earthcast.models.prediff.vae.AutoencoderKL` and its objective.

    Attributes:
        in_channels: channels ``C`` of an input frame.
        out_channels: channels of a reconstructed frame (and of the discriminator's input).
        latent_channels: channels ``c`` of the latent; the encoder emits ``2c`` (mean, log-variance).
        block_widths: width of each encoder stage (the decoder mirrors them); a stride-2
            downsampling follows every stage but the last, so the spatial factor is
            ``2 ** (len(block_widths) - 1)``.
        encoder_blocks: ResNet blocks per encoder stage (reference 2).
        decoder_blocks: ResNet blocks per decoder stage (reference 3 = encoder + 1, as in SD).
        mid_attention: single-head spatial self-attention between the two mid ResNet blocks.
        norm_groups: GroupNorm groups; a width not divisible by it uses the largest divisor of
            the width below ``norm_groups`` (see :func:`group_count`).
        norm_eps: GroupNorm epsilon.
        dropout: dropout between the two convolutions of each ResNet block.
        logvar_clamp: ``(min, max)`` clamp of the posterior log-variance.
        kl_weight: weight of the KL term of the loss.
        rec_logvar_init: initial value ``s`` of the global log-variance of the reconstruction
            likelihood ``|x − x̂| / e^s + s`` (0: plain L1).
        learn_rec_logvar: train ``s`` (``False`` = reference: ``s`` is not in its optimiser,
            so it stays at its initial value).
        use_discriminator: train with the PatchGAN adversarial loss at all.
        disc_start: generator optimiser step from which the adversarial terms are switched on.
        disc_weight: factor on the adaptive generator weight.
        disc_layers: stride-2 convolutions of the PatchGAN (reference 3; the net also has one
            stride-1 layer and the output convolution, see ``discriminator.py``).
        disc_filters: filters of the first discriminator layer (doubling per layer, max ×8).
        disc_max_adaptive_weight: clamp of the adaptive weight before ``disc_weight``.
    """

    in_channels: int = 1
    out_channels: int = 1
    latent_channels: int = 64
    block_widths: tuple[int, ...] = (128, 256, 512, 512)
    encoder_blocks: int = 2
    decoder_blocks: int = 3
    mid_attention: bool = True
    norm_groups: int = 32
    norm_eps: float = 1e-6
    dropout: float = 0.0
    logvar_clamp: tuple[float, float] = (-30.0, 20.0)
    kl_weight: float = 1e-6
    rec_logvar_init: float = 0.0
    learn_rec_logvar: bool = False
    use_discriminator: bool = True
    disc_start: int = 50001
    disc_weight: float = 0.5
    disc_layers: int = 3
    disc_filters: int = 64
    disc_max_adaptive_weight: float = 1e4

    def __post_init__(self) -> None:
        # YAML and checkpoints give lists: store tuples so configs compare and hash
        object.__setattr__(self, "block_widths", tuple(int(w) for w in self.block_widths))
        object.__setattr__(self, "logvar_clamp", tuple(float(v) for v in self.logvar_clamp))
        _validate(self)

    @property
    def downsample_factor(self) -> int:
        """Spatial factor between a frame and its latent."""
        return 2 ** (len(self.block_widths) - 1)

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` of the latent of a ``height × width`` frame."""
        return height // self.downsample_factor, width // self.downsample_factor

    def replace(self, **changes: Any) -> VAEConfig:
        """A copy with ``changes`` applied (unknown keys raise a ValueError listing valid ones)."""
        unknown = set(changes) - set(field_names())
        if unknown:
            raise ValueError(f"unknown VAEConfig keys {sorted(unknown)}; valid keys: {field_names()}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists), as stored in checkpoints."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> VAEConfig:
        """Inverse of :meth:`to_dict` (unknown keys raise a ValueError listing valid ones)."""
        return cls().replace(**raw)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(VAEConfig)]


def group_count(channels: int, groups: int) -> int:
    """GroupNorm groups for ``channels``: ``groups`` if it divides them, else its largest divisor below.

    Keeps the reference's 32 groups at every reference width while letting toy or odd widths
    (e.g. 48 → 24 groups, 8 → 8) build without a per-width setting.
    """
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


def _validate(cfg: VAEConfig) -> None:
    problems = []
    positive = ("in_channels", "out_channels", "latent_channels", "encoder_blocks", "decoder_blocks")
    problems += [f"{k}={getattr(cfg, k)} must be >= 1" for k in positive if getattr(cfg, k) < 1]
    if not cfg.block_widths or min(cfg.block_widths) < 1:
        problems.append(f"block_widths={cfg.block_widths} must be a non-empty tuple of positive widths")
    if cfg.norm_groups < 1 or cfg.norm_eps <= 0:
        problems.append(f"need norm_groups >= 1 and norm_eps > 0, got {cfg.norm_groups}, {cfg.norm_eps}")
    if not 0 <= cfg.dropout < 1:
        problems.append(f"dropout={cfg.dropout} must be in [0, 1)")
    if len(cfg.logvar_clamp) != 2 or cfg.logvar_clamp[0] >= cfg.logvar_clamp[1]:
        problems.append(f"logvar_clamp={cfg.logvar_clamp} must be (min, max) with min < max")
    if cfg.kl_weight < 0 or cfg.disc_weight < 0 or cfg.disc_max_adaptive_weight <= 0:
        problems.append("kl_weight and disc_weight must be >= 0 and disc_max_adaptive_weight > 0")
    if cfg.disc_start < 0 or cfg.disc_layers < 1 or cfg.disc_filters < 1:
        problems.append("need disc_start >= 0, disc_layers >= 1 and disc_filters >= 1")
    if problems:
        raise ValueError("invalid VAEConfig: " + "; ".join(problems))


# ------------------------------------------------------------------------------------ presets

PRESETS: dict[str, Callable[[], VAEConfig]] = {}


def _preset(fn: Callable[[], VAEConfig]) -> Callable[[], VAEConfig]:
    PRESETS[fn.__name__] = fn
    return fn


@_preset
def vae_sevirlr() -> VAEConfig:
    """Reference SEVIR-LR VAE: 128×128×1 → 16×16×64 (84 499 393 parameters)."""
    return VAEConfig()


@_preset
def vae_nbody() -> VAEConfig:
    """N-body MNIST VAE: 64×64×1 → 16×16×16, factor 4 (see the module docstring)."""
    return VAEConfig(latent_channels=16, block_widths=(64, 128, 256))


@_preset
def vae_tiny() -> VAEConfig:
    """Toy VAE for tests: factor 2, 4 latent channels, GAN from step 2 with a 2-layer critic."""
    return VAEConfig(
        latent_channels=4,
        block_widths=(8, 16),
        norm_groups=4,
        disc_start=2,
        disc_layers=2,
        disc_filters=8,
    )


def get_preset(name: str) -> VAEConfig:
    """Config of preset ``name`` (case-insensitive; ValueError listing the presets if unknown)."""
    key = name.lower()
    if key not in PRESETS:
        raise ValueError(f"unknown VAE preset '{name}'. Valid names: {', '.join(sorted(PRESETS))}")
    return PRESETS[key]()
