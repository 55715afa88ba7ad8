"""Attention kernel shared by cuboid self/cross attention and the global-vector paths.

Two interchangeable backends compute the same function:

* ``"sdpa"`` — :func:`torch.nn.functional.scaled_dot_product_attention` with the relative bias and
  the boolean mask folded into one additive mask (fused kernels on CPU and GPU, no materialised
  probability tensor in the flash/efficient kernels);
* ``"eager"`` — the plain ``softmax(q·kᵀ·scale + bias)`` written out, kept as the executable
  specification the tests compare the fast path against;
* ``"auto"`` (default) — SDPA on GPU; on CPU the faster of the two for the problem size
  (explicit below ``CPU_SDPA_MIN_KEYS`` keys, SDPA above).

*Block queries.* Some attention maps use a different query projection per key block (tokens
reading their cuboid with ``q`` and the global vectors with ``q_l2g``; SPEC §1.7). The logits are
then ``[q₀·k₀ᵀ, q₁·k₁ᵀ, …]`` under one softmax. The SDPA path computes this exactly with a single
call by concatenating the queries along the feature axis and zero-padding every key block into
its own feature slot, so ``[q₀|q₁]·[k₀|0]ᵀ = q₀·k₀ᵀ``.

*Masked rows.* A query whose every key is masked returns zeros (as the reference's
``softmax(...)·mask``), never NaN, on both backends.

*Dropout on CPU.* PyTorch's CPU SDPA falls back to its math kernel with slow ``bernoulli_``
dropout; with attention dropout on a CPU tensor both backends use the explicit computation with
a fused dropout-matmul that keeps its mask packed, one bit per element, for backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from earthcast.nn.dropout import DropoutMask, dropout, new_seed, quantised
from earthcast.nn.precision import plain_ops
from earthcast.nn.scratch import scratch_copy
from earthcast.nn.softmax import softmax_last

Backend = Literal["auto", "sdpa", "eager"]
BACKENDS = ("auto", "sdpa", "eager")
# On CPU, SDPA's fused kernel pays a fixed cost per (batch, head) problem and loses to the explicit
# computation for the many small problems of cuboid attention (measured on 2 cores: explicit faster
# up to 512 keys, `benchmarks/attention_scaling.py`). The explicit kernel keeps the V×V
# probabilities for backward, so above 128 keys SDPA is used for its memory, not its speed.
CPU_SDPA_MIN_KEYS = 128


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
    backend: Backend = "auto",
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
        backend: ``"auto"``, ``"sdpa"`` or ``"eager"`` (see module docstring).

    Returns:
        ``(..., Lq, Dv)``
    """
    key_blocks = [keys] if isinstance(keys, Tensor) else list(keys)
    query_blocks = [queries] * len(key_blocks) if isinstance(queries, Tensor) else list(queries)
    if len(query_blocks) != len(key_blocks):
        raise ValueError(f"{len(query_blocks)} query blocks for {len(key_blocks)} key blocks")
    v = _join_values(values)
    if backend == "auto":
        backend = "sdpa" if v.is_cuda or v.shape[-2] >= CPU_SDPA_MIN_KEYS else "eager"
    if backend == "eager" or (dropout_p > 0 and v.device.type == "cpu"):
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


def _join_values(values: Tensor | Sequence[Tensor]) -> Tensor:
    """Value blocks concatenated along ``Lk``; one block is passed through (made contiguous,
    which is free when it already is), so backward keeps no second copy of it."""
    if isinstance(values, Tensor):
        return values
    blocks = list(values)
    return blocks[0].contiguous() if len(blocks) == 1 else torch.cat(blocks, dim=-2)


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
    # scale and bias are applied in place on the fresh logits: no scaled copy of q is kept
    blocks = [qb @ kb.transpose(-2, -1) for qb, kb in zip(query_blocks, key_blocks)]
    logits = (blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=-1)).mul_(scale)
    if bias is not None:
        logits = logits.add_(bias)
    if allowed is not None:
        logits = logits.masked_fill_(~allowed, mask_value(logits.dtype))
    probs = softmax_last(logits)
    if dropout_p > 0 and plain_ops(v):  # plain ops: autocast casts them (see nn/precision.py)
        out = dropout(probs, dropout_p) @ v
    elif dropout_p > 0:
        out = _DropoutMatmul.apply(probs, v, dropout_p, new_seed())
    else:
        out = probs @ v
    if allowed is not None:  # rows without any allowed key: zeros (softmax(...)·mask in the reference)
        out = out * allowed.any(dim=-1, keepdim=True).to(out.dtype)
    return out


class _DropoutMatmul(torch.autograd.Function):
    """``dropout(probs) @ v`` saving only ``probs`` (kept by softmax anyway) and ``v``."""

    @staticmethod
    def forward(ctx, probs: Tensor, v: Tensor, p: float, seed: int) -> Tensor:
        ctx.save_for_backward(probs, v)
        ctx.mask, ctx.scale = DropoutMask(p, seed), quantised(p)[1]
        dropped = ctx.mask.apply_(scratch_copy(probs, "dropped_probs"))
        return torch.matmul(dropped, v).mul_(ctx.scale)  # rescale the (smaller) output

    @staticmethod
    def backward(ctx, grad: Tensor):
        probs, v = ctx.saved_tensors
        dropped = scratch_copy(probs, "dropped_probs")
        g_probs = torch.matmul(grad, v.transpose(-2, -1))
        ctx.mask.apply_((dropped, g_probs), (1.0, ctx.scale))  # the forward's mask, unpacked once
        g_v = torch.matmul(dropped.transpose(-2, -1), grad).mul_(ctx.scale)
        return g_probs, _unbroadcast(g_v, v.shape), None, None


def _unbroadcast(grad: Tensor, shape: torch.Size) -> Tensor:
    """Sum ``grad`` over dimensions that were broadcast to reach it from ``shape``."""
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    for i, s in enumerate(shape):
        if s == 1 and grad.shape[i] != 1:
            grad = grad.sum(i, keepdim=True)
    return grad
