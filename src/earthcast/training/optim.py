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
    batches = _limited(_batches_per_epoch(n_sequences, micro_batch, world_size), limit_batches)
    return math.ceil(batches / accumulate)


def _batches_per_epoch(n_sequences: int, micro_batch: int, world_size: int) -> int:
    """Micro-batches one rank draws per epoch, before any ``limit_train_batches``."""
    return math.ceil(math.ceil(n_sequences / world_size) / micro_batch)


def _limited(batches: int, limit_batches: float | int) -> int:
    """``batches`` cut by ``limit_train_batches``: a float is a fraction (rounded down, as
    Lightning does), an int a count."""
    if isinstance(limit_batches, float):
        return int(batches * limit_batches) if limit_batches < 1.0 else batches
    return min(batches, int(limit_batches))


def total_steps(
    n_sequences: int,
    micro_batch: int,
    epochs: int,
    world_size: int = 1,
    accumulate: int = 1,
    max_steps: int = -1,
    limit_batches: float | int = 1.0,
) -> int:
    """Length ``N`` of the schedule: ``steps_per_epoch · epochs``, capped by ``max_steps`` (if > 0).

    Raises:
        ValueError: the settings leave no optimiser step; the message names the setting that
            did it (``trainer.limit_train_batches``, ``trainer.max_epochs``, the data size) and the fix.
    """
    per_epoch = steps_per_epoch(n_sequences, micro_batch, world_size, accumulate, limit_batches)
    if epochs > 0:
        n = per_epoch * epochs if max_steps <= 0 else min(per_epoch * epochs, max_steps)
    else:
        n = max_steps
    if n < 1:
        cause = _no_step_cause(n_sequences, micro_batch, epochs, world_size, limit_batches)
        raise ValueError(
            f"no optimiser step to schedule: {cause} ({n_sequences} training sequences, data.batch_size "
            f"{micro_batch}, world size {world_size}, accumulate_grad_batches {accumulate}, "
            f"trainer.max_epochs {epochs}, trainer.max_steps {max_steps}, trainer.limit_train_batches "
            f"{limit_batches})"
        )
    return n


def _no_step_cause(
    n_sequences: int, micro_batch: int, epochs: int, world_size: int, limit_batches: float | int
) -> str:
    """Which setting left the schedule empty, and how to fix it: the bare numbers alone sent users
    hunting (``limit_train_batches=0.01`` of 8 batches rounds down to none)."""
    batches = _batches_per_epoch(n_sequences, micro_batch, world_size)
    if batches == 0:
        return "the training split is empty; check data.root and the split settings of the data"
    if _limited(batches, limit_batches) == 0:
        if not limit_batches:
            return f"trainer.limit_train_batches={limit_batches} trains on no batch; raise it"
        least = math.ceil(1000 / batches) / 1000  # 1 / batches, rounded up to a readable value
        return (
            f"trainer.limit_train_batches={limit_batches} keeps int({batches} × {limit_batches}) = 0 of "
            f"the {batches} training batches of an epoch; set it to at least {least:g}, or to a count "
            "of batches (an integer such as 1), or leave it at 1.0"
        )
    if epochs == 0:
        return (
            "trainer.max_epochs=0 trains no epoch; raise it, or set max_epochs=-1 with trainer.max_steps > 0"
        )
    return "check trainer.max_epochs and trainer.max_steps"


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
