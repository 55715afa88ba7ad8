"""Attention kernel shared by cuboid self/cross attention and the global-vector paths.

Two interchangeable backends compute the same function:

* ``"sdpa"`` — :func:`torch.nn.functional.scaled_dot_product_attention` with the relative bias and
  the boolean mask folded into one additive mask (fused kernels on CPU and GPU, no materialised
  probability tensor in the flash/efficient kernels);
* ``"eager"`` — the plain ``softmax(q·kᵀ·scale + bias)`` written out, kept as the executable
  specification the tests compare the fast path against.

*Block queries.* Some attention maps use a different query projection per key block (tokens
reading their cuboid with ``q`` and the global vectors with ``q_l2g``; SPEC §1.7). The logits are
then ``[q₀·k₀ᵀ, q₁·k₁ᵀ, …]`` under one softmax. The SDPA path computes this exactly with a single
call by concatenating the queries along the feature axis and zero-padding every key block into
its own feature slot, so ``[q₀|q₁]·[k₀|0]ᵀ = q₀·k₀ᵀ``.

*Masked rows.* A query whose every key is masked returns zeros (as the reference's
``softmax(...)·mask``), never NaN, on both backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Backend = Literal["sdpa", "eager"]
BACKENDS = ("sdpa", "eager")


def mask_value(dtype: torch.dtype) -> float:
    """A large negative logit that exp() maps to exactly 0 in ``dtype`` (finite, so no NaN)."""
    return -1e4 if dtype == torch.float16 else -1e18


def attend(
    queries: Tensor | Sequence[Tensor],
    keys: Tensor | Sequence[Tensor],
    values: Tensor | Sequence[Tensor],
    *,
    scale: float,
    bias: Tensor | None = None,
    allowed: Tensor | None = None,
    dropout_p: float = 0.0,
    backend: Backend = "sdpa",
) -> Tensor:
    """Scaled dot-product attention over (possibly several) key blocks.

    Args:
        queries: ``(..., Lq, D)``, or one such tensor per key block (block queries).
        keys: ``(..., Lk, D)`` or a sequence of key blocks ``(..., Lk_j, D_j)``, concatenated
            along ``Lk`` in order.
        values: ``(..., Lk, Dv)`` or a sequence of value blocks matching ``keys``.
        scale: multiplier of the logits.
        bias: additive logits, broadcastable to ``(..., Lq, Lk)``.
        allowed: boolean, broadcastable to ``(..., Lq, Lk)``; False entries are excluded.
        dropout_p: dropout on the attention probabilities (pass 0.0 in eval mode).
        backend: ``"sdpa"`` (fast) or ``"eager"`` (reference).

    Returns:
        ``(..., Lq, Dv)``
    """
    key_blocks = [keys] if isinstance(keys, Tensor) else list(keys)
    query_blocks = [queries] * len(key_blocks) if isinstance(queries, Tensor) else list(queries)
    if len(query_blocks) != len(key_blocks):
        raise ValueError(f"{len(query_blocks)} query blocks for {len(key_blocks)} key blocks")
    v = values if isinstance(values, Tensor) else torch.cat(list(values), dim=-2)
    if backend == "eager":
        return _eager(query_blocks, key_blocks, v, scale, bias, allowed, dropout_p)
    if backend != "sdpa":
        raise ValueError(f"unknown attention backend '{backend}', choose one of {BACKENDS}")
    q, k = _fold_blocks(query_blocks, key_blocks)
    mask = None
    if bias is not None:
        mask = bias.to(q.dtype)
    if allowed is not None:
        neg = torch.tensor(mask_value(q.dtype), dtype=q.dtype, device=q.device)
        mask = torch.where(
            allowed, mask if mask is not None else torch.zeros((), dtype=q.dtype, device=q.device), neg
        )
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    if allowed is not None:
        out = out * allowed.any(dim=-1, keepdim=True).to(out.dtype)
    return out


def _fold_blocks(query_blocks: list[Tensor], key_blocks: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Turn block queries into one query/key pair with identical logits (see module docstring)."""
    if all(qb is query_blocks[0] for qb in query_blocks):
        return query_blocks[0], torch.cat(key_blocks, dim=-2)
    widths = [qb.shape[-1] for qb in query_blocks]
    q = torch.cat(query_blocks, dim=-1)
    padded = []
    for j, kb in enumerate(key_blocks):
        before, after = sum(widths[:j]), sum(widths[j + 1 :])
        padded.append(F.pad(kb, (before, after)))
    return q, torch.cat(padded, dim=-2)


def _eager(
    query_blocks: list[Tensor],
    key_blocks: list[Tensor],
    v: Tensor,
    scale: float,
    bias: Tensor | None,
    allowed: Tensor | None,
    dropout_p: float,
) -> Tensor:
    logits = torch.cat(
        [(qb * scale) @ kb.transpose(-2, -1) for qb, kb in zip(query_blocks, key_blocks)], dim=-1
    )
    if bias is not None:
        logits = logits + bias
    if allowed is not None:
        logits = logits.masked_fill(~allowed, mask_value(logits.dtype))
    probs = torch.softmax(logits, dim=-1)
    if allowed is not None:
        probs = probs * allowed
    if dropout_p > 0:
        probs = F.dropout(probs, p=dropout_p)
    return probs @ v
