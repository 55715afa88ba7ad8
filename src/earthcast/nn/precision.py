"""When the memory-lean fused autograd functions of ``earthcast.nn`` may run.

A custom ``torch.autograd.Function`` runs its backward outside autocast, with the dtypes its
forward happened to produce (bf16 activations next to fp32 weights under ``bf16-mixed``). The
fused paths (pre-norm FFN, dropout-matmul, resize-conv) therefore step aside under autocast for
the plain composition of standard ops, which autocast casts correctly in both directions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def under_autocast(t: Tensor) -> bool:
    """True when autocast is enabled for the device of ``t``."""
    return torch.is_autocast_enabled(t.device.type)
