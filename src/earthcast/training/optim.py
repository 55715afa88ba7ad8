"""The only place where optimisers and learning-rate schedules are built (SPEC §2.8).

1. **Parameter groups.** Weight decay applies to every trainable parameter except the parameters
   of normalisation layers (``LayerNorm``, and ``RMSNorm`` by extension) and any parameter whose
   name contains ``"bias"``. GroupNorm weights, embeddings and global vectors are decayed, as in
   the reference.
2. **Schedule, per optimiser step** ``s`` of ``N`` with ``W = round(warmup_fraction · N)``:
   ``lr(s) = lr · (r0 + (1 − r0) · s / W)`` for ``s < W`` (linear warm-up from
   ``r0 = warmup_min_lr_ratio``), then ``lr(s) = lr · (m + (1 − m) · ½(1 + cos(π (s − W)/(N − W))))``
   down to ``m = min_lr_ratio`` at ``s = N``, and ``m`` after it.
3. **Horizon.** ``N`` counts optimiser steps from the number of training *sequences*: each rank
   sees ``ceil(n / world)`` sequences per epoch (a distributed sampler pads evenly), i.e.
   ``ceil(·/ micro_batch)`` micro-batches, i.e. ``ceil(·/ accumulate)`` optimiser steps; times the
   epochs, capped by ``max_steps``. (The reference divided a micro-batch count by the batch size,
   which made the cosine restart mid-training; SPEC §2.8.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from earthcast.nn.norm import RMSNorm
from earthcast.training.config import OptimConfig

NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (nn.LayerNorm, RMSNorm)
"""Modules whose parameters are never decayed (SPEC §2.8: LayerNorm; RMSNorm is its drop-in)."""


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups ``[{decay params, weight_decay}, {no-decay params, 0.0}]`` (step 1 above).

    Frozen parameters (``requires_grad=False``) are left out; empty groups are dropped.
    """
    no_decay_ids = {id(p) for m in model.modules() if isinstance(m, NO_DECAY_MODULES) for p in m.parameters()}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if id(p) in no_decay_ids or "bias" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


class WarmupCosine:
    """Multiplicative LR factor of step ``s`` (step 2 above); a picklable ``LambdaLR`` function."""

    def __init__(
        self, total_steps: int, warmup_fraction: float, warmup_min_lr_ratio: float, min_lr_ratio: float
    ):
        if total_steps < 1:
            raise ValueError(f"the schedule needs at least one optimiser step, got {total_steps}")
        self.total_steps = int(total_steps)
        self.warmup_steps = round(warmup_fraction * total_steps)
        self.start, self.end = float(warmup_min_lr_ratio), float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.start + (1.0 - self.start) * step / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.end + (1.0 - self.end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def steps_per_epoch(
    n_sequences: int,
    micro_batch: int,
    world_size: int = 1,
    accumulate: int = 1,
    limit_batches: float | int = 1.0,
) -> int:
    """Optimiser steps in one epoch (step 3 above), honouring a ``limit_train_batches`` setting."""
    batches = math.ceil(math.ceil(n_sequences / world_size) / micro_batch)
    if isinstance(limit_batches, float):
        batches = int(batches * limit_batches) if limit_batches < 1.0 else batches
    else:
        batches = min(batches, int(limit_batches))
    return math.ceil(batches / accumulate)


def total_steps(
    n_sequences: int,
    micro_batch: int,
    epochs: int,
    world_size: int = 1,
    accumulate: int = 1,
    max_steps: int = -1,
    limit_batches: float | int = 1.0,
) -> int:
    """Length ``N`` of the schedule: ``steps_per_epoch · epochs``, capped by ``max_steps`` (if > 0)."""
    per_epoch = steps_per_epoch(n_sequences, micro_batch, world_size, accumulate, limit_batches)
    if epochs > 0:
        n = per_epoch * epochs if max_steps <= 0 else min(per_epoch * epochs, max_steps)
    else:
        n = max_steps
    if n < 1:
        raise ValueError(
            f"no optimiser step to schedule ({n_sequences} sequences, micro-batch {micro_batch}, "
            f"{world_size} ranks, accumulate {accumulate}, {epochs} epochs, max_steps {max_steps})"
        )
    return n


def build_optimizer(
    params: nn.Module | Iterable[dict], config: OptimConfig, n_total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the groups of ``params`` (a module, or ready groups) and its warm-up + cosine schedule."""
    groups = param_groups(params, config.weight_decay) if isinstance(params, nn.Module) else list(params)
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    schedule = WarmupCosine(
        n_total_steps, config.warmup_fraction, config.warmup_min_lr_ratio, config.min_lr_ratio
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def lightning_optimizers(
    params: nn.Module | Iterable[dict], config: OptimConfig, n_total_steps: int
) -> dict[str, Any]:
    """:func:`build_optimizer` as a ``configure_optimizers`` return value.

    The schedule advances every optimiser step and is logged as ``lr``.
    """
    optimizer, scheduler = build_optimizer(params, config, n_total_steps)
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"},
    }
