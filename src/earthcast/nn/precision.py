"""When the memory-lean fused autograd functions of ``earthcast.nn`` may run.

A custom ``torch.autograd.Function`` runs its backward outside autocast, with the dtypes its
forward happened to produce (bf16 activations next to fp32 weights under ``bf16-mixed``). The
fused paths (pre-norm FFN, dropout-matmul, resize-conv) therefore step aside under autocast for
the plain composition of standard ops, which autocast casts correctly in both directions.

They also step aside while ``torch.compile`` traces the model: they are hand fusions for eager
execution whose internals (numpy's random stream for dropout, oneDNN views of Linear rows, the
once-per-process kernel timing) Dynamo cannot trace, and on the plain graph Inductor does its own
fusion and memory planning.
"""

from __future__ import annotations

import torch
from torch import Tensor


def under_autocast(t: Tensor) -> bool:
    """True when autocast is enabled for the device of ``t``."""
    return torch.is_autocast_enabled(t.device.type)


def compiling() -> bool:
    """True while ``torch.compile`` (Dynamo) traces the calling code."""
    return torch.compiler.is_compiling()


def plain_ops(t: Tensor) -> bool:
    """True when the fused eager functions must give way to plain PyTorch ops for ``t``: under
    autocast or while ``torch.compile`` traces (see module docstring)."""
    return compiling() or under_autocast(t)
