"""One resolution level of the latent backbones, and their shared initialisation (SPEC §5.4, §5.5).

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channels, ``e`` time-embedding width.

A stage runs ``depth`` steps of *time-conditioned ResNet block → cuboid self-attention stack*. The
ResNet block is where the diffusion time enters; the cuboid stack mixes information in space and
time. With ``share_time_block_per_level`` one ResNet block serves every step (see ``config.py``).
"""

from __future__ import annotations

from torch import Tensor, nn

from earthcast.models.prediff.denoiser.config import LatentBackboneConfig, Shape4
from earthcast.models.prediff.denoiser.resnet3d import ResNetBlock3D
from earthcast.nn.cuboid.patterns import get_self_pattern
from earthcast.nn.cuboid.self_attention import CuboidSelfAttentionBlock
from earthcast.nn.init import init_earthformer_


class CuboidStage(nn.Module):
    """``depth`` × (time ResNet block → cuboid self-attention stack) at one grid shape.

    Args:
        cfg: backbone options. shape: ``(T, H, W, C)`` of this level. depth: number of steps.
    """

    def __init__(self, cfg: LatentBackboneConfig, shape: Shape4, depth: int) -> None:
        super().__init__()
        width = shape[-1]
        self.shared = cfg.share_time_block_per_level
        self.time_blocks = nn.ModuleList(
            ResNetBlock3D(width, width, cfg.time_hidden_dim, cfg.time_block_dropout, cfg.norm_groups)
            for _ in range(1 if self.shared else depth)
        )
        layers = get_self_pattern(cfg.pattern, shape)
        self.attn_blocks = nn.ModuleList(
            CuboidSelfAttentionBlock(
                width,
                cfg.num_heads,
                layers,
                padding_type=cfg.padding_type,
                attn_drop=cfg.dropout,
                proj_drop=cfg.dropout,
                ffn_drop=cfg.dropout,
                activation=cfg.activation,
                checkpoint_level=cfg.checkpoint_level,
                backend=cfg.attention_backend,
            )
            for _ in range(depth)
        )

    def forward(self, x: Tensor, t_emb: Tensor) -> Tensor:
        """``x (B, T, H, W, C)``, ``t_emb (B, E)`` → ``(B, T, H, W, C)``."""
        for k, attn in enumerate(self.attn_blocks):
            x = self.time_blocks[0 if self.shared else k](x, t_emb)
            x = attn(x)
        return x


def init_backbone_(module: nn.Module, cfg: LatentBackboneConfig) -> None:
    """Earthformer initialisation, then the zero-inits that make residual branches start at 0.

    Zeroed branches make the freshly built network (close to) a stack of identities, which the
    reference relies on for stable early diffusion training; gradients still reach every
    parameter once the zeroed layers have moved after the first optimiser steps.
    """
    init_earthformer_(module)
    for m in module.modules():
        if isinstance(m, ResNetBlock3D) and cfg.zero_init_resnet:
            m.zero_init_output_()
        elif isinstance(m, CuboidSelfAttentionBlock) and cfg.zero_init_attention:
            for layer in [*(a.proj for a in m.attns), *(f.fc2 for f in m.ffns)]:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
