"""Knowledge alignment network U_φ(z_t, t): a "half U-Net" regressing a statistic per frame (SPEC §5.5).

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` latent space, ``c`` channels, ``e`` time-embedding
width, ``l`` tokens of one frame, ``n`` heads, ``d`` head width, ``o`` output channels.

U_φ sees only the noisy future latent ``z_t`` and the diffusion time ``t``, never the context, and
is trained (separately from the denoiser) to predict a statistic ``F`` of the *clean* future, e.g.
its per-frame mean intensity. At sampling time the gradient of ``‖U_φ(z_t, t) − F₀‖`` steers the
reverse process (the guidance rule lives in ``knowledge/``).

``first_proj`` → positional embedding → down path of :class:`CuboidStage` + patch merging (the
first half of the Earthformer-UNet) → per frame: GroupNorm → SiLU → attention pooling →
``(B, T_out, out_dim)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from earthcast.models.prediff.denoiser.config import AlignmentConfig
from earthcast.models.prediff.denoiser.resnet3d import ResNetBlock3D, group_count
from earthcast.models.prediff.denoiser.stage import CuboidStage, init_backbone_
from earthcast.models.prediff.denoiser.time_embedding import TimestepEmbedding
from earthcast.nn.embeddings import SpaceTimePosEmbed
from earthcast.nn.resample import PatchMerging3D


class AttentionPool(nn.Module):
    """CLIP-style attention pooling of ``L`` tokens into one vector.

    The tokens' mean is prepended as a query token, a learned positional embedding is added to all
    ``L + 1`` tokens, and one multi-head attention reads out the query token's result, projected to
    ``out_dim``. Only the query token's row of the attention is computed: the other rows would be
    discarded.
    """

    def __init__(self, num_tokens: int, dim: int, num_heads: int, out_dim: int) -> None:
        super().__init__()
        self.heads = num_heads
        self.pos = nn.Parameter(torch.randn(num_tokens + 1, dim) / dim**0.5)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``x (N, L, C)`` → ``(N, out_dim)``."""
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.pos  # (N, L + 1, C)
        q, k, v = rearrange(self.qkv(x), "b l (three n d) -> three b n l d", three=3, n=self.heads)
        pooled = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # (N, n, 1, d)
        return self.proj(rearrange(pooled, "b n 1 d -> b (n d)"))  # (N, out_dim)


class AlignmentNetwork(nn.Module):
    """U_φ: ``(z_t (B, T_out, h, w, c), t (B,))`` → per-frame statistic ``(B, T_out, out_dim)``."""

    def __init__(self, config: AlignmentConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = (config or AlignmentConfig()).replace(**overrides)
        self.config = cfg
        shapes, widths = cfg.level_shapes(), cfg.level_widths()
        h, w = cfg.latent_hw
        factor = (1, cfg.downsample, cfg.downsample)
        self.first_proj = ResNetBlock3D(
            cfg.latent_channels, cfg.base_units, None, cfg.dropout, cfg.norm_groups
        )
        self.pos_embed = SpaceTimePosEmbed(cfg.base_units, cfg.num_frames, h, w, cfg.pos_embed)
        self.time_embed = TimestepEmbedding(cfg.time_embed_dim, cfg.time_hidden_dim)
        self.stages = nn.ModuleList(CuboidStage(cfg, s, d) for s, d in zip(shapes, cfg.depth))
        self.downsamples = nn.ModuleList(
            PatchMerging3D(widths[i], widths[i + 1], factor, cfg.padding_type) for i in range(len(widths) - 1)
        )
        _, h_top, w_top, d_top = shapes[-1]
        self.readout_norm = nn.GroupNorm(group_count(d_top, cfg.norm_groups), d_top)
        self.pool = AttentionPool(h_top * w_top, d_top, cfg.num_heads, cfg.out_dim)
        init_backbone_(self, cfg)

    def forward(self, z_t: Tensor, t: Tensor) -> Tensor:
        """Predict the statistic of the clean future from its noisy latent.

        Args:
            z_t: noisy future latents ``(B, T_out, h, w, c)``.
            t: diffusion timesteps ``(B,)`` (a 0-d tensor is broadcast to the batch).

        Returns:
            ``(B, T_out, out_dim)``, one readout per frame.
        """
        t = self._check_inputs(z_t, t)
        x = self.pos_embed(self.first_proj(z_t))  # (B, T_out, h, w, D_0)
        t_emb = self.time_embed(t)  # (B, E)
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.downsamples[i - 1](x)  # (B, T_out, h_i, w_i, D_i)
            x = stage(x, t_emb)
        return self._readout(x)  # (B, T_out, out_dim)

    def _readout(self, x: Tensor) -> Tensor:
        """Per-frame GroupNorm → SiLU → attention pooling: ``(B, T, h, w, C)`` → ``(B, T, out_dim)``."""
        b = x.shape[0]
        x = rearrange(x, "b t h w c -> (b t) c (h w)")  # (B·T, C, L): norm statistics per frame
        x = F.silu(self.readout_norm(x))
        x = self.pool(rearrange(x, "bt c l -> bt l c"))  # (B·T, out_dim)
        return rearrange(x, "(b t) o -> b t o", b=b)  # (B, T, out_dim)

    def _check_inputs(self, z_t: Tensor, t: Tensor) -> Tensor:
        cfg = self.config
        expected = (cfg.target_len, *cfg.latent_hw, cfg.latent_channels)
        if z_t.ndim != 5 or tuple(z_t.shape[1:]) != expected:
            raise ValueError(f"z_t must be (B, {', '.join(map(str, expected))}), got {tuple(z_t.shape)}")
        if t.ndim == 0:
            t = t.expand(z_t.shape[0])
        if t.shape != (z_t.shape[0],):
            raise ValueError(f"t must be (B,) = ({z_t.shape[0]},), got {tuple(t.shape)}")
        return t
