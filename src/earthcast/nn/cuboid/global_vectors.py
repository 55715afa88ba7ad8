"""Global vectors: P learned tokens through which isolated cuboids exchange information (SPEC §1.7).

Inside one cuboid self-attention layer:

* tokens → globals ("l2g"): each token's key/value set is its cuboid plus the P globals, one
  joint softmax over ``v + P`` keys;
* globals → tokens ("g2l"): each global queries every token of the (padded, shifted) grid,
  optionally also the globals themselves (``use_global_self_attn``), one joint softmax.

Projections are either shared (tokens reuse their own q/k/v; globals get one ``Linear(C→3C)``) or
separate (five projections, allowing a global width ``global_dim_ratio·C``).

Axis legend: ``b`` batch, ``n`` cuboids, ``v`` volume, ``h`` heads, ``d`` head width, ``p`` globals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from earthcast.nn.norm import make_norm
from earthcast.nn.rowmm import Linear


def check_globals(global_vectors: Tensor | None, num_global_vectors: int) -> None:
    """A layer built with P global vectors must get them, one built without must not (silently
    ignoring them would drop the caller's only cross-cuboid path)."""
    if num_global_vectors > 0 and global_vectors is None:
        raise ValueError(
            f"this layer was built with num_global_vectors={num_global_vectors}: pass the global "
            "vectors (B, P, Cg) as the second argument"
        )
    if num_global_vectors == 0 and global_vectors is not None:
        raise ValueError(
            "global vectors were passed to a layer built with num_global_vectors=0; build it with "
            "num_global_vectors=P or drop the argument"
        )
    if global_vectors is not None and (
        global_vectors.dim() != 3 or global_vectors.shape[1] != num_global_vectors
    ):
        raise ValueError(
            f"global vectors must be (B, P={num_global_vectors}, Cg), got shape {tuple(global_vectors.shape)}"
        )


@dataclass
class GlobalKeys:
    """What tokens need to read the globals: optional own query, and the globals' keys/values."""

    token_query: Tensor | None  # (B, n, h, v, d) or None (reuse the token query)
    key: Tensor  # (B, h, P, d)
    value: Tensor  # (B, h, P, d)


class GlobalVectorPaths(nn.Module):
    """Projections and norms of the global-vector paths of one cuboid self-attention layer."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        separate_qkv: bool,
        use_self_attn: bool,
        dim_ratio: int = 1,
        qkv_bias: bool = False,
        norm: str = "layer_norm",
        use_final_proj: bool = True,
    ) -> None:
        super().__init__()
        if dim_ratio != 1 and not separate_qkv:
            raise ValueError("global_dim_ratio != 1 needs separate_global_qkv=True")
        self.heads = num_heads
        self.separate = separate_qkv
        self.use_self_attn = use_self_attn
        gdim = dim * dim_ratio
        self.gdim = gdim
        self.norm = make_norm(norm, gdim)
        if separate_qkv:
            self.token_q = Linear(dim, dim, bias=qkv_bias)  # tokens' query for reading globals
            self.kv = Linear(gdim, 2 * dim, bias=qkv_bias)  # globals as keys/values for tokens
            self.q = Linear(gdim, dim, bias=qkv_bias)  # globals' query for reading tokens
            self.token_k = Linear(dim, dim, bias=qkv_bias)
            self.token_v = Linear(dim, gdim, bias=qkv_bias)
            self.self_qkv = Linear(gdim, 3 * gdim, bias=qkv_bias) if use_self_attn else None
        else:
            self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = Linear(gdim, gdim) if use_final_proj else nn.Identity()

    def shared_qkv(self, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Shared mode: ``g (B, P, C)`` → q, k, v each ``(B, h, P, d)``."""
        return rearrange(self.qkv(g), "b p (three h d) -> three b h p d", three=3, h=self.heads).unbind(0)

    def keys_for_tokens(self, g: Tensor, grid: Tensor, to_heads: Callable[[Tensor], Tensor]) -> GlobalKeys:
        """Keys/values of the (normed) globals ``g (B, P, Cg)`` as seen by the tokens.

        ``grid (B, T', H', W', C)`` holds the normed (padded, shifted) tokens; ``to_heads`` regroups
        a projected grid into the cuboid attention layout ``(1, B, n, h, v, d)``.
        """
        if not self.separate:
            _, k, v = self.shared_qkv(g)
            return GlobalKeys(None, k, v)
        token_q = to_heads(self.token_q(grid))[0]  # (B, n, h, v, d)
        k, v = rearrange(self.kv(g), "b p (two h d) -> two b h p d", two=2, h=self.heads).unbind(0)
        return GlobalKeys(token_q, k, v)

    def update_inputs(
        self, g: Tensor, grid: Tensor, to_heads: Callable[[Tensor], Tensor], token_k: Tensor, token_v: Tensor
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Query/key/value blocks for the globals' read of all tokens (and of themselves).

        Args:
            g: normed globals ``(B, P, Cg)``; grid: normed tokens ``(B, T', H', W', C)``;
            to_heads: regroups a projected grid into ``(1, B, n, h, v, d)``;
            token_k/token_v: the tokens' own keys/values ``(B, n, h, v, d)`` (shared mode).

        Returns:
            per-block queries ``(B, h, P, ·)``, keys ``(B, h, L_j, ·)``, values ``(B, h, L_j, dg)``;
            token keys are flattened in cuboid order ``(n v)``.
        """
        flat = "b n h v d -> b h (n v) d"
        if not self.separate:
            q, k, v = self.shared_qkv(g)
            keys, values = [rearrange(token_k, flat)], [rearrange(token_v, flat)]
            if self.use_self_attn:
                keys.append(k)
                values.append(v)
            return [q] * len(keys), keys, values
        q = rearrange(self.q(g), "b p (h d) -> b h p d", h=self.heads)
        k_tok = rearrange(to_heads(self.token_k(grid))[0], flat)
        v_tok = rearrange(to_heads(self.token_v(grid))[0], flat)
        queries, keys, values = [q], [k_tok], [v_tok]
        if self.use_self_attn:
            gq, gk, gv = rearrange(
                self.self_qkv(g), "b p (three h d) -> three b h p d", three=3, h=self.heads
            )
            queries.append(gq)
            keys.append(gk)
            values.append(gv)
        return queries, keys, values

    @staticmethod
    def token_key_mask(valid: Tensor | None, num_globals: int, self_attn: bool) -> Tensor | None:
        """Boolean key mask ``(1, 1, 1, n·v [+P])`` for the globals' read, or ``None``."""
        if valid is None:
            return None
        mask = valid.reshape(-1)
        if self_attn:
            mask = torch.cat([mask, mask.new_ones(num_globals)])
        return mask[None, None, None, :]
