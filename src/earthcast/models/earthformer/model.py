"""Earthformer (Gao et al., NeurIPS 2022): a hierarchical cuboid-attention encoder-decoder.

``(B, T_in, H, W, C_in)`` → stem → positional embedding → encoder (levels of cuboid
self-attention, patch merging; optional global vectors) → learned initial queries → decoder
(self + cross attention, upsampling) → head → ``(B, T_out, H, W, C_out)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from earthcast.models.earthformer.config import EarthformerConfig
from earthcast.models.earthformer.decoder import EarthformerDecoder
from earthcast.models.earthformer.encoder import EarthformerEncoder
from earthcast.nn.embeddings import SpaceTimePosEmbed
from earthcast.nn.init import init_earthformer_
from earthcast.nn.rowmm import Linear
from earthcast.nn.stems import ConvHead, ConvStem, StackConvHead, StackConvStem
from earthcast.typing import require_tensor


class Earthformer(nn.Module):
    """Earthformer forecaster; build from an :class:`EarthformerConfig` (plus keyword overrides)."""

    def __init__(self, config: EarthformerConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = (config or EarthformerConfig()).replace(**overrides)
        self.config = cfg
        t_in, _, _, _ = cfg.input_shape
        t_out, _, _, c_out = cfg.target_shape
        self.stem, self.head, head_dim = _build_stem_and_head(cfg)
        _, h0, w0, _ = self.stem.out_shape(cfg.input_shape)
        self.enc_pos = SpaceTimePosEmbed(cfg.base_units, t_in, h0, w0, cfg.pos_embed_type)
        self.encoder = EarthformerEncoder(cfg, (t_in, h0, w0, cfg.base_units))
        self.mem_shapes = self.encoder.mem_shapes
        _, h_top, w_top, d_top = self.mem_shapes[-1]
        self.global_vectors = (
            nn.Parameter(torch.zeros(cfg.num_global_vectors, cfg.global_dim_ratio * cfg.base_units))
            if cfg.num_global_vectors > 0
            else None
        )
        self.z_proj = Linear(d_top, d_top)
        # learned decoder queries (z_init "zeros") are built from this table; other methods never read it
        self.dec_pos = (
            SpaceTimePosEmbed(d_top, t_out, h_top, w_top, cfg.pos_embed_type)
            if cfg.z_init_method == "zeros"
            else None
        )
        if self.dec_pos is None:
            self.register_load_state_dict_pre_hook(_drop_unread_query_table)
        self.decoder = EarthformerDecoder(cfg, self.mem_shapes)
        self.out_proj = Linear(head_dim, c_out)
        init_earthformer_(self)
        if self.global_vectors is not None:
            nn.init.trunc_normal_(self.global_vectors, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """Forecast: ``x (B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``."""
        self._check_input(x)
        x = self.enc_pos(self.stem(x))  # (B, T_in, H0, W0, D0)
        memories, mem_globals = self._encode(x)  # [(B, T_in, H_i, W_i, D_i)]
        z = self._init_queries(memories[-1])  # (B, T_out, H_L, W_L, D_L)
        z = self.decoder(z, memories, mem_globals)  # (B, T_out, H0, W0, D0)
        return self.out_proj(self.head(z))  # (B, T_out, H, W, C_out)

    def unused_parameter_names(self) -> set[str]:
        """Parameters the forward provably never reads (they get no gradient).

        The global vectors form one chain per level; a layer's global update (and a global FFN
        after it) is dead when nothing reads the globals it writes. The encoder's last update is
        dead unless the decoder reads the top level's globals (SEVIR preset, as in the
        reference); the decoder's self blocks leave the last update of each level's chain dead,
        or of every block when ``dec_self_update_global`` is off. Kept so official checkpoints
        load and parameter counts match; tested against autograd's gradients.
        """
        if self.config.num_global_vectors == 0:
            return set()
        dec, top = self.decoder, len(self.encoder.levels) - 1
        unused: set[str] = set()
        if not self._decoder_reads_globals(top):  # lower levels' globals feed the next level
            last = len(self.encoder.levels[top]) - 1
            unused |= _global_writers(self.encoder.levels[top][last], f"encoder.levels.{top}.{last}.")
        if not dec.self_globals:
            return unused
        for i, blocks in enumerate(dec.self_blocks):
            pending: set[str] = set()  # writers of the chain's current globals not read yet
            for j, block in enumerate(blocks):
                written = _global_writers(block, f"decoder.self_blocks.{i}.{j}.")
                if not dec.self_update_global:
                    unused |= written  # the block's output globals are discarded
                elif self._cross_reads_globals(i):
                    pending = set()  # the cross block after it reads them
                else:
                    pending = written
            unused |= pending
        return unused

    def _decoder_reads_globals(self, level: int) -> bool:
        """Whether a decoder block at ``level`` reads the encoder's globals of that level."""
        dec = self.decoder
        has_cross = len(dec.self_blocks[level]) > 0 or (
            dec.top_starts_with_cross and level == len(dec.self_blocks) - 1
        )
        return bool(dec.self_globals and dec.self_blocks[level]) or (
            has_cross and self._cross_reads_globals(level)
        )

    def _cross_reads_globals(self, level: int) -> bool:
        """Whether the cross-attention blocks at decoder ``level`` read the memory's globals."""
        return bool(self.decoder.cross_globals) and level >= self.decoder.cross_start

    def _check_input(self, x: Tensor) -> None:
        require_tensor(x, "Earthformer")
        expected = self.config.input_shape
        if x.ndim == len(expected) and tuple(x.shape) == tuple(expected):  # ndim first: no guard on B
            raise ValueError(
                f"Earthformer got one sample {tuple(x.shape)} without the batch axis; pass x[None] "
                f"(B, {', '.join(map(str, expected))})"
            )
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"Earthformer expects input (B, T, H, W, C) = (B, {', '.join(map(str, expected))}), got "
                f"{tuple(x.shape)}; build the model with input_shape matching your data"
            )

    def _encode(self, x: Tensor) -> tuple[list[Tensor], list[Tensor] | None]:
        if self.global_vectors is None:
            return self.encoder(x)
        g = self.global_vectors.expand(x.shape[0], -1, -1)  # (B, P, ratio·D0)
        return self.encoder(x, g)

    def _init_queries(self, top: Tensor) -> Tensor:
        """Initial decoder state from the coarsest memory ``top (B, T_in, H, W, D)`` (SPEC §2.5)."""
        t_out = self.config.target_shape[0]
        b, _, h, w, d = top.shape
        method = self.config.z_init_method
        if method == "zeros":
            z = self.dec_pos(top.new_zeros(1, t_out, h, w, d))  # learned queries, same for all samples
            return self.z_proj(z).expand(b, -1, -1, -1, -1)
        if method == "nearest_interp":
            z = F.interpolate(rearrange(top, "b t h w d -> b d t h w"), size=(t_out, h, w), mode="nearest")
            z = rearrange(z, "b d t h w -> b t h w d")
        elif method == "last":
            z = top[:, -1:].expand(b, t_out, h, w, d)
        else:  # mean
            z = top.mean(dim=1, keepdim=True).expand(b, t_out, h, w, d)
        return self.z_proj(z)


