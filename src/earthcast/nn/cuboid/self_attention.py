"""Cuboid self-attention (SPEC §1.1–1.8): one layer, and the block stacking several of them.

Axis legend: ``b`` batch, ``t h w`` grid, ``c`` channels, ``n`` cuboids, ``v`` cuboid volume,
``h`` heads (inside attention), ``d`` head width, ``p`` global vectors.

A layer = pre-norm → decompose (pad, shift, regroup) → attention inside each cuboid (+ global
vectors) → merge (regroup, unshift, crop). The caller adds the residual. All cuboids are one
batched attention call; there is no Python loop over cuboids.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from earthcast.nn.attention import attend
from earthcast.nn.cuboid.decomposition import (
    check_grid,
    check_padding_type,
    check_sizes,
    clamp_cuboid,
    from_cuboid_heads,
    normalize_strategy,
    pad,
    pad_amounts,
    projection_commutes_with_padding,
    roll,
    to_cuboid_heads,
    unpad,
)
from earthcast.nn.cuboid.global_vectors import GlobalVectorPaths, check_globals
from earthcast.nn.cuboid.masks import self_attention_mask
from earthcast.nn.cuboid.relative_bias import RelativePositionBias
from earthcast.nn.dropout import Dropout
from earthcast.nn.mlp import PositionwiseFFN
from earthcast.nn.norm import make_norm
from earthcast.nn.norm_linear import norm_linear
from earthcast.nn.rowmm import Linear


def attend_in_cuboids(
    queries: list[Tensor],
    keys: list[Tensor],
    values: list[Tensor],
    bias: Tensor | None,
    allowed: Tensor | None,
    scale: float,
    dropout_p: float,
    backend: str,
) -> Tensor:
    """Attention inside every cuboid, all cuboids in one kernel call.

    Args:
        queries/keys/values: blocks ``(B, n, h, v, ·)`` / ``(B, n, h, L_j, ·)`` (see ``attend``).
        bias: ``(h, v, L)`` shared by all cuboids, or None.
        allowed: ``(n, v, L)`` per-cuboid mask, or None.

    Returns:
        ``(B, n, h, v, d)``
    """
    b, n, h = queries[0].shape[:3]
    if allowed is None:
        # one mask for all cuboids: fold cuboids into the batch, broadcast the bias over it
        fold = "b n h v d -> (b n) h v d"
        mask_bias, mask = bias, None
    else:
        # per-cuboid masks: fold heads into the cuboid axis so the mask needs no per-batch copy
        fold = "b n h v d -> b (n h) v d"
        mask_bias = None if bias is None else rearrange(bias.expand(n, -1, -1, -1), "n h v l -> (n h) v l")
        mask = rearrange(allowed[:, None].expand(-1, h, -1, -1), "n h v l -> (n h) v l")
    out = attend(
        [rearrange(t, fold) for t in queries],
        [rearrange(t, fold) for t in keys],
        [rearrange(t, fold) for t in values],
        scale=scale,
        bias=mask_bias,
        allowed=mask,
        dropout_p=dropout_p,
        backend=backend,
    )
    unfold = "(b n) h v d -> b n h v d" if allowed is None else "b (n h) v d -> b n h v d"
    return rearrange(out, unfold, b=b, n=n, h=h)


def run_layer(layer: nn.Module, args: tuple, checkpointed: bool):
    """``layer(*args)``; with ``checkpointed`` its activations are recomputed in backward
    (``checkpoint_level`` 2 of the cuboid blocks)."""
    return checkpoint(layer, *args, use_reentrant=False) if checkpointed else layer(*args)


class CuboidSelfAttention(nn.Module):
    """One cuboid self-attention layer.

    Args:
        dim: channels ``C``; num_heads: heads (``C`` divisible by it).
        cuboid_size: requested ``(bT, bH, bW)``; clamped at runtime to the data (SPEC §1.2).
        shift_size: cyclic shift ``(sT, sH, sW)``; strategy: per axis ``"l"``/``"d"``.
        padding_type: ``ignore`` (masked), ``zeros`` or ``nearest``.
        num_global_vectors: ``P``; when > 0 ``forward`` takes and returns the global vectors.
        separate_global_qkv, use_global_self_attn, global_dim_ratio: see ``global_vectors.py``.
        backend: attention kernel, ``"auto"`` | ``"sdpa"`` | ``"eager"`` (see ``nn/attention.py``).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        cuboid_size: Sequence[int] = (2, 7, 7),
        shift_size: Sequence[int] = (0, 0, 0),
        strategy: str | Sequence[str] = ("l", "l", "l"),
        padding_type: str = "ignore",
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        use_final_proj: bool = True,
        norm: str = "layer_norm",
        num_global_vectors: int = 0,
        use_global_self_attn: bool = False,
        separate_global_qkv: bool = False,
        global_dim_ratio: int = 1,
        use_relative_pos: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        if num_global_vectors < 0:
            raise ValueError(
                f"num_global_vectors must be ≥ 0 (0: no global vectors), got {num_global_vectors}"
            )
        self.dim, self.heads = dim, num_heads
        self.cuboid_size = check_sizes("cuboid_size", cuboid_size, 3, 1)
        self.shift_size = check_sizes("shift_size", shift_size, 3, 0)
        self.strategy = normalize_strategy(strategy)
        self.padding_type = check_padding_type(padding_type)
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.attn_drop = attn_drop
        self.backend = backend
        self.norm = make_norm(norm, dim)
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)
        self.rel_bias = RelativePositionBias(self.cuboid_size, num_heads) if use_relative_pos else None
        self.proj = Linear(dim, dim) if use_final_proj else nn.Identity()
        self.proj_drop = Dropout(proj_drop, inplace=use_final_proj)  # in place only on fresh Linear outputs
        self.num_global_vectors = num_global_vectors
        self.glob = (
            GlobalVectorPaths(
                dim,
                num_heads,
                separate_global_qkv,
                use_global_self_attn,
                global_dim_ratio,
                qkv_bias,
                norm,
                use_final_proj,
            )
            if num_global_vectors > 0
            else None
        )

    def forward(self, x: Tensor, global_vectors: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """``x (B, T, H, W, C)`` [+ globals ``(B, P, Cg)``] → update of the same shape(s).

        Returns the attention output (no residual); with global vectors also their update.
        Projections are per token, so they run on the grid; q, k, v are regrouped into cuboids in
        one copy and the output regrouped back in one copy.
        """
        check_grid(x, self.dim)
        check_globals(global_vectors, self.num_global_vectors)
        shape = tuple(x.shape[1:4])
        cuboid, shift = clamp_cuboid(shape, self.cuboid_size, self.shift_size, self.strategy)
        pads = pad_amounts(shape, cuboid)
        grid = tuple(s + p for s, p in zip(shape, pads))
        if self._project_before_padding(pads):
            # LayerNorm → qkv as one lean function; padding/shifting the projected tokens is the same
            qkv = roll(pad(norm_linear(x, self.norm, self.qkv), pads, self.padding_type), shift)
            normed = None  # only separate global projections read the normed grid itself
        else:
            normed = roll(pad(self.norm(x), pads, self.padding_type), shift)  # (B, T', H', W', C)
            qkv = self.qkv(normed)  # (B, T', H', W', 3C)
        allowed, valid = self_attention_mask(
            shape, cuboid, shift, self.strategy, self.padding_type, qkv.device
        )
        bias = self.rel_bias(cuboid) if self.rel_bias is not None else None  # (h, v, v)

        def to_heads(
            t: Tensor, parts: int = 1
        ) -> Tensor:  # (B, T', H', W', parts·h·d) → (parts, B, n, h, v, d)
            return to_cuboid_heads(t, cuboid, self.strategy, self.heads, parts)

        q, k, v = to_heads(qkv, 3)  # each (B, n, h, v, d)
        new_globals = None
        if self.glob is None:
            out = attend_in_cuboids([q], [k], [v], bias, allowed, self.scale, self._dropout_p, self.backend)
        else:
            g = self.glob.norm(global_vectors)  # (B, P, Cg)
            out = self._tokens_with_globals(g, normed, to_heads, q, k, v, bias, allowed)
            new_globals = self._update_globals(g, normed, to_heads, k, v, valid)

        x = from_cuboid_heads(out, cuboid, self.strategy, grid)  # (B, T', H', W', C)
        x = unpad(roll(x, shift, inverse=True), pads, self.padding_type)  # (B, T, H, W, C)
        x = self.proj_drop(self.proj(x))
        return x if new_globals is None else (x, new_globals)

    def _project_before_padding(self, pads: Sequence[int]) -> bool:
        """Whether q/k/v may be projected on the unpadded grid (separate global projections
        need the normed grid itself)."""
        if self.glob is not None and self.glob.separate:
            return False
        return projection_commutes_with_padding(pads, self.padding_type, self.qkv.bias is not None)

    @property
    def _dropout_p(self) -> float:
        return self.attn_drop if self.training else 0.0

    def _tokens_with_globals(self, g, grid, to_heads, q, k, v, bias, allowed) -> Tensor:
        """Tokens attend to their cuboid plus the P globals (one softmax). → ``(B, n, h, v, d)``."""
        gk = self.glob.keys_for_tokens(g, grid, to_heads)
        b, n, h, _, d = q.shape
        p = gk.key.shape[-2]
        g_key = gk.key[:, None].expand(b, n, h, p, d)
        g_val = gk.value[:, None].expand(b, n, h, p, d)
        if bias is not None:
            bias = F.pad(bias, (0, p))  # global columns carry no positional bias
        if allowed is not None:
            allowed = F.pad(allowed, (0, p), value=True)  # globals are never masked
        queries = [q] if gk.token_query is None else [q, gk.token_query]
        keys = [torch.cat([k, g_key], dim=-2)] if gk.token_query is None else [k, g_key]
        return attend_in_cuboids(
            queries, keys, [v, g_val], bias, allowed, self.scale, self._dropout_p, self.backend
        )

    def _update_globals(self, g, grid, to_heads, k, v, valid) -> Tensor:
        """Globals attend to every token (and themselves). → update ``(B, P, Cg)``."""
        queries, keys, values = self.glob.update_inputs(g, grid, to_heads, k, v)
        mask = self.glob.token_key_mask(valid, g.shape[1], len(keys) > 1)
        out = attend(
            queries,
            keys,
            values,
            scale=self.scale,
            allowed=mask,
            dropout_p=self._dropout_p,
            backend=self.backend,
        )  # (B, h, P, dg)
        out = rearrange(out, "b h p d -> b p (h d)")
        return self.proj_drop(self.glob.proj(out))


class CuboidSelfAttentionBlock(nn.Module):
    """A stack of cuboid self-attention layers with FFNs (SPEC §1.8).

    ``use_inter_ffn=True``: ``x ← x + Attn_k(x); x ← FFN_k(x)`` for each layer ``k``;
    otherwise all attention layers (each residual) then one FFN. Global vectors get the same
    residual update and, optionally, their own FFN.

    Args:
        layers: one ``(cuboid_size, strategy, shift_size)`` triple per stacked layer, e.g. from
            :func:`earthcast.nn.cuboid.patterns.get_self_pattern`.
        checkpoint_level: 0 none, 1 FFNs, 2 FFNs and attention (activation checkpointing).
        Other arguments are passed to :class:`CuboidSelfAttention` / :class:`PositionwiseFFN`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        layers: Sequence[tuple[Sequence[int], Sequence[str], Sequence[int]]],
        *,
        padding_type: str = "ignore",
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        ffn_drop: float = 0.0,
        activation: str = "leaky",
        gated_ffn: bool = False,
        norm: str = "layer_norm",
        use_inter_ffn: bool = True,
        num_global_vectors: int = 0,
        use_global_vector_ffn: bool = True,
        use_global_self_attn: bool = False,
        separate_global_qkv: bool = False,
        global_dim_ratio: int = 1,
        use_relative_pos: bool = True,
        use_final_proj: bool = True,
        checkpoint_level: int = 0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not layers:
            raise ValueError("a cuboid block needs at least one (cuboid_size, strategy, shift) layer")
        self.use_inter_ffn = use_inter_ffn
        self.checkpoint_level = checkpoint_level
        self.use_globals = num_global_vectors > 0
        n_ffn = len(layers) if use_inter_ffn else 1

        def ffn(width: int) -> PositionwiseFFN:
            recompute = checkpoint_level >= 1
            return PositionwiseFFN(width, 4 * width, ffn_drop, activation, gated_ffn, norm, recompute)

        self.attns = nn.ModuleList(
            CuboidSelfAttention(
                dim,
                num_heads,
                cuboid,
                shift,
                strategy,
                padding_type,
                qkv_bias,
                None,
                attn_drop,
                proj_drop,
                use_final_proj,
                norm,
                num_global_vectors,
                use_global_self_attn,
                separate_global_qkv,
                global_dim_ratio,
                use_relative_pos,
                backend,
            )
            for cuboid, strategy, shift in layers
        )
        self.ffns = nn.ModuleList(ffn(dim) for _ in range(n_ffn))
        self.global_ffns = (
            nn.ModuleList(ffn(dim * global_dim_ratio) for _ in range(n_ffn))
            if self.use_globals and use_global_vector_ffn
            else None
        )

    def forward(self, x: Tensor, global_vectors: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """``x (B, T, H, W, C)`` [+ globals ``(B, P, Cg)``] → same shape(s)."""
        g = global_vectors
        for k, attn in enumerate(self.attns):
            if self.use_globals:
                dx, dg = run_layer(attn, (x, g), self.training and self.checkpoint_level >= 2)
                x, g = x + dx, g + dg
            else:
                x = x + run_layer(attn, (x,), self.training and self.checkpoint_level >= 2)
            if self.use_inter_ffn:
                x, g = self._ffn(k, x, g)
        if not self.use_inter_ffn:
            x, g = self._ffn(0, x, g)
        return (x, g) if self.use_globals else x

    def _ffn(self, k: int, x: Tensor, g: Tensor | None) -> tuple[Tensor, Tensor | None]:
        x = self.ffns[k](x)  # recomputes its own hidden layer at checkpoint_level ≥ 1
        if self.global_ffns is not None:
            g = self.global_ffns[k](g)
        return x, g
