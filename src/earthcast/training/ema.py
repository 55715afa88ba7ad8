"""Exponential moving average (EMA) of network weights.

After every optimiser step ``θ̄ ← d_n · θ̄ + (1 − d_n) · θ`` with the warmed-up decay
``d_n = min(decay, (1 + n) / (10 + n))`` (``n`` = updates so far), so early averages are not
dominated by the random initialisation; buffers (e.g. norm statistics) are copied. The shadow
network is a frozen copy of the trained one, saved in checkpoints (``ema.shadow.*``) and only
ever run for evaluation (the training system switches it to eval mode with itself).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """Shadow copy of ``net`` holding the moving average of its weights.

    Args:
        net: the network being trained.
        decay: target decay ``d`` in (0, 1), e.g. 0.999.
    """

    def __init__(self, net: nn.Module, decay: float) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = copy.deepcopy(net).requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))

    def current_decay(self) -> float:
        n = int(self.num_updates)
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Move the average towards the current weights of ``net``."""
        weight = 1.0 - self.current_decay()
        for avg, p in zip(self.shadow.parameters(), net.parameters()):
            avg.lerp_(p.detach().to(avg.dtype), weight)
        for avg, b in zip(self.shadow.buffers(), net.buffers()):
            avg.copy_(b)
        self.num_updates += 1
