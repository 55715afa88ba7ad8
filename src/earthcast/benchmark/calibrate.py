"""Turning a wall-clock budget into a step count from a few real training steps.

The schedule (warm-up, cosine) is planned for a fixed number of steps, so a wall-clock budget must
be converted before training. Timing only forward, backward and AdamW on a cached batch missed
everything else a training step costs — the Lightning loop, the data loader and its restarts at
epoch ends, EMA updates, gradient clipping, logging — and over-planned ``unet_tiny`` 2.3×, so
Lightning's ``max_time`` cut the schedule short. Here the steps are timed through the very trainer
the run uses (``training.runner.make_system`` / ``build_trainer``) on the real data, in a scratch
folder that is deleted afterwards; one checkpoint write is timed too, since the run writes about
ten of them (``checkpoint_every``). The calibration is not counted in the budget.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from earthcast.training.config import ExperimentConfig

#: Fraction of a wall-clock budget planned for training steps and checkpoints; the rest absorbs
#: timing noise, so the schedule ends before the hard ``max_time`` stop.
STEP_SHARE = 0.9
#: Steps timed after the first (which pays one-off costs and is timed apart): at least the first,
#: at most the second number; between them, until the timed steps took this share of the budget.
TIMED_STEPS = (3, 10)
CALIBRATION_SHARE = 0.05


@dataclass(frozen=True)
class StepTiming:
    """Wall time of real training steps.

    Attributes:
        first_s: from the start of training to the end of the first step (loader start, lazy
            caches, allocator growth), paid once by the run too.
        step_s: mean time of one later optimiser step through the whole training loop.
        checkpoint_s: one ``last.ckpt`` write.
    """

    first_s: float
    step_s: float
    checkpoint_s: float


def checkpoint_every(steps: int) -> int:
    """Checkpoint interval of a run of ``steps``: an interrupted benchmark loses ≤ 10 %."""
    return max(1, steps // 10)


def plan_steps(seconds: float, timing: StepTiming) -> int:
    """Most steps whose first step, later steps and checkpoints fit ``STEP_SHARE`` of ``seconds``."""
    usable = STEP_SHARE * seconds - timing.first_s
    # ≥ 20 steps: one checkpoint every steps // 10, at most 19 of them; fewer: one per step
    steps = int((usable - 19 * timing.checkpoint_s) / timing.step_s)
    if steps < 20:
        steps = int(usable / (timing.step_s + timing.checkpoint_s))
    return max(1, steps)


class _StepClock(L.Callback):
    """Time stamps at the start of training and after each optimiser step; stops the calibration
    once enough steps were timed."""

    def __init__(self, enough_s: float) -> None:
        self.enough_s = enough_s
        self.stamps: list[tuple[int, float]] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stamps = [(trainer.global_step, _now(pl_module))]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step == self.stamps[-1][0]:  # a micro-batch of gradient accumulation
            return
        self.stamps.append((trainer.global_step, _now(pl_module)))
        timed = len(self.stamps) - 2
        lo, hi = TIMED_STEPS
        if timed >= hi or (timed >= lo and self.stamps[-1][1] - self.stamps[1][1] >= self.enough_s):
            trainer.should_stop = True

    def timing(self, checkpoint_s: float) -> StepTiming:
        if len(self.stamps) < 3:
            raise RuntimeError(f"calibration took {len(self.stamps) - 1} training steps, needs 2 or more")
        t0 = self.stamps[0][1]
        (step1, t1), (step_n, t_n) = self.stamps[1], self.stamps[-1]
        return StepTiming(first_s=t1 - t0, step_s=(t_n - t1) / (step_n - step1), checkpoint_s=checkpoint_s)


def _now(module: L.LightningModule) -> float:
    if module.device.type == "cuda":  # count the queued kernels, not their launch
        torch.cuda.synchronize(module.device)
    return time.perf_counter()


def time_real_steps(run: ExperimentConfig, budget_s: float) -> StepTiming:
    """Time a few optimiser steps of ``run`` with its own training system, trainer and data.

    The network trained here is thrown away; the run starts afresh (``fit`` seeds it again).
    """
    from earthcast.data.datamodule import ForecastDataModule
    from earthcast.training.runner import build_trainer, make_system

    with tempfile.TemporaryDirectory(prefix="earthcast-calibration-") as scratch:
        trainer_cfg = dataclasses.replace(
            run.trainer,
            max_steps=TIMED_STEPS[1] + 1,
            max_epochs=-1,
            max_time=None,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            early_stopping_patience=None,
            checkpoint_every_n_steps=TIMED_STEPS[1] + 2,  # none inside the timed steps
            out_dir=scratch,
        )
        config = run.replace(trainer=trainer_cfg)
        L.seed_everything(trainer_cfg.seed, workers=True, verbose=False)
        torch.set_float32_matmul_precision(trainer_cfg.matmul_precision)
        system, trainer_cfg = make_system(config, trainer_cfg)
        trainer = build_trainer(trainer_cfg, Path(scratch), system, config.data.batch_size)
        clock = _StepClock(CALIBRATION_SHARE * budget_s)
        trainer.callbacks.append(clock)
        trainer.fit(
            system, datamodule=ForecastDataModule(config.data, seed=trainer_cfg.seed), weights_only=True
        )
        start = time.perf_counter()
        trainer.save_checkpoint(Path(scratch) / "probe.ckpt")
        return clock.timing(checkpoint_s=time.perf_counter() - start)
