"""Row matmuls (``(M, K)`` rows times a weight) on the CPU through oneDNN's 1×1 convolution.

Axis letters: ``M`` rows (tokens), ``K`` input features, ``O`` output features.

PyTorch's CPU ``mm``/``addmm``/``linear`` call the BLAS it was built with (MKL in the PyPI
wheels). Its convolutions go to oneDNN, which picks its kernels by instruction set rather than by
CPU vendor. On this project's AMD EPYC machines (AVX-512) MKL's float32 GEMM reaches ~230 GFLOP/s
on 2 threads and oneDNN's 1×1 convolution of the same numbers ~450–520 (``benchmarks/
row_matmul.py``): every Linear layer of a model runs twice as fast as a convolution.

A row-major ``(M, K)`` tensor *is* a channels-last ``(1, K, M, 1)`` image, so the three products
of a Linear layer's forward and backward become oneDNN calls without copying anything:

* ``linear_rows(x, w, b)  = x·wᵀ + b`` — a 1×1 convolution with weight ``w (O, K, 1, 1)``;
* ``rows_times(g, w)      = g·w``      — a 1×1 convolution with weight ``wᵀ`` (a weight-sized copy);
* ``weight_grad(g, x)     = gᵀ·x``     — the weight gradient of that convolution.

Which kernel serves float32 on the CPU is the *policy*: ``onednn``, ``blas`` (plain ``torch.mm``),
or ``auto`` (the default): measured once per process on a layer-sized problem, oneDNN when it is
at least :data:`AUTO_MARGIN` × faster. ``EARTHCAST_CPU_MATMUL`` or :func:`set_cpu_matmul` sets
it. Both kernels compute the same sums in a different order, so results agree to float32
rounding, not bit for bit. Other devices, dtypes and short inputs (fewer than :data:`MIN_ROWS`
rows, where the convolution's set-up cost shows) always use ``torch.mm``.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import _disable_current_modes

from earthcast.nn.precision import plain_ops
from earthcast.utils.timing import best_seconds

Policy = Literal["auto", "onednn", "blas"]
POLICIES = ("auto", "onednn", "blas")
ENV_VAR = "EARTHCAST_CPU_MATMUL"
MIN_ROWS = 256
AUTO_MARGIN = 1.15  # oneDNN must win by this much for `auto` to pick it (no flip-flopping on ties)

_policy: Policy | None = None
_auto_choice: bool | None = None


def set_cpu_matmul(policy: Policy | None) -> None:
    """Choose the float32 CPU kernel: ``onednn``, ``blas`` or ``auto``; ``None`` returns to the
    environment variable (default ``auto``)."""
    global _policy
    if policy is not None and policy not in POLICIES:
        raise ValueError(f"unknown CPU matmul policy '{policy}', choose one of {POLICIES}")
    _policy = policy


def cpu_matmul_policy() -> Policy:
    """The policy in force (:func:`set_cpu_matmul`, else ``$EARTHCAST_CPU_MATMUL``, else auto)."""
    if _policy is not None:
        return _policy
    value = os.environ.get(ENV_VAR, "auto").strip().lower()
    if value not in POLICIES:
        raise ValueError(f"{ENV_VAR}={value!r} is not one of {POLICIES}; unset it or pick one")
    return value  # type: ignore[return-value]


def uses_onednn(x: Tensor) -> bool:
    """Whether ``x (..., K)``, as rows of its last axis, takes the oneDNN path under the current
    policy."""
    # plain ops first: while tracing, a test of the row count would specialise the batch size
    if plain_ops(x) or x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() == 0:
        return False
    if x.shape[-1] == 0 or x.numel() // x.shape[-1] < MIN_ROWS or not torch.backends.mkldnn.is_available():
        return False
    policy = cpu_matmul_policy()
    if policy == "auto":
        return _onednn_measured_faster()
    return policy == "onednn"


def _onednn_measured_faster() -> bool:
    """``auto``: time both kernels once on a layer-sized problem (a few milliseconds)."""
    global _auto_choice
    if _auto_choice is None:
        # outside any dispatch mode (FLOP counters, profilers' memory hooks, …): the probe's
        # matmuls are not the caller's work and must not be counted as such
        with _disable_current_modes(), torch.no_grad():
            _auto_choice = _time_both_kernels()
    return _auto_choice


PROBE_ROUNDS = 10
"""Interleaved timings per kernel in the ``auto`` probe. Each kernel's best is kept; taking them
in turn makes a burst of load on a shared machine hit both alike (5 back-to-back runs each let
one burst decide the choice: BLAS was picked in 1 of 6 processes on a loaded 2-core machine)."""


def _time_both_kernels() -> bool:
    """Whether oneDNN beats BLAS by ``AUTO_MARGIN`` on a ``(4096, 256) · (256, 256)`` product."""
    gen = torch.Generator().manual_seed(0)  # its own: leave the global random stream alone
    x, w = torch.randn(4096, 256, generator=gen), torch.randn(256, 256, generator=gen)
    try:
        onednn = best_seconds(lambda: _conv_rows(x, w, None), runs=1)  # also warms both kernels up
    except RuntimeError:  # a build whose oneDNN cannot run here
        return False
    blas = best_seconds(lambda: torch.mm(x, w.t()), runs=1)
    for _ in range(PROBE_ROUNDS - 1):
        onednn = min(onednn, best_seconds(lambda: _conv_rows(x, w, None), runs=1, warmup=0))
        blas = min(blas, best_seconds(lambda: torch.mm(x, w.t()), runs=1, warmup=0))
    return blas >= AUTO_MARGIN * onednn


def resolved_cpu_matmul() -> str:
    """The float32 CPU kernel of large row products under the current policy, ``auto`` resolved:
    ``"onednn"`` or ``"blas"`` (for benchmark records: runs that differ in it are not comparable)."""
    probe = torch.empty(MIN_ROWS, 1)
    return "onednn" if uses_onednn(probe) else "blas"


def _as_image(rows: Tensor) -> Tensor:
    """``(M, K)`` rows as the channels-last image ``(1, K, M, 1)`` sharing their memory."""
    m, k = rows.shape
    return rows.contiguous().view(1, m, 1, k).permute(0, 3, 1, 2)


def _as_rows(image: Tensor) -> Tensor:
    """A ``(1, O, M, 1)`` convolution output back as ``(M, O)`` rows, on its memory when it is
    channels-last. The result is a tensor of its own, not a view: autograd forbids in-place
    changes to views made inside a custom function, and callers do change Linear outputs in
    place (dropout, residual adds)."""
    m, o = image.shape[2], image.shape[1]
    if image.stride() != (m * o, 1, o, o):
        return image.permute(0, 2, 3, 1).reshape(m, o).contiguous()
    return image.new_empty(0).set_(image.untyped_storage(), image.storage_offset(), (m, o), (o, 1))


def _conv_rows(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """``x·wᵀ + b`` as a oneDNN 1×1 convolution: ``x (M, K)``, ``w (O, K)`` → ``(M, O)``."""
    return _as_rows(F.conv2d(_as_image(x), w.reshape(*w.shape, 1, 1), b))


def linear_rows(x: Tensor, w: Tensor, b: Tensor | None = None, alpha: float = 1.0) -> Tensor:
    """``alpha·x·wᵀ + b``: ``x (M, K)``, ``w (O, K)``, ``b (O,)`` → ``(M, O)`` (no autograd of its
    own: call it inside an autograd function, or use :func:`linear`). On oneDNN ``alpha`` scales
    the (small) weight instead of the product."""
    if uses_onednn(x):
        return _conv_rows(x, w if alpha == 1.0 else w * alpha, b)
    if b is None:
        return torch.mm(x, w.t()) if alpha == 1.0 else torch.mm(x, w.t()).mul_(alpha)
    return torch.addmm(b, x, w.t(), alpha=alpha)


def rows_times(g: Tensor, w: Tensor) -> Tensor:
    """``g·w``: ``g (M, O)``, ``w (O, K)`` → ``(M, K)`` (the input gradient of a Linear layer)."""
    if uses_onednn(g):
        return _conv_rows(g, w.t().contiguous(), None)
    return torch.mm(g, w)


def weight_grad(g: Tensor, x: Tensor) -> Tensor:
    """``gᵀ·x``: ``g (M, O)``, ``x (M, K)`` → ``(O, K)`` (the weight gradient of a Linear layer)."""
    if not uses_onednn(x):
        return g.t() @ x
    o, k = g.shape[1], x.shape[1]
    weight = torch.empty(o, k, 1, 1, dtype=x.dtype)  # only its shape is read
    return torch.ops.aten.convolution_backward(
        _as_image(g),
        _as_image(x),
        weight,
        None,
        [1, 1],
        [0, 0],
        [1, 1],
        False,
        [0, 0],
        1,
        [False, True, False],
    )[1].view(o, k)


class _RowLinear(torch.autograd.Function):
    """``x·wᵀ + b`` on rows ``x (M, K)`` with the three products on oneDNN (saves ``x`` and
    ``w``, as ``F.linear`` does)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _conv_rows(x, w, b)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad = grad.contiguous()
        g_x = rows_times(grad, w) if need_x else None
        g_w = weight_grad(grad, x) if need_w else None
        g_b = grad.sum(0) if need_b and ctx.has_bias else None
        return g_x, g_w, g_b


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``F.linear`` for ``x (..., K)`` → ``(..., O)``, on oneDNN where :func:`uses_onednn` says so."""
    if not uses_onednn(x):
        return F.linear(x, w, b)
    rows = x.reshape(-1, x.shape[-1])
    return _RowLinear.apply(rows, w, b).view(*x.shape[:-1], w.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict keys) whose product runs on oneDNN on the CPU
    where that is faster (see module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        """``(..., in_features)`` → ``(..., out_features)``."""
        return linear(x, self.weight, self.bias)
