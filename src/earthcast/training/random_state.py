"""``RandomState``: checkpoints carry every rank's torch random state, so a resumed run draws the
same random numbers (dropout masks, diffusion noise and timesteps, VAE posterior samples) as a run
that was never stopped.

Contract, for any Lightning system:

* on save, the CPU (and, on GPU, the CUDA) generator state of every rank is gathered into
  ``checkpoint["rng_states"]``: ``{"cpu": (world, n) uint8[, "cuda": (world, m) uint8]}``;
* on resume, each rank restores its own row just before its first training batch, after the
  data loader has been rebuilt (building it draws from the generator). A checkpoint written by
  fewer ranks gives rank ``r ≥ world`` the first row.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

__all__ = ["RNG_KEY", "RandomState"]

RNG_KEY = "rng_states"


class RandomState(Callback):
    """Save every rank's torch random state in checkpoints and restore it on resume."""

    def __init__(self) -> None:
        self._to_restore: dict[str, Tensor] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[RNG_KEY] = gather_random_states(trainer, pl_module)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._to_restore = checkpoint.get(RNG_KEY)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._to_restore is None:
            return
        states, self._to_restore = self._to_restore, None
        restore_random_state(states, trainer.global_rank, pl_module.device)


def gather_random_states(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Tensor]:
    """Torch generator states of every rank, ``(world, n)`` uint8 each."""
    states = {"cpu": torch.get_rng_state()}
    if pl_module.device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(pl_module.device)
    if trainer.world_size == 1 or not torch.distributed.is_initialized():
        return {k: v[None] for k, v in states.items()}
    return {k: pl_module.all_gather(v.to(pl_module.device)).cpu() for k, v in states.items()}


def restore_random_state(states: dict[str, Tensor], rank: int, device: torch.device) -> None:
    """Set this rank's generators from ``states`` (as written by ``gather_random_states``)."""
    row = rank if len(states["cpu"]) > rank else 0
    # clone: torch.set_rng_state crashes (SIGSEGV, torch 2.13) on a row view with a storage offset,
    # i.e. on every rank but the first
    torch.set_rng_state(states["cpu"][row].clone())
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"][row].clone(), device)
