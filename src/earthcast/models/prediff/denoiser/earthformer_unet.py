"""Earthformer-UNet: PreDiff's noise-prediction network in latent space (SPEC §5.4).

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` latent space, ``c`` channels, ``e`` time-embedding
width. ``T_in`` context frames, ``T_out`` noisy future frames, ``T = T_in + T_out``.

``ε̂ = EarthformerUNet(z_t, t, z_cond)``:

1. concatenate ``[z_cond; z_t]`` in time and append an indicator channel (1 = context frame,
   0 = noisy frame) so the network knows which frames to denoise;
2. ``first_proj`` (ResNet block without time) to the base width, learned positional embedding;
3. down path: per level a :class:`CuboidStage`, the level output kept as a skip, patch merging;
4. up path: per level (coarsest first) add the skip, a :class:`CuboidStage`, nearest upsampling
   + 3×3 convolution; down and up stages have separate parameters;
5. keep the last ``T_out`` frames and project to the latent channels with a zero-initialised
   Linear, so a fresh model predicts ε = 0 everywhere.
"""

from __future__ import annotations

import torch
from einops import repeat
from torch import Tensor, nn

from earthcast.models.prediff.denoiser.config import DenoiserConfig
from earthcast.models.prediff.denoiser.resnet3d import ResNetBlock3D
from earthcast.models.prediff.denoiser.stage import CuboidStage, init_backbone_
from earthcast.models.prediff.denoiser.time_embedding import TimestepEmbedding
from earthcast.nn.embeddings import SpaceTimePosEmbed
from earthcast.nn.resample import PatchMerging3D, Upsample2D


class EarthformerUNet(nn.Module):
    """Latent ε-prediction network; build from a :class:`DenoiserConfig` (plus keyword overrides)."""

    def __init__(self, config: DenoiserConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = (config or DenoiserConfig()).replace(**overrides)
        self.config = cfg
        shapes, widths = cfg.level_shapes(), cfg.level_widths()
        h, w = cfg.latent_hw
        factor = (1, cfg.downsample, cfg.downsample)
        self.first_proj = ResNetBlock3D(
            cfg.latent_channels + 1, cfg.base_units, None, cfg.dropout, cfg.norm_groups
        )
        self.pos_embed = SpaceTimePosEmbed(cfg.base_units, cfg.num_frames, h, w, cfg.pos_embed)
        self.time_embed = TimestepEmbedding(cfg.time_embed_dim, cfg.time_hidden_dim)
        self.down_stages = nn.ModuleList(CuboidStage(cfg, s, d) for s, d in zip(shapes, cfg.depth))
        self.downsamples = nn.ModuleList(
            PatchMerging3D(widths[i], widths[i + 1], factor, cfg.padding_type) for i in range(len(widths) - 1)
        )
        self.upsamples = nn.ModuleList(
            Upsample2D(widths[i + 1], widths[i], shapes[i][1:3]) for i in range(len(widths) - 1)
        )
        self.up_stages = nn.ModuleList(CuboidStage(cfg, s, d) for s, d in zip(shapes, cfg.depth))
        self.out_proj = nn.Linear(cfg.base_units, cfg.latent_channels)
        init_backbone_(self, cfg)
        if cfg.zero_init_output:
            nn.init.zeros_(self.out_proj.weight)
            nn.init.zeros_(self.out_proj.bias)

    def forward(self, z_t: Tensor, t: Tensor, z_cond: Tensor) -> Tensor:
        """Predict the noise in ``z_t``.

        Args:
            z_t: noisy future latents ``(B, T_out, h, w, c)``.
            t: diffusion timesteps ``(B,)`` (integer; a 0-d tensor is broadcast to the batch).
            z_cond: context latents ``(B, T_in, h, w, c)``.

        Returns:
            ε̂ ``(B, T_out, h, w, c)``.
        """
        t = self._check_inputs(z_t, t, z_cond)
        x = self._assemble(z_t, z_cond)  # (B, T, h, w, c + 1)
        x = self.pos_embed(self.first_proj(x))  # (B, T, h, w, D_0)
        t_emb = self.time_embed(t)  # (B, E)
        x, skips = self._down(x, t_emb)  # (B, T, h_L, w_L, D_L), [(B, T, h_i, w_i, D_i)]
        x = self._up(x, skips, t_emb)  # (B, T, h, w, D_0)
        return self.out_proj(x[:, -self.config.target_len :])  # (B, T_out, h, w, c)

    def _assemble(self, z_t: Tensor, z_cond: Tensor) -> Tensor:
        """``[z_cond; z_t]`` in time plus the context indicator channel → ``(B, T, h, w, c + 1)``."""
        x = torch.cat([z_cond, z_t], dim=1)  # (B, T, h, w, c)
        b, frames, h, w, _ = x.shape
        is_context = (torch.arange(frames, device=x.device) < z_cond.shape[1]).to(x.dtype)  # (T,)
        indicator = repeat(is_context, "t -> b t h w 1", b=b, h=h, w=w)  # (B, T, h, w, 1)
        return torch.cat([x, indicator], dim=-1)  # (B, T, h, w, c + 1)

    def _down(self, x: Tensor, t_emb: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Down path; returns the coarsest features and the finer levels' outputs (skips)."""
        skips = []
        for i, stage in enumerate(self.down_stages):
            if i > 0:
                x = self.downsamples[i - 1](x)  # (B, T, h_i, w_i, D_i)
            x = stage(x, t_emb)
            if i < len(self.downsamples):
                skips.append(x)
        return x, skips

    def _up(self, x: Tensor, skips: list[Tensor], t_emb: Tensor) -> Tensor:
        """Up path, coarsest level first; skips are added (not concatenated) on the way up."""
        for i in reversed(range(len(self.up_stages))):
            if i < len(skips):
                x = x + skips[i]
            x = self.up_stages[i](x, t_emb)
            if i > 0:
                x = self.upsamples[i - 1](x)  # (B, T, h_{i-1}, w_{i-1}, D_{i-1})
        return x

    def _check_inputs(self, z_t: Tensor, t: Tensor, z_cond: Tensor) -> Tensor:
        """Validate shapes against the config; return ``t`` as ``(B,)``."""
        cfg = self.config
        grid = (*cfg.latent_hw, cfg.latent_channels)
        expected = {"z_t": (cfg.target_len, *grid), "z_cond": (cfg.context_len, *grid)}
        for name, value in (("z_t", z_t), ("z_cond", z_cond)):
            if value.ndim != 5 or tuple(value.shape[1:]) != expected[name]:
                raise ValueError(
                    f"{name} must be (B, {', '.join(map(str, expected[name]))}), got {tuple(value.shape)}"
                )
        if z_t.shape[0] != z_cond.shape[0]:
            raise ValueError(f"batch sizes differ: z_t {z_t.shape[0]}, z_cond {z_cond.shape[0]}")
        if t.ndim == 0:
            t = t.expand(z_t.shape[0])
        if t.shape != (z_t.shape[0],):
            raise ValueError(f"t must be (B,) = ({z_t.shape[0]},), got {tuple(t.shape)}")
        return t
