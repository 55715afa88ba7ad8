"""What a resumed run may not change, and the record in every checkpoint that lets ``fit`` check it.

Resuming continues a run *as it was planned*: Lightning restores the optimiser (its learning
rate), the warm-up/cosine schedule (its total step count) and the data module's position in the
epoch (in batches of the old size, on the old number of ranks). A new ``optim.lr``, ``max_epochs``
or ``data.batch_size`` given on resume would therefore be silently ignored, or, for the batch
size and the world size, make the sampler skip sequences the run never saw; and the new
checkpoint's hyper-parameters would record values that were never used. So ``fit`` refuses such
a resume and names each change (:func:`check_resume_settings`).

Settings that do not enter the plan may change: ``max_time`` (a run stopped by its wall-clock
limit resumes with more time), logging, progress bars, workers, checkpoint frequency, early
stopping. Every checkpoint carries the experiment under :data:`EXPERIMENT_KEY`
(:class:`ExperimentRecord`), whatever the task; forecasting checkpoints written before this
record hold it in their hyper-parameters, older checkpoints of other tasks are not checked.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch import callbacks as cb

EXPERIMENT_KEY = "earthcast_experiment"
"""Top-level checkpoint key holding the experiment config (``ExperimentConfig.to_dict()``)."""

PLANNED_SETTINGS: tuple[str, ...] = (
    "task",
    "model",
    "model_overrides",
    "optim",
    "data.name",
    "data.batch_size",
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.global_batch_size",
    "trainer.accumulate_grad_batches",
    "trainer.limit_train_batches",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.seed",
)
"""Dotted keys of the experiment that a resumed run keeps from its checkpoint (module docstring)."""


class ExperimentRecord(cb.Callback):
    """Writes the experiment config into every checkpoint (:data:`EXPERIMENT_KEY`)."""

    def __init__(self, experiment: dict[str, Any]) -> None:
        self.experiment = experiment

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[EXPERIMENT_KEY] = self.experiment


def recorded_experiment(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The experiment a checkpoint was trained under, or ``None`` when it holds no record."""
    hparams = checkpoint.get("hyper_parameters") or {}
    experiment = checkpoint.get(EXPERIMENT_KEY) or hparams.get("experiment")
    return experiment if isinstance(experiment, dict) else None


def check_resume_settings(recorded: dict[str, Any] | None, current: dict[str, Any], path: Any) -> None:
    """Refuse to resume checkpoint ``path`` under other :data:`PLANNED_SETTINGS` than it was
    trained with, naming each change and the way to train with the new settings."""
    if recorded is None:
        return
    changes = [
        f"{key} {_lookup(recorded, key)!r} → {_lookup(current, key)!r}"
        for key in PLANNED_SETTINGS
        if _lookup(recorded, key) != _lookup(current, key)
    ]
    if changes:
        raise ValueError(
            f"cannot resume '{path}' with other settings ({'; '.join(changes)}): a resumed run goes "
            "on as it was planned (its learning-rate schedule, optimiser, batch size, data order and "
            "model), so these would be ignored. Resume with the run's own settings, or start a new "
            "run with these (another --out, without --resume)"
        )


def _lookup(experiment: dict[str, Any], dotted: str) -> Any:
    value: Any = experiment
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
