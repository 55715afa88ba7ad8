"""``EarthformerConfig``: the single source of Earthformer defaults, validated at construction.

Defaults reproduce the reference (``earthformer`` 0.2.1) options that every shipped config shares;
dataset presets (``presets.py``) override only what differs. Shapes are ``(T, H, W, C)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from earthcast.nn.cuboid.patterns import CROSS_PATTERNS, SELF_PATTERNS

Shape4 = tuple[int, int, int, int]

_CHOICES: dict[str, tuple[Any, ...]] = {
    "padding_type": ("ignore", "zeros", "nearest"),
    "pos_embed_type": ("t+h+w", "t+hw"),
    "z_init_method": ("zeros", "nearest_interp", "last", "mean"),
    "stem": ("conv", "stack_conv"),
    "ffn_activation": ("gelu", "leaky", "relu", "silu"),
    "stem_activation": ("gelu", "leaky", "relu", "silu"),
    "norm_layer": ("layer_norm", "rms_norm"),
    "dec_pattern_time": ("encoder", "target"),
    "attention_backend": ("auto", "sdpa", "eager"),
}


@dataclass(frozen=True)
class EarthformerConfig:
    """Hyper-parameters of :class:`~earthcast.models.earthformer.Earthformer`.

    Attributes:
        input_shape: ``(T_in, H, W, C_in)``. target_shape: ``(T_out, H, W, C_out)`` (same H, W).
        base_units: width of the first transformer level; ``block_units`` overrides all widths.
        scale_alpha: level widths ``round4(base · (downsample^α)^i)``.
        num_heads: attention heads; attn_drop / proj_drop / ffn_drop: dropout rates.
        downsample: spatial patch-merging factor between levels.
        enc_depth / dec_depth: blocks per level (same number of levels).
        enc_pattern / dec_self_pattern / dec_cross_pattern: registered cuboid patterns.
        enc_use_inter_ffn / dec_use_inter_ffn: FFN after every attention layer (else one per block).
        dec_hierarchical_pos_embed: add a positional embedding after each decoder upsampling.
        num_global_vectors: P global vectors (0 = none); use_dec_self_global, dec_self_update_global,
            use_dec_cross_global, use_global_vector_ffn, use_global_self_attn, separate_global_qkv,
            global_dim_ratio: global-vector options (SPEC §1.7).
        dec_cross_start: first level (from the finest) with cross-attention.
        dec_cross_last_n_frames: cross-attend to only the last n memory frames.
        dec_use_first_self_attn: begin the top decoder level with self- instead of cross-attention.
        ffn_activation, gated_ffn, norm_layer: transformer FFN and norm options.
        padding_type: ``ignore`` | ``zeros`` | ``nearest`` for non-divisible shapes.
        pos_embed_type: ``t+h+w`` | ``t+hw``. use_relative_pos: relative bias in attention.
        self_attn_use_final_proj: output projection in self-attention. qkv_bias: bias in q/k/v.
        z_init_method: decoder initial state: ``zeros`` (learned queries) | ``nearest_interp`` |
            ``last`` | ``mean``.
        stem: ``conv`` | ``stack_conv``; stem_activation; stem_scale, stem_conv_layers,
            head_conv_layers (``conv``); stack_dims, stack_factors, stack_num_convs (``stack_conv``).
        checkpoint_level: activation checkpointing 0/1/2.
        dec_pattern_time: ``encoder`` builds decoder self patterns from the encoder's T (the
            reference behaviour, needed for official weights); ``target`` uses T_out (corrected).
        attention_backend: ``auto`` (fastest kernel per device and size) | ``sdpa`` | ``eager``.
    """

    input_shape: Shape4 = (10, 64, 64, 1)
    target_shape: Shape4 = (10, 64, 64, 1)
    base_units: int = 64
    block_units: tuple[int, ...] | None = None
    scale_alpha: float = 1.0
    num_heads: int = 4
    attn_drop: float = 0.1
    proj_drop: float = 0.1
    ffn_drop: float = 0.1
    downsample: int = 2
    enc_depth: tuple[int, ...] = (4, 4)
    dec_depth: tuple[int, ...] = (4, 4)
    enc_pattern: str = "axial"
    dec_self_pattern: str = "axial"
    dec_cross_pattern: str = "cross_1x1"
    enc_use_inter_ffn: bool = True
    dec_use_inter_ffn: bool = True
    dec_hierarchical_pos_embed: bool = False
    num_global_vectors: int = 0
    use_dec_self_global: bool = False
    dec_self_update_global: bool = True
    use_dec_cross_global: bool = False
    use_global_vector_ffn: bool = False
    use_global_self_attn: bool = False
    separate_global_qkv: bool = False
    global_dim_ratio: int = 1
    dec_cross_start: int = 0
    dec_cross_last_n_frames: int | None = None
    dec_use_first_self_attn: bool = False
    ffn_activation: Literal["gelu", "leaky", "relu", "silu"] = "gelu"
    gated_ffn: bool = False
    norm_layer: Literal["layer_norm", "rms_norm"] = "layer_norm"
    padding_type: Literal["ignore", "zeros", "nearest"] = "zeros"
    pos_embed_type: Literal["t+h+w", "t+hw"] = "t+hw"
    use_relative_pos: bool = True
    self_attn_use_final_proj: bool = True
    qkv_bias: bool = False
    z_init_method: Literal["zeros", "nearest_interp", "last", "mean"] = "zeros"
    stem: Literal["conv", "stack_conv"] = "conv"
    stem_activation: str = "leaky"
    stem_scale: tuple[int, int, int] = (1, 2, 2)
    stem_conv_layers: int = 2
    head_conv_layers: int = 1
    stack_dims: tuple[int, ...] = (16, 64, 128)
    stack_factors: tuple[int, ...] = (3, 2, 2)
    stack_num_convs: tuple[int, ...] = (2, 2, 2)
    checkpoint_level: int = 0
    dec_pattern_time: Literal["encoder", "target"] = "encoder"
    attention_backend: Literal["auto", "sdpa", "eager"] = "auto"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in (
            "input_shape",
            "target_shape",
            "enc_depth",
            "dec_depth",
            "stem_scale",
            "stack_dims",
            "stack_factors",
            "stack_num_convs",
            "block_units",
        ):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(v) for v in value))
        _validate(self)

    def replace(self, **changes: Any) -> EarthformerConfig:
        """A copy with ``changes`` applied (unknown keys raise a ValueError listing valid ones)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown EarthformerConfig keys {sorted(unknown)}; valid keys: {field_names()}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(EarthformerConfig) if f.name != "extra"]