def _build_stem_and_head(cfg: EarthformerConfig) -> tuple[nn.Module, nn.Module, int]:
    """Stem, head and the head's output width for ``cfg.stem``."""
    _, h, w, c_in = cfg.input_shape
    if cfg.stem == "conv":
        stem = ConvStem(
            c_in, cfg.base_units, cfg.stem_scale, cfg.stem_conv_layers, cfg.stem_activation, cfg.padding_type
        )
        head = ConvHead(cfg.base_units, (h, w), cfg.head_conv_layers, cfg.stem_activation)
        return stem, head, cfg.base_units
    if cfg.stack_dims[-1] != cfg.base_units:
        raise ValueError(f"stack_dims[-1]={cfg.stack_dims[-1]} must equal base_units={cfg.base_units}")
    stem = StackConvStem(
        c_in, cfg.stack_dims, cfg.stack_factors, cfg.stack_num_convs, cfg.stem_activation, cfg.padding_type
    )
    sizes = [(h, w)] + [s[1:3] for s in stem.stage_shapes(cfg.input_shape)[:-1]]
    head = StackConvHead(cfg.stack_dims, sizes, cfg.stack_num_convs, cfg.stem_activation)
    return stem, head, cfg.stack_dims[0]


def _global_writers(block: nn.Module, prefix: str) -> set[str]:
    """Parameters of a self-attention ``block`` that only write its output globals: the last
    layer's global update and any global FFN after it (earlier updates are read by the next
    layer of the same block)."""
    layer = len(block.attns) - 1
    glob = block.attns[layer].glob
    writes = ("q.", "token_k.", "token_v.", "self_qkv.", "proj.")
    names = {
        f"{prefix}attns.{layer}.glob.{n}"
        for n, _ in glob.named_parameters()
        if n.startswith(writes) and (glob.separate or n.startswith("proj."))
    }
    if block.global_ffns is not None:
        ffn = len(block.global_ffns) - 1
        names |= {f"{prefix}global_ffns.{ffn}.{n}" for n, _ in block.global_ffns[ffn].named_parameters()}
    return names


def _drop_unread_query_table(module, state_dict, prefix, *_) -> None:
    """The reference builds the learned-query table for every ``z_init_method`` and reads it only
    for ``zeros``; ours exists only there, so a converted checkpoint's unread table is dropped."""
    for key in [k for k in state_dict if k.startswith(f"{prefix}dec_pos.")]:
        del state_dict[key]
