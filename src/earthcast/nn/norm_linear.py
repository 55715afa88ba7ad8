"""``Linear(LayerNorm(x))`` that keeps only ``x`` for backward.

Pre-norm attention projections (q/k/v of every cuboid layer) and patch merging apply a Linear
straight to a LayerNorm output. Autograd then keeps both the LayerNorm input (for the norm's
backward) and its output (for the Linear's weight gradient): two activations per layer where one
determines the other. :func:`norm_linear` runs the pair as one autograd function that saves the
input and its per-row statistics and recomputes the normalised rows in backward, an elementwise
pass that costs far less than the matmuls around it. The backward uses ATen's own LayerNorm
backward, so gradients equal autograd's to rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from earthcast.nn.precision import plain_ops
from earthcast.nn.rowmm import linear_rows, rows_times, weight_grad


def norm_linear(x: Tensor, norm: nn.Module, linear: nn.Linear) -> Tensor:
    """``linear(norm(x))`` for ``x (..., C_in)`` → ``(..., C_out)``.

    With an affine ``nn.LayerNorm``, gradients on and no autocast, computed by the memory-lean
    fused function (see module docstring); otherwise the plain composition.
    """
    if not (
        isinstance(norm, nn.LayerNorm)
        and norm.elementwise_affine
        and len(norm.normalized_shape) == 1
        and torch.is_grad_enabled()
        and not plain_ops(x)
    ):
        return linear(norm(x))
    flat = x.reshape(-1, x.shape[-1])
    y = _LayerNormLinear.apply(flat, norm.weight, norm.bias, linear.weight, linear.bias, norm.eps)
    return y.view(*x.shape[:-1], y.shape[-1])


def layer_norm_rows(
    x: Tensor, weight: Tensor, bias: Tensor | None, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    """LayerNorm of the rows of ``x (N, C)``: ``(normalised, mean, rstd)`` as ATen returns them."""
    return torch.native_layer_norm(x, (x.shape[-1],), weight, bias, eps)


class _LayerNormLinear(torch.autograd.Function):
    """``LN(x)·Wᵀ + b`` on ``x (N, C)`` saving ``x``, the row statistics and the weights."""

    @staticmethod
    def forward(ctx, x, ln_w, ln_b, w, b, eps: float):
        xn, mean, rstd = layer_norm_rows(x, ln_w, ln_b, eps)
        y = linear_rows(xn, w, b)
        ctx.save_for_backward(x, mean, rstd, ln_w, ln_b, w)
        ctx.eps, ctx.has_bias = eps, b is not None
        return y

    @staticmethod
    def backward(ctx, grad):
        x, mean, rstd, ln_w, ln_b, w = ctx.saved_tensors
        grad = grad.contiguous()  # once, for both products
        need_x, need_lnw, need_lnb, need_w, need_b = ctx.needs_input_grad[:5]
        g_w = g_b = None
        if need_w:
            xn = layer_norm_rows(x, ln_w, ln_b, ctx.eps)[0]  # recomputed, as forward made it
            g_w = weight_grad(grad, xn)
            del xn
        if need_b and ctx.has_bias:
            g_b = grad.sum(0)
        g_x = g_lnw = g_lnb = None
        if need_x or need_lnw or need_lnb:
            g_x, g_lnw, g_lnb = torch.ops.aten.native_layer_norm_backward(
                rows_times(grad, w),
                x,
                (x.shape[-1],),
                mean,
                rstd,
                ln_w,
                ln_b,
                [need_x, need_lnw, need_lnb],
            )
        return g_x, g_lnw, g_lnb, g_w, g_b, None
