"""Per-thread scratch buffers for large temporaries that die inside one function.

On CPU, a fresh multi-megabyte tensor is slower to fill than a reused one: ``malloc`` hands out
memory the process has to fault in (or that has left the caches) again, which costs 10–25 % of an
elementwise pass or a thin matmul of the sizes the FFN and dropout work on (measured on this
project's 2-core machines: a ``(10240, 64) × (64, 256)`` matmul 1.70 ms into a fresh output,
1.54 ms into a reused one). A temporary that never leaves the function computing it can live in
a buffer kept for the next call instead.

Buffers are kept per thread (autograd may run backward on another thread) and per *slot*, a name
the caller picks so two temporaries alive at once never share storage. Only temporaries up to
:data:`MAX_BYTES` are kept, so the memory held between calls stays small next to a training step's
activations; larger requests get a fresh tensor.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

MAX_BYTES = 16 * 2**20  # per slot and thread

_local = threading.local()


def scratch(
    shape: tuple[int, ...] | torch.Size, dtype: torch.dtype, slot: str, device: torch.device | str = "cpu"
) -> Tensor:
    """An uninitialised contiguous tensor of ``shape``. On CPU the same storage is handed out again
    for the next request of ``slot`` on this thread, so the caller must be done with it by then;
    other devices get a fresh tensor (CUDA's caching allocator already reuses blocks)."""
    numel = 1
    for s in shape:
        numel *= int(s)
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if torch.device(device).type != "cpu" or nbytes > MAX_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    key = (slot, dtype)
    buf = buffers.get(key)
    if buf is None or buf.numel() < numel:
        buf = buffers[key] = torch.empty(max(numel, 1), dtype=dtype)
    return buf[:numel].view(shape)


def scratch_copy(t: Tensor, slot: str) -> Tensor:
    """A contiguous copy of ``t`` in ``slot``'s scratch buffer (see :func:`scratch`)."""
    return scratch(t.shape, t.dtype, slot, t.device).copy_(t)
