"""Hierarchical cuboid encoder (SPEC §2.4): levels of self-attention blocks with patch merging.

Every level's output is kept as memory for the decoder; with global vectors, each level's globals
are kept too and mapped to the next level's width by a Linear.
"""

from __future__ import annotations

from torch import Tensor, nn

from earthcast.models.earthformer.config import EarthformerConfig
from earthcast.nn.cuboid.patterns import get_self_pattern
from earthcast.nn.cuboid.self_attention import CuboidSelfAttentionBlock
from earthcast.nn.resample import PatchMerging3D
from earthcast.nn.rowmm import Linear


def level_widths(cfg: EarthformerConfig) -> list[int]:
    """Width of every level: ``round_up_4(base · ⌊(downsample^α)^i⌋)`` unless ``block_units`` is set."""
    if cfg.block_units is not None:
        return list(cfg.block_units)
    widths = []
    for i in range(len(cfg.enc_depth)):
        w = cfg.base_units * int((cfg.downsample**cfg.scale_alpha) ** i)
        widths.append(w + (4 - w % 4) % 4)
    return widths


def self_block(
    cfg: EarthformerConfig, dim: int, layers, num_globals: int, inter_ffn: bool
) -> CuboidSelfAttentionBlock:
    """A self-attention block with the model-wide options of ``cfg``."""
    return CuboidSelfAttentionBlock(
        dim,
        cfg.num_heads,
        layers,
        padding_type=cfg.padding_type,
        qkv_bias=cfg.qkv_bias,
        attn_drop=cfg.attn_drop,
        proj_drop=cfg.proj_drop,
        ffn_drop=cfg.ffn_drop,
        activation=cfg.ffn_activation,
        gated_ffn=cfg.gated_ffn,
        norm=cfg.norm_layer,
        use_inter_ffn=inter_ffn,
        num_global_vectors=num_globals,
        use_global_vector_ffn=cfg.use_global_vector_ffn,
        use_global_self_attn=cfg.use_global_self_attn,
        separate_global_qkv=cfg.separate_global_qkv,
        global_dim_ratio=cfg.global_dim_ratio,
        use_relative_pos=cfg.use_relative_pos,
        use_final_proj=cfg.self_attn_use_final_proj,
        checkpoint_level=cfg.checkpoint_level,
        backend=cfg.attention_backend,
    )


class EarthformerEncoder(nn.Module):
    """``(B, T, H0, W0, D0)`` → list of level memories ``(B, T, H_i, W_i, D_i)`` [+ globals]."""

    def __init__(self, cfg: EarthformerConfig, input_shape: tuple[int, int, int, int]) -> None:
        super().__init__()
        widths = level_widths(cfg)
        self.num_globals = cfg.num_global_vectors
        factor = (1, cfg.downsample, cfg.downsample)
        self.downsamples = nn.ModuleList(
            PatchMerging3D(widths[i], widths[i + 1], factor, cfg.padding_type, cfg.norm_layer)
            for i in range(len(widths) - 1)
        )
        self.mem_shapes = [tuple(input_shape)]
        for down in self.downsamples:
            self.mem_shapes.append(down.out_shape(self.mem_shapes[-1]))
        self.levels = nn.ModuleList(
            nn.ModuleList(
                self_block(
                    cfg,
                    widths[i],
                    get_self_pattern(cfg.enc_pattern, self.mem_shapes[i]),
                    self.num_globals,
                    cfg.enc_use_inter_ffn,
                )
                for _ in range(depth)
            )
            for i, depth in enumerate(cfg.enc_depth)
        )
        g = cfg.global_dim_ratio
        self.global_downsamples = (
            nn.ModuleList(Linear(g * widths[i], g * widths[i + 1]) for i in range(len(widths) - 1))
            if self.num_globals > 0
            else None
        )

    def forward(
        self, x: Tensor, global_vectors: Tensor | None = None
    ) -> tuple[list[Tensor], list[Tensor] | None]:
        """``x (B, T, H0, W0, D0)``, globals ``(B, P, D0·ratio)`` → (memories, per-level globals)."""
        memories, level_globals = [], [] if self.num_globals > 0 else None
        for i, level in enumerate(self.levels):
            for block in level:
                if self.num_globals > 0:
                    x, global_vectors = block(x, global_vectors)
                else:
                    x = block(x)
            memories.append(x)  # (B, T, H_i, W_i, D_i)
            if level_globals is not None:
                level_globals.append(global_vectors)
            if i < len(self.downsamples):
                x = self.downsamples[i](x)
                if self.global_downsamples is not None:
                    global_vectors = self.global_downsamples[i](global_vectors)
        return memories, level_globals
