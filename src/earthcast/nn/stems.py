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

from einops import rearrange
from torch import Tensor, nn

from earthcast.nn.mlp import make_activation
from earthcast.nn.resample import PatchMerging3D, Upsample2D


def conv_stack(in_dim: int, out_dim: int, num_convs: int, groups: int, activation: str) -> nn.Sequential:
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
    return nn.Sequential(*layers)


def per_frame(fn: nn.Module, x: Tensor) -> Tensor:
    """Apply a 2-D module to every frame: ``(B, T, H, W, C)`` → ``(B, T, H', W', C')``."""
    if len(fn) == 0:
        return x
    b = x.shape[0]
    y = fn(rearrange(x, "b t h w c -> (b t) c h w"))
    return rearrange(y, "(b t) c h w -> b t h w c", b=b)


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
        return per_frame(self.convs, self.upsample(x))


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
        return per_frame(self.convs, self.upsample(x))


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
