"""Dropout that keeps one bit per element for backward and draws its random numbers fast on CPU.

``torch.nn.Dropout`` on CPU draws one ``bernoulli_`` float per element (Mersenne Twister) and
saves a float32 noise tensor for backward (4 bytes/element). Here the drop-mask comes from a
seeded SFC64 stream of 64-bit words viewed as 16-bit lanes (one word gives four elements, ≈10×
faster than ``bernoulli_``). A :class:`DropoutMask` keeps the drawn mask packed, one bit per
element, so backward unpacks it (~4× cheaper than drawing the stream again); the mask is also a
pure function of the seed, so any path may regenerate it instead. The stream is drawn in chunks
of ``CHUNK`` elements (one generator per ``(seed, chunk)``), so :meth:`DropoutMask.apply_` drops
in place chunk by chunk, multiplying by the chunk's 0/1 keep bytes: ~4× faster than
``masked_fill_`` (a scalar loop on CPU) and without a full-size mask. The drop probability is
quantised to 1/65536 and the rescaling uses the quantised value, so the layer stays unbiased.
Seeds come from torch's global generator, so ``torch.manual_seed`` makes runs reproducible.

On CUDA the fused native kernel is already fast and memory-lean; it is used as is.
While ``torch.compile`` traces, dropout is a plain mask multiply that Inductor fuses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from earthcast.nn.precision import compiling
from earthcast.nn.scratch import scratch

_LANES = 4  # int16 lanes per 64-bit word


def quantised(p: float) -> tuple[int, float]:
    """(drop count out of 65536, rescaling factor 1/(1 − p_quantised))."""
    drop = round(p * 65536)
    return drop, 1.0 / (1.0 - drop / 65536)


CHUNK = 1 << 20  # elements per random generator: bounds the mask memory of apply_dropout_


def _keep_chunk(seed: int, index: int, count: int, drop_count: int) -> np.ndarray:
    """Keep (True) / drop (False) flags of chunk ``index`` (``count`` elements) of ``seed``'s stream."""
    lanes = np.random.SFC64([seed, index]).random_raw((count + _LANES - 1) // _LANES).view(np.int16)
    return lanes[:count] >= -32768 + drop_count


def drop_mask(shape: torch.Size | tuple[int, ...], p: float, seed: int, device: torch.device) -> Tensor:
    """Boolean mask of ``shape``, True where an element is dropped (P = p quantised), from ``seed``."""
    n = int(np.prod(shape)) if len(shape) else 1
    drop_count = quantised(p)[0]
    if torch.device(device).type == "cpu":
        keep = [
            _keep_chunk(seed, i, min(CHUNK, n - at), drop_count) for i, at in enumerate(range(0, n, CHUNK))
        ]
        return ~torch.from_numpy(np.concatenate(keep)).view(shape)
    words = (n + _LANES - 1) // _LANES
    gen = torch.Generator(device=device).manual_seed(seed)
    raw = torch.randint(-(2**63), 2**63 - 1, (words,), dtype=torch.int64, device=device, generator=gen)
    return (raw.view(torch.int16)[:n] < -32768 + drop_count).view(shape)


class DropoutMask:
    """One dropout mask, ``(p, seed)``, applied to several tensors in turn (forward, then backward).

    The first in-place application on a contiguous CPU tensor draws the mask from the seed's
    stream and keeps it *packed*, one bit per element (1/32 of a float32 tensor); later
    applications unpack those bits instead of drawing the stream again, which costs ~4× more.
    Anywhere else (CUDA, non-contiguous tensors) the mask is regenerated from the seed: the same
    mask either way, since the bits are the seed's stream.
    """

    def __init__(self, p: float, seed: int) -> None:
        self.p, self.seed = p, seed
        self.packed: np.ndarray | None = None

    def apply_(self, xs: Tensor | Sequence[Tensor], scales: float | Sequence[float] = 1.0):
        """In place: zero the dropped elements of every tensor in ``xs`` (one shape, one mask) and
        multiply the rest by its scale. Returns ``xs``."""
        tensors = [xs] if isinstance(xs, Tensor) else list(xs)
        factors = [scales] * len(tensors) if isinstance(scales, (int, float)) else list(scales)
        if any(t.device.type != "cpu" or not t.is_contiguous() for t in tensors):
            drop = drop_mask(tensors[0].shape, self.p, self.seed, tensors[0].device)
            for t, f in zip(tensors, factors):
                t.masked_fill_(drop, 0.0)
                if f != 1.0:
                    t.mul_(f)
            return xs
        flats = [t.view(-1) for t in tensors]
        n = flats[0].numel()
        drawing = self.packed is None
        if drawing:
            self.packed = np.empty((n + 7) // 8, dtype=np.uint8)
            drop_count = quantised(self.p)[0]
        for i, at in enumerate(range(0, n, CHUNK)):
            count = min(CHUNK, n - at)
            bytes_ = slice(at // 8, (at + count + 7) // 8)  # CHUNK is a multiple of 8
            if drawing:
                keep = _keep_chunk(self.seed, i, count, drop_count).view(np.uint8)
                self.packed[bytes_] = np.packbits(keep)
            else:
                keep = np.unpackbits(self.packed[bytes_], count=count)
            keep_bytes = torch.from_numpy(keep)
            widened: dict[tuple[torch.dtype, float], Tensor] = {}
            for flat, f in zip(flats, factors):
                key = (flat.dtype, f)
                if key not in widened:
                    widened[key] = _widen(keep_bytes, f, flat.dtype, slot=len(widened))
                part = flat[at : at + count]
                part.mul_(widened[key])
                if f != 1.0 and flat.dtype != torch.float32:
                    part.mul_(f)  # low precision: scale in the op's own float arithmetic, as before
        return xs


def _widen(keep: Tensor, scale: float, dtype: torch.dtype, slot: int) -> Tensor:
    """The 0/1 keep bytes as ``dtype`` multipliers (times ``scale`` for float32), in a scratch
    buffer.

    Multiplying a float tensor by the uint8 bytes directly makes ATen widen them into a *fresh*
    buffer first, on every chunk (see ``nn/scratch.py`` for why fresh buffers are slow on CPU).
    ``keep · scale`` in float32 is exactly the float32 ``scale`` the separate multiply used, so
    folding it saves a pass without changing a bit.
    """
    out = scratch(keep.shape, dtype, f"dropout_keep_{slot}").copy_(keep)
    return out.mul_(scale) if dtype == torch.float32 and scale != 1.0 else out


def apply_dropout_(
    xs: Tensor | Sequence[Tensor], p: float, seed: int, scales: float | Sequence[float] = 1.0
) -> Tensor | list[Tensor]:
    """In place: zero the elements :func:`drop_mask` drops and multiply the rest by ``scale``
    (one-off: :class:`DropoutMask` when the mask is applied again later). Returns ``xs``."""
    return DropoutMask(p, seed).apply_(xs, scales)


def new_seed() -> int:
    """A seed drawn from torch's global generator."""
    return int(torch.randint(0, 2**62, (1,)).item())


class _SeededDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: float, seed: int, inplace: bool) -> Tensor:
        ctx.mask, ctx.scale = DropoutMask(p, seed), quantised(p)[1]
        if inplace:
            ctx.mark_dirty(x)
            return ctx.mask.apply_(x, ctx.scale)
        return ctx.mask.apply_(x.clone(memory_format=torch.contiguous_format), ctx.scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.clone(memory_format=torch.contiguous_format)
        return ctx.mask.apply_(grad, ctx.scale), None, None, None


def dropout(x: Tensor, p: float, training: bool = True, inplace: bool = False) -> Tensor:
    """Functional dropout (see module docstring). ``inplace`` may only be used on a tensor that
    no other operation needs afterwards (e.g. a fresh Linear output)."""
    if not training or p <= 0.0:
        return x
    if compiling() and p < 1.0:
        # a mask multiply, which Inductor fuses; not `F.dropout`, whose traced backward
        # (native_dropout_backward) can be given other strides than it runs with
        keep = torch.rand_like(x) >= p
        return x * keep * (1.0 / (1.0 - p))
    if x.is_cuda or p >= 1.0:
        return F.dropout(x, p, True, inplace)
    return _SeededDropout.apply(x, p, new_seed(), inplace)


class Dropout(nn.Module):
    """Drop-in replacement for ``nn.Dropout`` (same ``p``, same semantics in distribution)."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}" + (", inplace=True" if self.inplace else "")
