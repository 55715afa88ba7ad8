"""Convolutional stems that shrink frames before the transformer, and heads that grow them back.

Two variants (SPEC §2.2):

* ``conv`` — ``n × [Conv3×3 → GroupNorm(16) → LeakyReLU]`` then one patch merge; the head is an
  upsample + ``n × [Conv → GN → act]``.
* ``stack_conv`` — a list of stages, each convs (GroupNorm with ``max(1, C/4)`` groups) + patch
  merge; the head mirrors it stage by stage ("large channel" mode).

Frames are processed independently (2-D convs over ``(B·T)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from earthcast.nn.conv_grad import conv2d_grads
from earthcast.nn.folded_upsample import upsample_conv_conv
from earthcast.nn.mlp import make_activation
from earthcast.nn.precision import compiling, plain_ops
from earthcast.nn.resample import PatchMerging3D, Upsample2D


def conv_stack(in_dim: int, out_dim: int, num_convs: int, groups: int, activation: str) -> ConvStack:
    """``num_convs × [Conv2d 3×3 → GroupNorm(groups) → act]``; the first conv maps in→out."""
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers += [
            nn.Conv2d(in_dim if i == 0 else out_dim, out_dim, 3, padding=1),
            nn.GroupNorm(groups, out_dim),
            # in place: GroupNorm's backward needs its input, not its output, so the activation
            # may overwrite it (one activation tensor less kept for backward per conv)
            make_activation(activation, inplace=True),
        ]
    return ConvStack(*layers)


class ConvStack(nn.Sequential):
    """``[Conv → GroupNorm → act] × n`` (a ``Sequential``: parameter names as the reference's).

    With LeakyReLU and gradients on, every ``GroupNorm → act → next Conv`` runs as one autograd
    function that keeps only the GroupNorm input and recomputes the normalised activation in
    backward (elementwise, cheap): one full-resolution tensor per conv instead of two. The last
    ``GroupNorm → act`` does the same on its own.
    """

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C_in, H, W)`` → ``(N, C_out, H, W)``."""
        return self.after_first_conv(self[0](x)) if len(self) else x

    def after_first_conv(self, z: Tensor) -> Tensor:
        """The layers after the first convolution, given its output ``z``: ``(N, C_out, H, W)``."""
        act = self[2] if len(self) >= 3 else None
        if not (isinstance(act, nn.LeakyReLU) and torch.is_grad_enabled() and not plain_ops(z)):
            for layer in list(self)[1:]:
                z = layer(z)
            return z
        # channels-last throughout: the convolutions, GroupNorm and the elementwise backward kernels
        # are faster on it, and mixing layouts with the incoming gradients (channels-last views of
        # the (B, T, H, W, C) grid) sends the elementwise kernels down a slow strided path
        z = z.contiguous(memory_format=torch.channels_last)
        for i in range(1, len(self) // 3):
            norm, conv = self[3 * i - 2], self[3 * i]
            z = _NormActConv.apply(
                z,
                norm.weight,
                norm.bias,
                conv.weight,
                conv.bias,
                norm.num_groups,
                norm.eps,
                act.negative_slope,
            )
        norm = self[-2]
        return _NormAct.apply(z, norm.weight, norm.bias, norm.num_groups, norm.eps, act.negative_slope)


def _norm_act(z: Tensor, norm_w: Tensor, norm_b: Tensor, groups: int, eps: float, slope: float):
    """``leaky_relu(group_norm(z))`` with GroupNorm's statistics: ``(y, mean, rstd)``."""
    n, c = z.shape[:2]
    normed, mean, rstd = torch.native_group_norm(
        z, norm_w, norm_b, n, c, z.shape[2] * z.shape[3], groups, eps
    )
    return F.leaky_relu_(normed, slope), mean, rstd


def _group_norm_backward(g_normed, z, mean, rstd, norm_w, groups: int):
    """GroupNorm's gradients w.r.t. ``z``, weight and bias, from the normed output's gradient."""
    n, c = z.shape[:2]
    return torch.ops.aten.native_group_norm_backward(
        g_normed, z, mean, rstd, norm_w, n, c, z.shape[2] * z.shape[3], groups, [True, True, True]
    )


class _NormAct(torch.autograd.Function):
    """``leaky_relu(group_norm(z))`` saving ``z`` only: the last layer of a :class:`ConvStack`,
    whose output a stem's patch merging copies (so nothing else keeps it alive)."""

    @staticmethod
    def forward(ctx, z, norm_w, norm_b, groups: int, eps: float, slope: float) -> Tensor:
        ctx.save_for_backward(z, norm_w, norm_b)
        ctx.groups, ctx.eps, ctx.slope = groups, eps, slope
        return _norm_act(z, norm_w, norm_b, groups, eps, slope)[0]

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, norm_w, norm_b = ctx.saved_tensors
        y, mean, rstd = _norm_act(z, norm_w, norm_b, ctx.groups, ctx.eps, ctx.slope)  # recomputed
        # written over the recomputed y (ours; the incoming grad may be shared with other branches)
        g_normed = torch.ops.aten.leaky_relu_backward.grad_input(grad, y, ctx.slope, True, grad_input=y)
        g_z, g_norm_w, g_norm_b = _group_norm_backward(g_normed, z, mean, rstd, norm_w, ctx.groups)
        return g_z, g_norm_w, g_norm_b, None, None, None


class _NormActConv(torch.autograd.Function):
    """``conv3×3(leaky_relu(group_norm(z)))`` saving ``z`` only (see :class:`ConvStack`)."""

    @staticmethod
    def forward(ctx, z, norm_w, norm_b, conv_w, conv_b, groups: int, eps: float, slope: float) -> Tensor:
        y = F.leaky_relu_(F.group_norm(z, groups, norm_w, norm_b, eps), slope)
        ctx.save_for_backward(z, norm_w, norm_b, conv_w)
        ctx.groups, ctx.eps, ctx.slope = groups, eps, slope
        return F.conv2d(y, conv_w, conv_b, padding=conv_w.shape[-1] // 2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, norm_w, norm_b, conv_w = ctx.saved_tensors
        y, mean, rstd = _norm_act(z, norm_w, norm_b, ctx.groups, ctx.eps, ctx.slope)  # recomputed
        pad = conv_w.shape[-1] // 2
        g_y, g_conv_w, g_conv_b = conv2d_grads(grad, y, conv_w, pad)
        g_normed = torch.ops.aten.leaky_relu_backward.grad_input(g_y, y, ctx.slope, True, grad_input=g_y)
        del y
        g_z, g_norm_w, g_norm_b = _group_norm_backward(g_normed, z, mean, rstd, norm_w, ctx.groups)
        return g_z, g_norm_w, g_norm_b, g_conv_w, g_conv_b, None, None, None


def per_frame(fn: nn.Module, x: Tensor) -> Tensor:
    """Apply a 2-D module to every frame: ``(B, T, H, W, C)`` → ``(B, T, H', W', C')``."""
    if len(fn) == 0:
        return x
    b = x.shape[0]
    y = fn(as_frames(x))
    return rearrange(y, "(b t) c h w -> b t h w c", b=b)


def as_frames(x: Tensor) -> Tensor:
    """``(B, T, H, W, C)`` → ``(B·T, C, H, W)``, a view (a copy while ``torch.compile`` traces a
    single-channel input).

    With one channel the NCHW and channels-last layouts are the same memory, and PyTorch 2.13
    gives that size-1 axis a different stride when tracing than when running: the traced
    convolution then picks channels-last, the real one NCHW, and a later view fails at run time.
    An explicit NCHW copy leaves no layout to guess.
    """
    frames = rearrange(x, "b t h w c -> (b t) c h w")
    if compiling() and frames.shape[1] == 1:
        frames = frames.clone(memory_format=torch.contiguous_format)
    return frames


def upsample_then_convs(upsample: Upsample2D, convs: ConvStack, x: Tensor) -> Tensor:
    """``convs(upsample(x))`` per frame: ``(B, T, h, w, C)`` → ``(B, T, H, W, C_out)``.

    Nothing nonlinear separates the upsampling convolution from the stack's first convolution,
    so for whole-factor resizes the two are computed as one convolution on the small grid
    (:func:`~earthcast.nn.folded_upsample.upsample_conv_conv`): the upsampling convolution costs
    nothing and the large intermediate image is never made.
    """
    factors = upsample.whole_factors(x.shape[2:4])
    first = convs[0] if len(convs) else None
    if factors is None or not _is_plain_conv3x3(first) or not _is_plain_conv3x3(upsample.conv):
        return per_frame(convs, upsample(x))
    b = x.shape[0]
    frames = as_frames(x)
    z = upsample_conv_conv(
        frames, upsample.conv.weight, upsample.conv.bias, first.weight, first.bias, factors
    )
    return rearrange(convs.after_first_conv(z), "(b t) c h w -> b t h w c", b=b)


def _is_plain_conv3x3(layer: nn.Module | None) -> bool:
    """A stride-1, zero-padded-by-1, ungrouped 3×3 ``Conv2d`` (what the folding assumes)."""
    return (
        isinstance(layer, nn.Conv2d)
        and layer.kernel_size == (3, 3)
        and layer.stride == (1, 1)
        and layer.padding == (1, 1)
        and layer.dilation == (1, 1)
        and layer.groups == 1
        and layer.padding_mode == "zeros"
    )


class ConvStem(nn.Module):
    """``conv`` stem: convs to ``dim`` then patch merging by ``factor``."""

    def __init__(self, in_dim, dim, factor, num_convs=2, activation="leaky", padding_type="nearest"):
        super().__init__()
        self.convs = conv_stack(in_dim, dim, num_convs, 16, activation)
        self.merge = PatchMerging3D(dim, dim, factor, padding_type)

    def out_shape(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        return self.merge.out_shape((*shape[:3], self.merge.out_dim))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, H, W, C_in)`` → ``(B, T, H/f, W/f, dim)``."""
        return self.merge(per_frame(self.convs, x))


class ConvHead(nn.Module):
    """``conv`` head: upsample to ``size`` then ``num_convs`` convs (channels kept)."""

    def __init__(self, dim, size, num_convs=1, activation="leaky"):
        super().__init__()
        self.upsample = Upsample2D(dim, dim, size)
        self.convs = conv_stack(dim, dim, num_convs, 16, activation)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, h, w, dim)`` → ``(B, T, H, W, dim)``."""
        return upsample_then_convs(self.upsample, self.convs, x)


class StackStemStage(nn.Module):
    def __init__(self, in_dim, dim, factor, num_convs, activation, padding_type):
        super().__init__()
        self.convs = conv_stack(in_dim, dim, num_convs, max(1, dim // 4), activation)
        self.merge = PatchMerging3D(dim, dim, (1, factor, factor), padding_type)

    def forward(self, x: Tensor) -> Tensor:
        return self.merge(per_frame(self.convs, x))


class StackConvStem(nn.Module):
    """``stack_conv`` stem: stage ``s`` = convs to ``dims[s]`` + merge by ``factors[s]``."""

    def __init__(self, in_dim, dims, factors, num_convs, activation="leaky", padding_type="nearest"):
        super().__init__()
        ins = [in_dim, *dims[:-1]]
        self.stages = nn.ModuleList(
            StackStemStage(i, d, f, n, activation, padding_type)
            for i, d, f, n in zip(ins, dims, factors, num_convs)
        )

    def stage_shapes(self, shape: Sequence[int]) -> list[tuple[int, int, int, int]]:
        """Shape after every stage for an input ``(T, H, W, C)``."""
        shapes = []
        for stage in self.stages:
            shape = stage.merge.out_shape(shape)
            shapes.append(shape)
        return shapes

    def out_shape(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        return self.stage_shapes(shape)[-1]

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, H, W, C_in)`` → ``(B, T, H/Πf, W/Πf, dims[-1])``."""
        for stage in self.stages:
            x = stage(x)
        return x


class StackHeadStage(nn.Module):
    def __init__(self, in_dim, dim, size, num_convs, activation):
        super().__init__()
        self.upsample = Upsample2D(in_dim, in_dim, size)
        self.convs = conv_stack(in_dim, dim, num_convs, max(1, dim // 4), activation)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, h, w, in_dim)`` → ``(B, T, H, W, dim)``."""
        return upsample_then_convs(self.upsample, self.convs, x)


class StackConvHead(nn.Module):
    """Mirror of :class:`StackConvStem`: stage ``k`` upsamples to the input size of stem stage
    ``L−1−k`` and convolves to the width of stem stage ``L−1−k`` ("large channel" mode)."""

    def __init__(self, stem_dims, stem_sizes, num_convs, activation="leaky"):
        super().__init__()
        dims = list(stem_dims)[::-1]
        sizes = list(stem_sizes)[::-1]
        ins = [dims[0], *dims[:-1]]
        self.stages = nn.ModuleList(
            StackHeadStage(i, d, s, n, activation)
            for i, d, s, n in zip(ins, dims, sizes, list(num_convs)[::-1])
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, h, w, dims[-1])`` → ``(B, T, H, W, dims[0])``."""
        for stage in self.stages:
            x = stage(x)
        return x
