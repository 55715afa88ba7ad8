"""Space-time resampling: patch merging (down) and per-frame nearest upsampling + conv (up)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from earthcast.nn.cuboid.decomposition import pad, pad_amounts
from earthcast.nn.norm import make_norm


class PatchMerging3D(nn.Module):
    """Gather each ``dT×dH×dW`` neighbourhood into one token: LayerNorm → Linear (SPEC §2.4).

    Non-divisible grids are padded first (``padding_type`` of the model), on every axis.
    """

    def __init__(
        self,
        dim: int,
        out_dim: int | None = None,
        factor: Sequence[int] = (1, 2, 2),
        padding_type: str = "nearest",
        norm: str = "layer_norm",
    ) -> None:
        super().__init__()
        self.factor = tuple(int(f) for f in factor)
        self.out_dim = out_dim or max(self.factor) * dim
        self.padding_type = padding_type
        volume = self.factor[0] * self.factor[1] * self.factor[2]
        self.norm = make_norm(norm, volume * dim)
        self.reduction = nn.Linear(volume * dim, self.out_dim, bias=False)

    def out_shape(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        """``(T, H, W, C)`` → shape after merging."""
        pads = pad_amounts(shape[:3], self.factor)
        t, h, w = ((s + p) // f for s, p, f in zip(shape[:3], pads, self.factor))
        return t, h, w, self.out_dim

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, H, W, C)`` → ``(B, T/dT, H/dH, W/dW, C_out)`` (ceil division)."""
        x = pad(x, pad_amounts(x.shape[1:4], self.factor), self.padding_type)
        dt, dh, dw = self.factor
        x = rearrange(x, "b (t dt) (h dh) (w dw) c -> b t h w (dt dh dw c)", dt=dt, dh=dh, dw=dw)
        return self.reduction(self.norm(x))


class Upsample2D(nn.Module):
    """Per-frame nearest resize to ``size=(H, W)`` then a 3×3 convolution (``Upsample3DLayer``)."""

    def __init__(self, dim: int, out_dim: int, size: Sequence[int], kernel_size: int = 3) -> None:
        super().__init__()
        self.size = tuple(int(s) for s in size)
        self.conv = nn.Conv2d(dim, out_dim, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, h, w, C)`` → ``(B, T, H, W, C_out)``."""
        b = x.shape[0]
        x = rearrange(x, "b t h w c -> (b t) c h w")
        if torch.is_grad_enabled():
            x = _NearestUpConv.apply(x, self.conv.weight, self.conv.bias, self.size)
        else:
            x = self.conv(F.interpolate(x, size=self.size, mode="nearest"))
        return rearrange(x, "(b t) c h w -> b t h w c", b=b)


class _NearestUpConv(torch.autograd.Function):
    """``conv3x3(nearest_resize(x))`` keeping the small ``x`` for backward, not the resized copy."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, size: tuple[int, int]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.size = size
        up = F.interpolate(x, size=size, mode="nearest")
        return F.conv2d(up, weight, bias, padding=weight.shape[-1] // 2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        up = F.interpolate(x, size=ctx.size, mode="nearest")
        pad = weight.shape[-1] // 2
        g_up, g_w, g_b = torch.ops.aten.convolution_backward(
            grad,
            up,
            weight,
            [weight.shape[0]],
            [1, 1],
            [pad, pad],
            [1, 1],
            False,
            [0, 0],
            1,
            [ctx.needs_input_grad[0], True, True],
        )
        g_x = None
        if ctx.needs_input_grad[0]:
            g_x = torch.ops.aten.upsample_nearest2d_backward(g_up, list(ctx.size), list(x.shape), None, None)
        return g_x, g_w, g_b, None
