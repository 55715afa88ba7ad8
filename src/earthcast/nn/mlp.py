"""Position-wise feed-forward network (pre-norm, residual inside), optionally gated (SPEC §1.8).

``y = x + Drop(W2 · Drop(act(W1 · LN(x))))``, gated: ``act(W1g · LN(x)) ⊙ (W1 · LN(x))`` inside

Training uses a fused autograd function for the common (non-gated, LayerNorm) case. It computes
exactly the same function but saves only ``x``, the LayerNorm statistics and the pre-activation
``W1·LN(x)+b1`` (5 numbers per channel instead of ~15) and the two dropout masks packed to one bit
per element: the normalised input and the activation are recomputed in backward. The backward uses
ATen's own backward kernels, so gradients match autograd's to rounding.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from earthcast.nn.dropout import Dropout, DropoutMask, new_seed, quantised
from earthcast.nn.norm import make_norm
from earthcast.nn.norm_linear import layer_norm_rows
from earthcast.nn.precision import plain_ops
from earthcast.nn.rowmm import Linear, linear_rows, rows_times, weight_grad
from earthcast.nn.scratch import scratch, scratch_copy

Activation = Literal["gelu", "leaky", "relu", "silu", "identity"]
LEAKY_SLOPE = 0.1


def make_activation(name: str, inplace: bool = False) -> nn.Module:
    """``leaky`` is LeakyReLU(0.1), the Earthformer class default."""
    table = {
        "gelu": nn.GELU,
        "leaky": lambda: nn.LeakyReLU(LEAKY_SLOPE, inplace=inplace),
        "relu": lambda: nn.ReLU(inplace=inplace),
        "silu": lambda: nn.SiLU(inplace=inplace),
        "identity": nn.Identity,
    }
    if name not in table:
        raise ValueError(f"unknown activation '{name}', choose one of {sorted(table)}")
    return table[name]()


def _act_into(name: str, h: Tensor, out: Tensor) -> Tensor:
    """The activation ``name`` of ``h`` written into ``out``."""
    if name == "gelu":
        return torch.ops.aten.gelu.out(h, out=out)
    if name == "leaky":
        return torch.ops.aten.leaky_relu.out(h, LEAKY_SLOPE, out=out)
    if name == "relu":
        return torch.clamp_min(h, 0.0, out=out)
    if name == "silu":
        return torch.ops.aten.silu.out(h, out=out)
    return out.copy_(h)


def _act_forward(name: str, h: Tensor, inplace: bool = False) -> Tensor:
    """The activation ``name`` of ``h`` (``identity`` returns ``h``); ``inplace`` overwrites ``h``."""
    if name == "gelu":
        return torch.ops.aten.gelu_(h) if inplace else torch.nn.functional.gelu(h)
    if name == "leaky":
        return torch.nn.functional.leaky_relu(h, LEAKY_SLOPE, inplace=inplace)
    if name == "relu":
        return torch.nn.functional.relu(h, inplace=inplace)
    if name == "silu":
        return torch.nn.functional.silu(h, inplace=inplace)
    return h


def _act_backward_(name: str, grad: Tensor, h: Tensor) -> Tensor:
    """The activation's gradient w.r.t. its input ``h``, written over ``grad`` (no fresh buffer:
    on CPU a fresh large buffer pays its page faults again)."""
    if name == "gelu":
        return torch.ops.aten.gelu_backward.grad_input(grad, h, grad_input=grad)
    if name == "leaky":
        return torch.ops.aten.leaky_relu_backward.grad_input(grad, h, LEAKY_SLOPE, False, grad_input=grad)
    if name == "relu":
        return torch.ops.aten.threshold_backward.grad_input(grad, h, 0.0, grad_input=grad)
    return torch.ops.aten.silu_backward.grad_input(grad, h, grad_input=grad)


class _FusedPreNormMLP(torch.autograd.Function):
    """``x + D2(W2·D1(act(W1·LN(x)+b1))+b2)`` on ``x (N, C)`` with a memory-lean backward."""

    @staticmethod
    def forward(
        ctx, x, ln_w, ln_b, w1, b1, w2, b2, act: str, p: float, seed: int, eps: float, keep_hidden: bool
    ):
        xn, mean, rstd = layer_norm_rows(x, ln_w, ln_b, eps)
        h = linear_rows(xn, w1, b1)  # (N, hidden)
        a = _act_into(act, h, scratch(h.shape, h.dtype, "ffn_act", h.device))  # dies in this function
        scale = quantised(p)[1] if p > 0 else 1.0
        masks = (DropoutMask(p, seed), DropoutMask(p, seed + 1)) if p > 0 else None
        if masks:  # the rescaling of the first dropout is folded into the second matmul (alpha)
            masks[0].apply_(a)
        y = linear_rows(a, w2, b2, alpha=scale)  # (N, C)
        if masks:
            masks[1].apply_(y, scale)
        # without keep_hidden the pre-activation (4·C per row) is recomputed from x in backward
        ctx.save_for_backward(x, mean, rstd, ln_w, ln_b, w1, b1, w2, h if keep_hidden else None)
        ctx.act, ctx.masks, ctx.eps, ctx.scale = act, masks, eps, scale
        return y.add_(x)

    @staticmethod
    def backward(ctx, grad_out):
        x, mean, rstd, ln_w, ln_b, w1, b1, w2, h = ctx.saved_tensors
        masks, scale = ctx.masks, ctx.scale
        c = x.shape[-1]
        g_y = masks[1].apply_(scratch_copy(grad_out, "ffn_grad_out")) if masks else grad_out
        # recompute what forward did not keep
        xn = layer_norm_rows(x, ln_w, ln_b, ctx.eps)[0]
        if h is None:
            h = linear_rows(xn, w1, b1)
        a = _act_into(ctx.act, h, scratch(h.shape, h.dtype, "ffn_act", h.device))
        g_a = rows_times(g_y, w2)
        if masks:  # the first dropout's mask, unpacked once for the activation and its gradient
            masks[0].apply_((a, g_a), (1.0, scale * scale))
        # g_y carries one factor `scale` (second dropout), the first dropout another
        g_w2 = weight_grad(g_y, a).mul_(scale * scale)  # scale is 1.0 without dropout
        g_b2 = g_y.sum(0).mul_(scale) if masks else g_y.sum(0)
        g_h = _act_backward_(ctx.act, g_a, h)
        g_w1 = weight_grad(g_h, xn)
        g_b1 = g_h.sum(0)
        g_xn = rows_times(g_h, w1)
        g_x, g_lnw, g_lnb = torch.ops.aten.native_layer_norm_backward(
            g_xn, x, (c,), mean, rstd, ln_w, ln_b, [True, True, True]
        )
        return g_x.add_(grad_out), g_lnw, g_lnb, g_w1, g_b1, g_w2, g_b2, None, None, None, None, None


class PositionwiseFFN(nn.Module):
    """Pre-norm FFN with the residual inside: ``(..., C)`` → ``(..., C)``.

    Args:
        dim: channels; hidden: hidden width (Earthformer: 4·dim).
        dropout: rate after the activation and after the second projection.
        activation: ``gelu`` | ``leaky`` | ``relu`` | ``silu``; gated: ``act(W1g·x) ⊙ (W1·x)``.
        norm: ``layer_norm`` | ``rms_norm``.
        recompute_hidden: in training keep only the input for backward and recompute the hidden
            layer (``checkpoint_level ≥ 1`` of the cuboid blocks). The fused path then recomputes
            just ``W1·LN(x)`` (one matmul of six), not the whole FFN as generic checkpointing would.
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        dropout: float = 0.0,
        activation: str = "leaky",
        gated: bool = False,
        norm: str = "layer_norm",
        recompute_hidden: bool = False,
    ) -> None:
        super().__init__()
        self.recompute_hidden = recompute_hidden
        self.norm = make_norm(norm, dim)
        self.fc1 = Linear(dim, hidden)
        self.fc1_gate = Linear(dim, hidden) if gated else None
        self.activation = activation
        self.act = make_activation(activation)
        self.fc2 = Linear(hidden, dim)
        self.drop = Dropout(dropout)
        self.fusable = not gated and norm == "layer_norm" and activation in ("gelu", "leaky", "relu", "silu")

    def forward(self, x: Tensor) -> Tensor:
        """``x (..., C)`` → ``(..., C)``."""
        if self.fusable and torch.is_grad_enabled() and not plain_ops(x):
            p = self.drop.p if self.training else 0.0
            flat = x.reshape(-1, x.shape[-1])
            y = _FusedPreNormMLP.apply(
                flat,
                self.norm.weight,
                self.norm.bias,
                self.fc1.weight,
                self.fc1.bias,
                self.fc2.weight,
                self.fc2.bias,
                self.activation,
                p,
                new_seed() if p > 0 else 0,
                self.norm.eps,
                not (self.recompute_hidden and self.training),
            )
            return y.view(x.shape)
        if self.recompute_hidden and self.training and torch.is_grad_enabled():
            return checkpoint(self._composed, x, use_reentrant=False)
        return self._composed(x)

    def _composed(self, x: Tensor) -> Tensor:
        """The FFN as plain module calls (gated or RMS-normed FFNs, autocast, inference)."""
        y = self.norm(x)
        if not torch.is_grad_enabled() and self.fc1_gate is None and not (self.training and self.drop.p > 0):
            # inference: activation and residual in place on the fresh projections (no new
            # buffers: on CPU every fresh large buffer costs its page faults again)
            h = _act_forward(self.activation, self.fc1(y), inplace=True)
            return self.fc2(h).add_(x)
        if self.fc1_gate is not None:
            h = self.act(self.fc1_gate(y)) * self.fc1(y)
        else:
            h = self.act(self.fc1(y))
        return x + self.drop(self.fc2(self.drop(h)))
