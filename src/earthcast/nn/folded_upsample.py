"""Nearest upsampling → 3×3 conv → 3×3 conv, folded into one convolution on the small grid.

A head stage of Earthformer upsamples each frame (nearest, by a whole factor ``s``), applies the
upsampling layer's 3×3 convolution and then, with nothing nonlinear in between, the first 3×3
convolution of its conv stack. Two linear maps in a row are one linear map: every output pixel
of phase ``(m, p)`` inside its ``s×s`` block reads a 3×3 window of *source* pixels (five
consecutive upsampled rows never span more than three source rows when ``s ≥ 2``). So the pair is
one 3×3 convolution of the small input with ``s²·C_out`` output channels, followed by a pixel
shuffle. It costs exactly what the second convolution alone costs on the large grid: the
upsampling convolution becomes free, and backward keeps the small input instead of the large
intermediate.

The only difference from the two-step computation is at the border: the second convolution
zero-pads the *intermediate* image, whereas the folded kernel sees the intermediate's values
just outside the image (the first convolution's bias plus whatever of the input its kernel
reaches). Those values live on a one-pixel ring; :func:`_ring_corrections` computes them with
1-D convolutions along the four edges and subtracts their contribution from the border pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from earthcast.nn.conv_grad import conv2d_grads
from earthcast.nn.tensor_cache import tensor_cache


def _phase_taps(factor: int, device, dtype) -> Tensor:
    """``T[m, a, j, k]`` = 1 when output row ``s·u + m`` reaches source row ``u − 1 + a`` through
    tap ``j`` of the second convolution and tap ``k`` of the first (3 taps each).

    Output row ``y`` reads intermediate rows ``y + j − 1``, which read upsampled rows
    ``y + j + k − 2``, i.e. source rows ``⌊(y + j + k − 2) / s⌋``; for ``y = s·u + m`` that is
    ``u + ⌊(m + j + k − 2) / s⌋``, independent of ``u``.
    """
    return _phase_taps_cpu(factor).to(device=device, dtype=dtype)


@tensor_cache(maxsize=16)
def _phase_taps_cpu(factor: int) -> Tensor:
    # built once on the CPU: filled element by element on a GPU it would be ~50 tiny kernels
    taps = torch.zeros(factor, 3, 3, 3, dtype=torch.float64)
    for m in range(factor):
        for j in range(3):
            for k in range(3):
                taps[m, (m + j + k - 2) // factor + 1, j, k] = 1.0
    return taps


def fold_kernels(
    up_weight: Tensor,
    up_bias: Tensor | None,
    conv_weight: Tensor,
    conv_bias: Tensor | None,
    factors: tuple[int, int],
) -> tuple[Tensor, Tensor | None]:
    """The folded ``(s_h·s_w·C_out, C_in, 3, 3)`` kernel (channels phase-major: ``(m, p, o)``)
    and its bias, which carries the first bias through the second kernel.

    Args:
        up_weight: ``(C_mid, C_in, 3, 3)``; up_bias: ``(C_mid,)`` or None.
        conv_weight: ``(C_out, C_mid, 3, 3)``; conv_bias: ``(C_out,)`` or None.
        factors: ``(s_h, s_w)``, each ≥ 2.
    """
    sh, sw = factors
    rows = _phase_taps(sh, up_weight.device, up_weight.dtype)
    cols = _phase_taps(sw, up_weight.device, up_weight.dtype)
    c_out, c_in = conv_weight.shape[0], up_weight.shape[1]
    # every pair of taps (j, J) of the second kernel with (k, K) of the first: one matmul over the
    # middle channels; the phase tables then only sum pairs (the cheap order of this contraction)
    pairs = torch.einsum("ocjJ,cikK->jkJKoi", conv_weight, up_weight).reshape(81, c_out * c_in)
    phases = torch.einsum("majk,pbJK->mpabjkJK", rows, cols).reshape(sh * sw * 9, 81)
    kernel = rearrange(phases @ pairs, "(m p a b) (o i) -> (m p o) i a b", m=sh, p=sw, a=3, o=c_out)
    bias = conv_bias
    if up_bias is not None:
        carried = torch.einsum("ocjJ,c->o", conv_weight, up_bias)
        bias = carried if bias is None else bias + carried
    return kernel, None if bias is None else bias.repeat(sh * sw)


def _ring_corrections(
    rows: Tensor,
    cols: Tensor,
    up_weight: Tensor,
    up_bias: Tensor | None,
    conv_weight: Tensor,
    factors: tuple[int, int],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """What the folded kernel adds from the intermediate's one-pixel ring outside the image.

    Args:
        rows: the input's first and last rows ``(N, C_in, 2, w)``; cols: its first and last
            columns ``(N, C_in, h, 2)``.

    Returns the amounts to subtract from the top and bottom output rows ``(N, C_out, s_w·w)``
    and the left and right output columns ``(N, C_out, s_h·h)``. The ring's corners belong to the
    top and bottom rows, so no corner is counted twice.
    """
    sh, sw = factors
    rows = rows.repeat_interleave(sw, dim=-1)  # upsampled rows 0 and H−1, (N, C_in, 2, s_w·w)
    cols = cols.repeat_interleave(sh, dim=-2)
    # intermediate row −1 sees only upsampled row 0, through the first kernel's last row of taps;
    # padding 2 covers columns −1 … s_w·w (the corners)
    above = F.conv1d(rows[:, :, 0], up_weight[:, :, 2, :], up_bias, padding=2)
    below = F.conv1d(rows[:, :, 1], up_weight[:, :, 0, :], up_bias, padding=2)
    left = F.conv1d(cols[..., 0], up_weight[:, :, :, 2], up_bias, padding=1)
    right = F.conv1d(cols[..., 1], up_weight[:, :, :, 0], up_bias, padding=1)
    return (
        F.conv1d(above, conv_weight[:, :, 0, :]),
        F.conv1d(below, conv_weight[:, :, 2, :]),
        F.conv1d(left, conv_weight[:, :, :, 0], padding=1),
        F.conv1d(right, conv_weight[:, :, :, 2], padding=1),
    )


class _ConvAndEdges(torch.autograd.Function):
    """``conv2d(x, kernel, bias, padding=1)`` plus copies of ``x``'s border rows and columns.

    Sliced out with autograd, every edge would send back a zero tensor the size of ``x`` (and in
    the default layout, so the sum with the channels-last convolution gradient takes a slow mixed-
    layout path); here backward adds the four edge gradients into the convolution's in place.
    """

    @staticmethod
    def forward(ctx, x: Tensor, kernel: Tensor, bias: Tensor | None):
        ctx.save_for_backward(x, kernel)
        ctx.has_bias = bias is not None
        blocks = F.conv2d(x, kernel, bias, padding=1)  # under autocast: in its lower precision
        ctx.compute_dtype = blocks.dtype
        rows = x[:, :, [0, -1], :].contiguous()  # (N, C, 2, w)
        cols = x[:, :, :, [0, -1]].contiguous()  # (N, C, h, 2)
        return blocks, rows, cols

    @staticmethod
    def backward(ctx, g_blocks: Tensor, g_rows: Tensor, g_cols: Tensor):
        x, kernel = ctx.saved_tensors
        needs = ctx.needs_input_grad
        # backward runs outside autocast: compute in the forward's precision, return in the inputs'
        dtype = ctx.compute_dtype
        g_x, g_kernel, g_bias = conv2d_grads(
            g_blocks.to(dtype), x.to(dtype), kernel.to(dtype), 1, *needs[:2], ctx.has_bias and needs[2]
        )
        g_x = None if g_x is None else g_x.to(x.dtype)
        g_kernel = None if g_kernel is None else g_kernel.to(kernel.dtype)
        g_bias = None if g_bias is None else g_bias.to(kernel.dtype)
        if g_x is not None:
            g_x[:, :, 0, :] += g_rows[:, :, 0]
            g_x[:, :, -1, :] += g_rows[:, :, 1]
            g_x[:, :, :, 0] += g_cols[..., 0]
            g_x[:, :, :, -1] += g_cols[..., 1]
        return g_x, g_kernel, g_bias


def upsample_conv_conv(
    x: Tensor,
    up_weight: Tensor,
    up_bias: Tensor | None,
    conv_weight: Tensor,
    conv_bias: Tensor | None,
    factors: tuple[int, int],
) -> Tensor:
    """``conv3×3(conv3×3(nearest_upsample(x, factors)))``, both zero-padded by 1, computed as one
    convolution on the small grid (see the module docstring). Differentiable in every argument
    (two small autograd functions carry the border and the pixel shuffle); under autocast the
    convolutions run in its precision, forward and backward.

    Args:
        x: ``(N, C_in, h, w)``.
        up_weight, up_bias: the upsampling convolution, ``(C_mid, C_in, 3, 3)``, ``(C_mid,)``/None.
        conv_weight, conv_bias: the next convolution, ``(C_out, C_mid, 3, 3)``, ``(C_out,)``/None.
        factors: whole upsampling factors ``(s_h, s_w)``, each ≥ 2.

    Returns:
        ``(N, C_out, s_h·h, s_w·w)`` in channels-last memory format.
    """
    sh, sw = factors
    if min(factors) < 2:
        raise ValueError(f"upsample_conv_conv needs whole factors >= 2, got {factors}")
    kernel, bias = fold_kernels(up_weight, up_bias, conv_weight, conv_bias, factors)
    x = x.contiguous(memory_format=torch.channels_last)
    blocks, rows, cols = _ConvAndEdges.apply(x, kernel, bias)  # blocks: (N, s_h·s_w·C_out, h, w)
    corrections = _ring_corrections(rows, cols, up_weight, up_bias, conv_weight, factors)
    return _ShuffleBlocks.apply(blocks, *corrections, sh, sw)


class _ShuffleBlocks(torch.autograd.Function):
    """Pixel-shuffle the phase blocks ``(N, s_h·s_w·C, h, w)`` into ``(N, C, s_h·h, s_w·w)``
    (channels-last) and subtract the ring corrections from the border rows and columns.

    One write of the image each way; written out as autograd operations, the four in-place
    border updates would each copy the whole gradient in backward.
    """

    @staticmethod
    def forward(ctx, blocks, top, bottom, left, right, sh: int, sw: int) -> Tensor:
        n, _, h, w = blocks.shape
        c = top.shape[1]
        ctx.shape = (n, c, h, w, sh, sw)
        image = torch.empty(
            (n, c, h * sh, w * sw),
            dtype=blocks.dtype,
            device=blocks.device,
            memory_format=torch.channels_last,
        )
        pixels = image.permute(0, 2, 3, 1).view(n, h, sh, w, sw, c)
        pixels.copy_(rearrange(blocks, "n (m p c) u v -> n u m v p c", m=sh, p=sw))
        image[:, :, 0, :] -= top
        image[:, :, -1, :] -= bottom
        image[:, :, :, 0] -= left
        image[:, :, :, -1] -= right
        return image

    @staticmethod
    def backward(ctx, grad: Tensor):
        n, c, h, w, sh, sw = ctx.shape
        g_blocks = torch.empty(
            (n, sh * sw * c, h, w),
            dtype=grad.dtype,
            device=grad.device,
            memory_format=torch.channels_last,
        )
        dst = g_blocks.permute(0, 2, 3, 1).view(n, h, w, sh, sw, c)
        dst.copy_(rearrange(grad, "n c (u m) (v p) -> n u v m p c", m=sh, p=sw))
        border = (
            -grad[:, :, 0, :],
            -grad[:, :, -1, :],
            -grad[:, :, :, 0],
            -grad[:, :, :, -1],
        )
        return g_blocks, *border, None, None
