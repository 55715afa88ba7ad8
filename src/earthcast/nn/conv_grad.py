"""Gradients of a stride-1, ungrouped 2-D convolution, with the bias gradient as a plain sum.

ATen's ``convolution_backward`` hands the bias gradient to oneDNN along with the input and weight
gradients on the CPU, and that path costs far more than the reduction it is: 0.3–2.6 ms of a
2–15 ms backward on the stems' 3×3 convolutions, where summing the incoming gradient over
``(N, H, W)`` takes 0.05–0.1 ms (measured on this project's 2-core machines). Every hand-written
convolution backward in the package goes through :func:`conv2d_grads`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def conv2d_grads(
    grad: Tensor,
    x: Tensor,
    weight: Tensor,
    padding: int,
    need_input: bool = True,
    need_weight: bool = True,
    need_bias: bool = True,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of ``conv2d(x, weight, bias, padding=padding)`` (stride 1, one group).

    Args:
        grad: gradient of the output ``(N, C_out, H', W')``.
        x: the convolution's input ``(N, C_in, H, W)``; weight: ``(C_out, C_in, k, k)``.
        need_*: which gradients to compute (``None`` is returned for the others).

    Returns:
        ``(g_x, g_weight, g_bias)``: ``(N, C_in, H, W)``, ``(C_out, C_in, k, k)``, ``(C_out,)``.
    """
    g_x = g_w = None
    if need_input or need_weight:
        g_x, g_w, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None, [1, 1], [padding, padding], [1, 1], False, [0, 0], 1,
            [need_input, need_weight, False],
        )  # fmt: skip
    g_b = grad.sum((0, 2, 3)) if need_bias else None
    return g_x, g_w, g_b