def _validate(cfg: EarthformerConfig) -> None:
    problems = []
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            problems.append(f"{name}={getattr(cfg, name)!r} (choose one of {list(choices)})")
    if len(cfg.input_shape) != 4 or len(cfg.target_shape) != 4:
        problems.append("input_shape and target_shape must be (T, H, W, C)")
    elif cfg.input_shape[1:3] != cfg.target_shape[1:3]:
        problems.append(f"input H, W {cfg.input_shape[1:3]} must equal target H, W {cfg.target_shape[1:3]}")
    if len(cfg.enc_depth) != len(cfg.dec_depth):
        problems.append(
            f"enc_depth {cfg.enc_depth} and dec_depth {cfg.dec_depth} need the same number of levels"
        )
    for name in ("enc_depth", "dec_depth"):
        if not getattr(cfg, name) or any(d < 1 for d in getattr(cfg, name)):
            problems.append(f"{name}={getattr(cfg, name)!r}: every level needs at least one block (≥ 1)")
    if cfg.num_global_vectors < 0:
        problems.append(f"num_global_vectors={cfg.num_global_vectors} must be ≥ 0 (0: no global vectors)")
    if cfg.base_units % cfg.num_heads:
        problems.append(f"base_units={cfg.base_units} must be divisible by num_heads={cfg.num_heads}")
    if cfg.global_dim_ratio != 1 and not cfg.separate_global_qkv:
        problems.append("global_dim_ratio != 1 needs separate_global_qkv=True")
    for name, registry in (
        ("enc_pattern", SELF_PATTERNS),
        ("dec_self_pattern", SELF_PATTERNS),
        ("dec_cross_pattern", CROSS_PATTERNS),
    ):
        if getattr(cfg, name) not in registry:
            valid = ", ".join(registry.names()[:8])
            problems.append(f"{name}={getattr(cfg, name)!r} is not a registered pattern ({valid}, …)")
    if cfg.stem == "stack_conv" and not (
        len(cfg.stack_dims) == len(cfg.stack_factors) == len(cfg.stack_num_convs)
    ):
        problems.append("stack_dims, stack_factors and stack_num_convs must have the same length")
    if cfg.stem == "conv" and cfg.base_units % 16:
        problems.append(
            f"the 'conv' stem uses GroupNorm(16): base_units={cfg.base_units} must be a multiple of 16"
        )
    if problems:
        raise ValueError("invalid EarthformerConfig: " + "; ".join(problems))
