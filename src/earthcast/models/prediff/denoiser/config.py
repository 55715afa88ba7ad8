"""Configs of the PreDiff latent networks: the Earthformer-UNet denoiser and the alignment network U_φ.

Shapes are ``(T, H, W, C)`` of the *latent* grid (``t`` frames, ``h``/``w`` latent pixels, ``c``
latent channels). Both networks are built from the same units (SPEC §5.4, §5.5), so they share one
frozen base config; :class:`DenoiserConfig` adds the context length and the zero-initialised output
projection, :class:`AlignmentConfig` the readout width. Presets are registered by name:
``get_denoiser_config("prediff_sevirlr")``, ``get_alignment_config("alignment_tiny")``.

Time-block sharing (decided, ``share_time_block_per_level=True`` in every preset): the reference
applies *one* time-conditioned ResNet block per level and path at each of the ``depth`` steps. We
keep that: the published 136.82 M-parameter model and its checkpoints only exist in that form, and
a separate block per step would add 111 M parameters (+81 %, all in 3×3×3 convolutions) to the
SEV-LR denoiser with no reported benefit. ``False`` builds one block per step for experiments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from earthcast._registry import Registry
from earthcast.models.prediff.denoiser.resnet3d import group_count
from earthcast.nn.cuboid.patterns import SELF_PATTERNS

Shape4 = tuple[int, int, int, int]

_CHOICES: dict[str, tuple[str, ...]] = {
    "activation": ("gelu", "leaky", "relu", "silu"),
    "pos_embed": ("t+h+w", "t+hw"),
    "padding_type": ("ignore", "zeros", "nearest"),
    "attention_backend": ("auto", "sdpa", "eager"),
}


@dataclass(frozen=True)
class LatentBackboneConfig:
    """Options shared by the denoiser and the alignment network.

    Attributes:
        target_len: frames of the noisy future latent ``z_t``.
        latent_hw: latent grid ``(h, w)``. latent_channels: latent channels ``c``.
        base_units: width after ``first_proj`` (level 0).
        block_units: widths of all levels; ``None`` → ``base_units · downsample^i``.
        depth: (time-ResNet → cuboid stack) steps per level; its length is the number of levels.
        downsample: spatial patch-merging factor between levels (time is never merged).
        num_heads: attention heads (every level width must be divisible by it).
        pattern: registered cuboid self-attention pattern (``axial`` in the reference).
        dropout: attention, projection and FFN dropout, and the dropout inside ``first_proj``.
        time_block_dropout: dropout inside the time-conditioned ResNet blocks (reference 0).
        activation: FFN activation.
        time_embed_dim: width of the sinusoidal timestep features (reference: ``base_units``).
        time_hidden_dim: width of the timestep MLP output fed to every time block (reference 4×).
        share_time_block_per_level: one time block per level and path, applied at every step
            (the reference); ``False``: one per step. See the module docstring.
        pos_embed: learned space-time positional embedding after ``first_proj``.
        padding_type: cuboid / patch-merging padding for non-divisible grids.
        norm_groups: GroupNorm groups in the ResNet blocks when the width is divisible by it,
            otherwise one group per channel (SPEC §5.4: 65 channels → 65 groups). Level widths
            must keep ≥ 2 channels per group: a per-channel GroupNorm follows the additive time
            embedding and would cancel it exactly.
        zero_init_attention: zero-initialise attention output projections and FFN second layers
            (the reference's init mode "2"), so every cuboid block starts as the identity.
        zero_init_resnet: zero-initialise the last convolution of every ResNet block.
        checkpoint_level: activation checkpointing in the cuboid blocks (0 none, 1 FFN, 2 all).
        attention_backend: ``auto`` | ``sdpa`` | ``eager`` attention kernel.
    """

    target_len: int = 6
    latent_hw: tuple[int, int] = (16, 16)
    latent_channels: int = 64
    base_units: int = 256
    block_units: tuple[int, ...] | None = None
    depth: tuple[int, ...] = (4, 4)
    downsample: int = 2
    num_heads: int = 4
    pattern: str = "axial"
    dropout: float = 0.1
    time_block_dropout: float = 0.0
    activation: Literal["gelu", "leaky", "relu", "silu"] = "gelu"
    time_embed_dim: int = 256
    time_hidden_dim: int = 1024
    share_time_block_per_level: bool = True
    pos_embed: Literal["t+h+w", "t+hw"] = "t+h+w"
    padding_type: Literal["ignore", "zeros", "nearest"] = "zeros"
    norm_groups: int = 32
    zero_init_attention: bool = True
    zero_init_resnet: bool = True
    checkpoint_level: int = 0
    attention_backend: Literal["auto", "sdpa", "eager"] = "auto"

    def __post_init__(self) -> None:
        for name in ("latent_hw", "block_units", "depth"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(v) for v in value))
        problems = _problems(self)
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    @property
    def num_frames(self) -> int:
        """Frames the backbone sees."""
        return self.target_len

    def level_widths(self) -> tuple[int, ...]:
        if self.block_units is not None:
            return self.block_units
        return tuple(self.base_units * self.downsample**i for i in range(len(self.depth)))

    def level_shapes(self) -> list[Shape4]:
        """``(T, H, W, C)`` of every level; patch merging pads, so sizes round up."""
        h, w = self.latent_hw
        shapes = []
        for width in self.level_widths():
            shapes.append((self.num_frames, h, w, width))
            h, w = -(-h // self.downsample), -(-w // self.downsample)
        return shapes

    def replace(self, **changes: Any):
        """A copy with ``changes`` applied (unknown keys raise a ValueError listing valid ones)."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - valid
        if unknown:
            raise ValueError(f"unknown {type(self).__name__} keys {sorted(unknown)}; valid: {sorted(valid)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class DenoiserConfig(LatentBackboneConfig):
    """:class:`~.earthformer_unet.EarthformerUNet` options (SPEC §5.4); defaults = ``prediff_sevirlr``.

    Attributes (besides :class:`LatentBackboneConfig`'s):
        context_len: frames of the context latent ``z_cond``.
        zero_init_output: zero-initialise the output Linear, so a fresh model predicts ε = 0.
    """

    context_len: int = 7
    zero_init_output: bool = True

    @property
    def num_frames(self) -> int:
        """Context and noisy future frames are concatenated in time."""
        return self.context_len + self.target_len


@dataclass(frozen=True)
class AlignmentConfig(LatentBackboneConfig):
    """:class:`~.alignment.AlignmentNetwork` options (SPEC §5.5); defaults = ``alignment_sevirlr``.

    Attributes (besides :class:`LatentBackboneConfig`'s, with the half-U-Net's own defaults):
        out_dim: channels of the per-frame readout (1 for a scalar statistic such as mean intensity).
    """

    base_units: int = 128
    depth: tuple[int, ...] = (1, 1)
    time_embed_dim: int = 128
    time_hidden_dim: int = 512
    out_dim: int = 1


def _problems(cfg: LatentBackboneConfig) -> list[str]:
    problems = [
        f"{name}={getattr(cfg, name)!r} (choose one of {list(choices)})"
        for name, choices in _CHOICES.items()
        if getattr(cfg, name) not in choices
    ]
    if cfg.pattern not in SELF_PATTERNS:
        problems.append(f"pattern={cfg.pattern!r} is not a registered self-attention pattern")
    if not cfg.depth or min(cfg.depth) < 1:
        problems.append(f"depth={cfg.depth} needs at least one level and one step per level")
    if cfg.block_units is not None and len(cfg.block_units) != len(cfg.depth):
        problems.append(f"block_units {cfg.block_units} needs one width per level of depth {cfg.depth}")
    widths = cfg.level_widths()
    if cfg.num_heads < 1 or any(w % cfg.num_heads for w in widths):
        problems.append(f"level widths {widths} must be divisible by num_heads={cfg.num_heads}")
    if cfg.norm_groups < 1 or any(w == group_count(w, cfg.norm_groups) for w in widths):
        # a per-channel GroupNorm right after the additive time embedding would erase it
        problems.append(f"level widths {widths} need ≥ 2 channels per GroupNorm group (norm_groups)")
    if not 0.0 <= cfg.dropout <= 1.0 or not 0.0 <= cfg.time_block_dropout <= 1.0:
        problems.append("dropout rates must lie in [0, 1]")
    if cfg.checkpoint_level not in (0, 1, 2):
        problems.append(f"checkpoint_level={cfg.checkpoint_level} (choose 0, 1 or 2)")
    if min(cfg.target_len, getattr(cfg, "context_len", 1), *cfg.latent_hw, cfg.latent_channels) < 1:
        problems.append("frame counts, latent_hw and latent_channels must be positive")
    return problems


# --- presets ------------------------------------------------------------------------------------

DENOISER_PRESETS: Registry[DenoiserConfig] = Registry("denoiser preset")
ALIGNMENT_PRESETS: Registry[AlignmentConfig] = Registry("alignment preset")


def get_denoiser_config(name: str, **overrides: Any) -> DenoiserConfig:
    """Preset ``name`` with ``overrides`` applied; unknown names list the valid ones."""
    return DENOISER_PRESETS.get(name)().replace(**overrides)


def get_alignment_config(name: str, **overrides: Any) -> AlignmentConfig:
    return ALIGNMENT_PRESETS.get(name)().replace(**overrides)


@DENOISER_PRESETS.register()
def prediff_sevirlr() -> DenoiserConfig:
    """SEVIR-LR: 7 → 6 frames of a ×8 VAE's 16×16×64 latents; widths 256/512, depth (4, 4).

    136,817,538 parameters (reference: 136.82 M, SPEC §5.4).
    """
    return DenoiserConfig()


@DENOISER_PRESETS.register()
def prediff_nbody() -> DenoiserConfig:
    """N-body MNIST: 10 → 10 frames of 64×64 images, latents of a ×4 VAE with 4 channels.

    Latent grid ``(20, 16, 16, 4)`` after concatenation; widths 128/256, depth (2, 2). The original
    N-body PreDiff was never released (SPEC §5.7), so these sizes are ours: the VAE preset that
    produces the latents must agree on ``latent_hw`` and ``latent_channels``.
    """
    return DenoiserConfig(
        context_len=10,
        target_len=10,
        latent_channels=4,
        base_units=128,
        depth=(2, 2),
        time_embed_dim=128,
        time_hidden_dim=512,
    )


@DENOISER_PRESETS.register()
def prediff_tiny() -> DenoiserConfig:
    """Toy sizes for tests: 3 → 2 frames of 8×8×4 latents, widths 32/64, depth (2, 1), 8 GN groups."""
    return DenoiserConfig(
        context_len=3,
        target_len=2,
        latent_hw=(8, 8),
        latent_channels=4,
        base_units=32,
        depth=(2, 1),
        num_heads=2,
        dropout=0.0,
        norm_groups=8,
        time_embed_dim=32,
        time_hidden_dim=64,
    )


@ALIGNMENT_PRESETS.register()
def alignment_sevirlr() -> AlignmentConfig:
    """SEVIR-LR U_φ: 6 noisy 16×16×64 latent frames → (6, 1); widths 128/256, depth (1, 1).

    8,937,033 parameters (reference: 8.94 M, SPEC §5.5).
    """
    return AlignmentConfig()


@ALIGNMENT_PRESETS.register()
def alignment_nbody() -> AlignmentConfig:
    """N-body U_φ on the ``prediff_nbody`` latents: 10 frames of 16×16×4; widths 64/128."""
    return AlignmentConfig(
        target_len=10,
        latent_channels=4,
        base_units=64,
        time_embed_dim=64,
        time_hidden_dim=256,
    )


@ALIGNMENT_PRESETS.register()
def alignment_tiny() -> AlignmentConfig:
    """Toy sizes for tests: 2 frames of 8×8×4 latents, widths 32/64, 8 GroupNorm groups, no dropout."""
    return AlignmentConfig(
        target_len=2,
        latent_hw=(8, 8),
        latent_channels=4,
        base_units=32,
        num_heads=2,
        dropout=0.0,
        norm_groups=8,
        time_embed_dim=32,
        time_hidden_dim=64,
    )
