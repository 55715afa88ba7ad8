"""Cuboid cross-attention from decoder queries to encoder memory (SPEC §1.9), and its block.

Axis legend: ``b`` batch, ``t h w`` grid, ``c`` channels, ``n`` cuboids, ``vx``/``vm`` query and
memory cuboid volumes, ``h`` heads, ``d`` head width, ``p`` memory global vectors.

Space is decomposed like self-attention (``cuboid_hw``, ``shift_hw``, per-axis strategy); time is
cut into ``n_temporal`` groups. Queries are padded at the end of time and the memory at the
*start*, so the last memory frame stays aligned with the forecast. Query cuboid ``i`` attends to
memory cuboid ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from earthcast.nn.cuboid.decomposition import (
    check_grid,
    check_padding_type,
    check_sizes,
    from_cuboid_heads,
    normalize_strategy,
    pad,
    projection_commutes_with_padding,
    roll,
    to_cuboid_heads,
    unpad,
)
from earthcast.nn.cuboid.masks import cross_attention_mask
from earthcast.nn.cuboid.relative_bias import RelativePositionBias
from earthcast.nn.cuboid.self_attention import attend_in_cuboids, run_layer
from earthcast.nn.dropout import Dropout
from earthcast.nn.mlp import PositionwiseFFN
from earthcast.nn.norm import make_norm
from earthcast.nn.norm_linear import norm_linear
from earthcast.nn.rowmm import Linear


class CuboidCrossAttention(nn.Module):
    """One cuboid cross-attention layer.

    Args:
        dim, num_heads: width and heads.
        n_temporal: number of temporal groups; cuboid_hw/shift_hw: spatial cuboid and shift.
        strategy: ``(t, h, w)`` of ``"l"``/``"d"`` (dilated axes never shift).
        max_temporal_relative: temporal extent of the relative-bias table (``T_in + T_out``).
        cross_last_n_frames: attend only to the last n memory frames.
        use_global_vector: append the memory's global vectors to every key/value set.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        n_temporal: int = 1,
        cuboid_hw: Sequence[int] = (7, 7),
        shift_hw: Sequence[int] = (0, 0),
        strategy: str | Sequence[str] = ("d", "l", "l"),
        padding_type: str = "ignore",
        cross_last_n_frames: int | None = None,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        max_temporal_relative: int = 50,
        norm: str = "layer_norm",
        use_global_vector: bool = False,
        separate_global_qkv: bool = False,
        global_dim_ratio: int = 1,
        use_relative_pos: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        if int(n_temporal) != n_temporal or n_temporal < 1:
            raise ValueError(f"n_temporal must be a whole number ≥ 1 (temporal groups), got {n_temporal!r}")
        if cross_last_n_frames is not None and cross_last_n_frames < 1:
            raise ValueError(
                f"cross_last_n_frames must be ≥ 1, or None to attend to every memory frame, "
                f"got {cross_last_n_frames}"
            )
        if global_dim_ratio != 1 and not separate_global_qkv:
            raise ValueError("global_dim_ratio != 1 needs separate_global_qkv=True")
        self.dim, self.heads = dim, num_heads
        self.n_temporal = int(n_temporal)
        self.strategy = normalize_strategy(strategy)
        self.cuboid_hw = check_sizes("cuboid_hw", cuboid_hw, 2, 1)
        shift_hw = check_sizes("shift_hw", shift_hw, 2, 0)
        self.shift_hw = tuple(0 if self.strategy[i + 1] == "d" else s for i, s in enumerate(shift_hw))
        self.padding_type = check_padding_type(padding_type)
        self.cross_last_n_frames = cross_last_n_frames
        self.max_temporal_relative = max_temporal_relative
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.attn_drop = attn_drop
        self.backend = backend
        self.norm = make_norm(norm, dim)
        self.q = Linear(dim, dim, bias=qkv_bias)
        self.kv = Linear(dim, 2 * dim, bias=qkv_bias)
        extent = (max_temporal_relative, *self.cuboid_hw)
        self.rel_bias = RelativePositionBias(extent, num_heads) if use_relative_pos else None
        self.proj = Linear(dim, dim)
        self.proj_drop = Dropout(proj_drop, inplace=True)  # applied to the fresh output of self.proj
        self.use_global_vector = use_global_vector
        self.separate_global_qkv = separate_global_qkv and use_global_vector
        if self.separate_global_qkv:
            self.global_token_q = Linear(dim, dim, bias=qkv_bias)
            self.global_kv = Linear(global_dim_ratio * dim, 2 * dim, bias=qkv_bias)

    def forward(self, x: Tensor, mem: Tensor, mem_global_vectors: Tensor | None = None) -> Tensor:
        """``x (B, Tx, H, W, C)``, ``mem (B, Tm, H, W, C)`` [, ``(B, P, Cg)``] → ``(B, Tx, H, W, C)``."""
        check_grid(x, self.dim, "query")
        check_grid(mem, self.dim, "memory")
        if self.cross_last_n_frames is not None:
            mem = mem[:, -min(self.cross_last_n_frames, mem.shape[1]) :]
        _check_memory(x, mem, self.max_temporal_relative)
        t_x, h, w = x.shape[1:4]
        t_mem = mem.shape[1]
        nt, (bh, bw) = self.n_temporal, self.cuboid_hw
        pads_x = ((nt - t_x % nt) % nt, (bh - h % bh) % bh, (bw - w % bw) % bw)
        pads_m = ((nt - t_mem % nt) % nt, *pads_x[1:])
        # a shift of a whole padded axis or more is the cyclic shift of its remainder
        shift_hw = (self.shift_hw[0] % (h + pads_x[1]), self.shift_hw[1] % (w + pads_x[2]))
        shift = (0, *shift_hw)
        if self._project_before_padding(pads_x):  # LayerNorm → q as one lean function
            q_grid = roll(pad(norm_linear(x, self.norm, self.q), pads_x, self.padding_type), shift)
            x = None
        else:
            x = roll(pad(self.norm(x), pads_x, self.padding_type), shift)  # (B, Tx', H', W', C)
            q_grid = self.q(x)
        mem = roll(pad(mem, pads_m, self.padding_type, time_pad_left=True), shift)  # (B, Tm', H', W', C)
        x_cuboid = (q_grid.shape[1] // nt, bh, bw)
        m_cuboid = (mem.shape[1] // nt, bh, bw)
        allowed = cross_attention_mask(
            t_x,
            t_mem,
            (h, w),
            nt,
            self.cuboid_hw,
            shift_hw,
            self.strategy,
            self.padding_type,
            mem.device,
        )
        bias = self.rel_bias(x_cuboid, m_cuboid) if self.rel_bias is not None else None  # (h, vx, vm)

        q = to_cuboid_heads(q_grid, x_cuboid, self.strategy, self.heads)[0]  # (B, n, h, vx, d)
        k, v = to_cuboid_heads(self.kv(mem), m_cuboid, self.strategy, self.heads, 2)  # (B, n, h, vm, d)
        queries, keys, values = [q], [k], [v]
        if self.use_global_vector:
            x_heads = None
            if self.separate_global_qkv:
                x_heads = to_cuboid_heads(self.global_token_q(x), x_cuboid, self.strategy, self.heads)[0]
            queries, keys, values, bias, allowed = self._append_globals(
                x_heads, q, k, v, mem_global_vectors, bias, allowed
            )
        dropout_p = self.attn_drop if self.training else 0.0
        out = attend_in_cuboids(queries, keys, values, bias, allowed, self.scale, dropout_p, self.backend)
        x = from_cuboid_heads(out, x_cuboid, self.strategy, q_grid.shape[1:4])  # (B, Tx', H', W', C)
        x = unpad(roll(x, shift, inverse=True), pads_x, self.padding_type)  # (B, Tx, H, W, C)
        return self.proj_drop(self.proj(x))

    def _project_before_padding(self, pads: Sequence[int]) -> bool:
        """Whether q may be projected on the unpadded grid (a separate global query projection
        needs the normed grid itself)."""
        if self.use_global_vector and self.separate_global_qkv:
            return False
        return projection_commutes_with_padding(pads, self.padding_type, self.q.bias is not None)

    def _append_globals(self, token_q, q, k, v, mem_globals, bias, allowed):
        """Memory global vectors join every key/value set (never masked, no positional bias).

        ``token_q``: the queries' own projection for reading globals (separate mode) or None.
        """
        if mem_globals is None:
            raise ValueError("this cross-attention layer uses global vectors: pass mem_global_vectors")
        b, n, h, _, d = q.shape
        kv = self.global_kv(mem_globals) if self.separate_global_qkv else self.kv(mem_globals)
        gk, gv = rearrange(kv, "b p (two h d) -> two b h p d", two=2, h=h)
        p = gk.shape[-2]
        gk = gk[:, None].expand(b, n, h, p, d)
        gv = gv[:, None].expand(b, n, h, p, d)
        bias = None if bias is None else F.pad(bias, (0, p))
        allowed = None if allowed is None else F.pad(allowed, (0, p), value=True)
        if token_q is None:
            return [q], [torch.cat([k, gk], dim=-2)], [v, gv], bias, allowed
        return [q, token_q], [k, gk], [v, gv], bias, allowed


def _check_memory(x: Tensor, mem: Tensor, max_t: int) -> None:
    if x.shape[0] != mem.shape[0] or x.shape[2:] != mem.shape[2:]:
        raise ValueError(
            f"cross-attention needs memory with the query's batch, H, W and C: x {tuple(x.shape)}, "
            f"memory {tuple(mem.shape)}"
        )
    if x.shape[1] >= max_t or mem.shape[1] >= max_t:
        raise ValueError(
            f"sequence lengths (query {x.shape[1]}, memory {mem.shape[1]}) must be below "
            f"max_temporal_relative={max_t}; build the layer with a larger value"
        )


class CuboidCrossAttentionBlock(nn.Module):
    """A stack of cuboid cross-attention layers with FFNs (residual, like the self block).

    Args:
        layers: one ``(cuboid_hw, shift_hw, strategy, n_temporal)`` per layer, e.g. from
            :func:`earthcast.nn.cuboid.patterns.get_cross_pattern`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        layers: Sequence[tuple[Sequence[int], Sequence[int], Sequence[str], int]],
        *,
        padding_type: str = "ignore",
        cross_last_n_frames: int | None = None,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        ffn_drop: float = 0.0,
        activation: str = "leaky",
        gated_ffn: bool = False,
        norm: str = "layer_norm",
        use_inter_ffn: bool = True,
        max_temporal_relative: int = 50,
        use_global_vector: bool = False,
        separate_global_qkv: bool = False,
        global_dim_ratio: int = 1,
        use_relative_pos: bool = True,
        checkpoint_level: int = 0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.use_inter_ffn = use_inter_ffn
        self.checkpoint_level = checkpoint_level
        self.attns = nn.ModuleList(
            CuboidCrossAttention(
                dim,
                num_heads,
                n_t,
                hw,
                shift,
                strategy,
                padding_type,
                cross_last_n_frames,
                qkv_bias,
                None,
                attn_drop,
                proj_drop,
                max_temporal_relative,
                norm,
                use_global_vector,
                separate_global_qkv,
                global_dim_ratio,
                use_relative_pos,
                backend,
            )
            for hw, shift, strategy, n_t in layers
        )
        n_ffn = len(layers) if use_inter_ffn else 1
        self.ffns = nn.ModuleList(
            PositionwiseFFN(dim, 4 * dim, ffn_drop, activation, gated_ffn, norm, checkpoint_level >= 1)
            for _ in range(n_ffn)
        )

    def forward(self, x: Tensor, mem: Tensor, mem_global_vectors: Tensor | None = None) -> Tensor:
        """``x (B, Tx, H, W, C)``, ``mem (B, Tm, H, W, C)`` → ``(B, Tx, H, W, C)``."""
        for k, attn in enumerate(self.attns):
            x = x + run_layer(
                attn, (x, mem, mem_global_vectors), self.training and self.checkpoint_level >= 2
            )
            if self.use_inter_ffn:
                x = self.ffns[k](x)  # recomputes its own hidden layer at checkpoint_level ≥ 1
        if not self.use_inter_ffn:
            x = self.ffns[0](x)
        return x
