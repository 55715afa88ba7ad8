"""Cuboid decoder (SPEC §2.5): from the coarsest level to the finest, self- and cross-attention
to the encoder memory of the same level, upsampling in between. Non-autoregressive: all
``T_out`` frames are produced at once.

Per level ``i`` (coarsest first): the top level starts with a cross block followed by
``depth−1 × [self, cross]`` (unless ``dec_use_first_self_attn``); other levels run
``depth × [self, cross]``.
"""

from __future__ import annotations

from torch import Tensor, nn

from earthcast.models.earthformer.config import EarthformerConfig
from earthcast.models.earthformer.encoder import self_block
from earthcast.nn.cuboid.cross_attention import CuboidCrossAttentionBlock
from earthcast.nn.cuboid.patterns import get_cross_pattern, get_self_pattern
from earthcast.nn.embeddings import SpaceTimePosEmbed
from earthcast.nn.resample import Upsample2D


class EarthformerDecoder(nn.Module):
    """``z (B, T_out, H_L, W_L, D_L)`` + memories → ``(B, T_out, H_0, W_0, D_0)``."""

    def __init__(self, cfg: EarthformerConfig, mem_shapes: list[tuple[int, int, int, int]]) -> None:
        super().__init__()
        t_in, t_out = cfg.input_shape[0], cfg.target_shape[0]
        levels = len(mem_shapes)
        self.cross_start = cfg.dec_cross_start
        self.top_starts_with_cross = not cfg.dec_use_first_self_attn
        self.self_globals = cfg.num_global_vectors if cfg.use_dec_self_global else 0
        self.self_update_global = cfg.dec_self_update_global
        self.cross_globals = cfg.num_global_vectors > 0 and cfg.use_dec_cross_global

        def n_self(i: int) -> int:
            return cfg.dec_depth[i] - (1 if self.top_starts_with_cross and i == levels - 1 else 0)

        def self_shape(i: int) -> tuple[int, ...]:
            # the reference sizes decoder patterns from the encoder's T (SPEC §1.12)
            t = t_in if cfg.dec_pattern_time == "encoder" else t_out
            return (t, *mem_shapes[i][1:])

        self.self_blocks = nn.ModuleList(
            nn.ModuleList(
                self_block(
                    cfg,
                    mem_shapes[i][-1],
                    get_self_pattern(cfg.dec_self_pattern, self_shape(i)),
                    self.self_globals,
                    cfg.dec_use_inter_ffn,
                )
                for _ in range(n_self(i))
            )
            for i in range(levels)
        )
        self.cross_blocks = nn.ModuleList(
            nn.ModuleList(
                self._cross_block(cfg, mem_shapes[i], t_in + t_out) for _ in range(cfg.dec_depth[i])
            )
            for i in range(self.cross_start, levels)
        )
        self.upsamples = nn.ModuleList(
            Upsample2D(mem_shapes[i + 1][-1], mem_shapes[i][-1], mem_shapes[i][1:3])
            for i in range(levels - 1)
        )
        self.level_pos = (
            nn.ModuleList(
                SpaceTimePosEmbed(mem_shapes[i][-1], t_out, *mem_shapes[i][1:3], cfg.pos_embed_type)
                for i in range(levels - 1)
            )
            if cfg.dec_hierarchical_pos_embed
            else None
        )

    def _cross_block(self, cfg: EarthformerConfig, mem_shape, max_t: int) -> CuboidCrossAttentionBlock:
        return CuboidCrossAttentionBlock(
            mem_shape[-1],
            cfg.num_heads,
            get_cross_pattern(cfg.dec_cross_pattern, mem_shape),
            padding_type=cfg.padding_type,
            cross_last_n_frames=cfg.dec_cross_last_n_frames,
            qkv_bias=cfg.qkv_bias,
            attn_drop=cfg.attn_drop,
            proj_drop=cfg.proj_drop,
            ffn_drop=cfg.ffn_drop,
            activation=cfg.ffn_activation,
            gated_ffn=cfg.gated_ffn,
            norm=cfg.norm_layer,
            use_inter_ffn=cfg.dec_use_inter_ffn,
            max_temporal_relative=max_t,
            use_global_vector=self.cross_globals,
            separate_global_qkv=cfg.separate_global_qkv,
            global_dim_ratio=cfg.global_dim_ratio,
            use_relative_pos=cfg.use_relative_pos,
            checkpoint_level=cfg.checkpoint_level,
            backend=cfg.attention_backend,
        )

    def forward(self, z: Tensor, memories: list[Tensor], mem_globals: list[Tensor] | None = None) -> Tensor:
        """Decode all lead times at once.

        ``z (B, T_out, H_L, W_L, D_L)``, ``memories[i] (B, T_in, H_i, W_i, D_i)``
        → ``(B, T_out, H0, W0, D0)``.
        """
        for i in reversed(range(len(memories))):
            g = None if mem_globals is None else mem_globals[i]
            first_cross = int(self.top_starts_with_cross and i == len(memories) - 1)
            if first_cross:
                z = self._cross(i, 0, z, memories[i], g)
            for j, block in enumerate(self.self_blocks[i]):
                z, g = self._self(block, z, g)
                z = self._cross(i, j + first_cross, z, memories[i], g)
            if i > 0:
                z = self.upsamples[i - 1](z)  # (B, T_out, H_{i-1}, W_{i-1}, D_{i-1})
                if self.level_pos is not None:
                    z = self.level_pos[i - 1](z)
        return z

    def _self(self, block: nn.Module, z: Tensor, g: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if not self.self_globals:
            return block(z), g
        z, g_new = block(z, g)
        return z, (g_new if self.self_update_global else g)

    def _cross(self, level: int, j: int, z: Tensor, mem: Tensor, g: Tensor | None) -> Tensor:
        if level < self.cross_start:
            return z
        return self.cross_blocks[level - self.cross_start][j](z, mem, g if self.cross_globals else None)
