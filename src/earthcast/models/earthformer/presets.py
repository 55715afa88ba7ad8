"""Named Earthformer configurations.

The full presets reproduce the shipped reference configs (``earthformer`` 0.2.1,
``scripts/cuboid_transformer/*/cfg*.yaml``; SPEC §2.7) including the reference's output-changing
behaviours, so converted official weights give official outputs. ``*_tiny`` presets keep every
architectural feature of their parent at toy sizes for tests.
"""

from __future__ import annotations

from collections.abc import Callable

from earthcast.models.earthformer.config import EarthformerConfig

PRESETS: dict[str, Callable[[], EarthformerConfig]] = {}


def _preset(fn: Callable[[], EarthformerConfig]) -> Callable[[], EarthformerConfig]:
    PRESETS[fn.__name__] = fn
    return fn


@_preset
def earthformer_sevir() -> EarthformerConfig:
    """SEVIR VIL 13 → 12 frames at 384², global vectors in the encoder (8.66 M parameters)."""
    return EarthformerConfig(
        input_shape=(13, 384, 384, 1),
        target_shape=(12, 384, 384, 1),
        base_units=128,
        enc_depth=(1, 1),
        dec_depth=(1, 1),
        num_global_vectors=8,
        use_global_self_attn=True,
        separate_global_qkv=True,
        pos_embed_type="t+h+w",
        stem="stack_conv",
        stack_dims=(16, 64, 128),
        stack_factors=(3, 2, 2),
        stack_num_convs=(2, 2, 2),
    )


@_preset
def earthformer_sevirlr() -> EarthformerConfig:
    """SEVIR-LR 7 → 6 frames at 128² (1.51 M parameters)."""
    return EarthformerConfig(
        input_shape=(7, 128, 128, 1),
        target_shape=(6, 128, 128, 1),
        base_units=64,
        enc_depth=(1, 1),
        dec_depth=(1, 1),
        pos_embed_type="t+h+w",
        stem="stack_conv",
        stack_dims=(4, 16, 64),
        stack_factors=(1, 2, 2),
        stack_num_convs=(2, 2, 2),
    )


@_preset
def earthformer_nbody() -> EarthformerConfig:
    """N-body MNIST 10 → 10 frames at 64² (6.70 M parameters)."""
    return EarthformerConfig()


@_preset
def earthformer_moving_mnist() -> EarthformerConfig:
    """Moving MNIST 10 → 10 frames at 64² (same architecture as N-body)."""
    return EarthformerConfig()


@_preset
def earthformer_enso() -> EarthformerConfig:
    """ICAR-ENSO SST 12 → 14 months on a 24×48 grid (1.39 M parameters)."""
    return EarthformerConfig(
        input_shape=(12, 24, 48, 1),
        target_shape=(14, 24, 48, 1),
        enc_depth=(1, 1),
        dec_depth=(1, 1),
        pos_embed_type="t+h+w",
        stem_scale=(1, 1, 2),
    )


@_preset
def earthformer_sevir_tiny() -> EarthformerConfig:
    return earthformer_sevir().replace(
        input_shape=(5, 48, 48, 1),
        target_shape=(4, 48, 48, 1),
        base_units=16,
        num_global_vectors=2,
        stack_dims=(4, 8, 16),
    )


@_preset
def earthformer_sevirlr_tiny() -> EarthformerConfig:
    return earthformer_sevirlr().replace(
        input_shape=(3, 32, 32, 1), target_shape=(2, 32, 32, 1), base_units=16, stack_dims=(4, 8, 16)
    )


@_preset
def earthformer_nbody_tiny() -> EarthformerConfig:
    return earthformer_nbody().replace(
        input_shape=(4, 16, 16, 1),
        target_shape=(4, 16, 16, 1),
        base_units=16,
        enc_depth=(2, 1),
        dec_depth=(2, 1),
    )


@_preset
def earthformer_moving_mnist_tiny() -> EarthformerConfig:
    return earthformer_nbody_tiny()


@_preset
def earthformer_enso_tiny() -> EarthformerConfig:
    return earthformer_enso().replace(input_shape=(5, 12, 24, 1), target_shape=(6, 12, 24, 1), base_units=16)


@_preset
def earthformer_small() -> EarthformerConfig:
    """CPU-sized Earthformer for the reduced benchmarks (10 → 10 at 32², ~1 M parameters).

    Two levels of one block each, width 48, 4 global vectors with global self-attention: the
    architecture of the SEVIR table's Earthformer at a size that trains in minutes on a laptop.
    """
    return EarthformerConfig(
        input_shape=(10, 32, 32, 1),
        target_shape=(10, 32, 32, 1),
        base_units=48,
        enc_depth=(1, 1),
        dec_depth=(1, 1),
        num_global_vectors=4,
        use_global_self_attn=True,
        separate_global_qkv=True,
        pos_embed_type="t+h+w",
    )


def _without_globals(config: EarthformerConfig) -> EarthformerConfig:
    """The "Earthformer w/o global" ablation of the SEVIR / ICAR-ENSO tables: P = 0."""
    return config.replace(num_global_vectors=0, use_global_self_attn=False, separate_global_qkv=False)


@_preset
def earthformer_noglobal_sevir() -> EarthformerConfig:
    """``earthformer_sevir`` without global vectors (the SEVIR table's ablation row)."""
    return _without_globals(earthformer_sevir())


@_preset
def earthformer_noglobal_small() -> EarthformerConfig:
    """``earthformer_small`` without global vectors."""
    return _without_globals(earthformer_small())


@_preset
def earthformer_tiny() -> EarthformerConfig:
    """``earthformer_small`` at toy sizes (with its global vectors), for tests and smoke runs."""
    return earthformer_small().replace(
        input_shape=(4, 16, 16, 1), target_shape=(4, 16, 16, 1), base_units=16, num_global_vectors=2
    )


@_preset
def earthformer_noglobal_tiny() -> EarthformerConfig:
    """``earthformer_tiny`` without global vectors."""
    return _without_globals(earthformer_tiny())


def get_preset(name: str) -> EarthformerConfig:
    """Config of preset ``name`` (ValueError listing the presets if unknown)."""
    key = name.lower()
    if key not in PRESETS:
        raise ValueError(f"unknown Earthformer preset '{name}'. Valid names: {', '.join(sorted(PRESETS))}")
    return PRESETS[key]()
