"""Start a new forecasting run from the trained weights of another (``fit --init-from CKPT``).

A resumed run goes on as it was planned (``training/resume_settings.py``), so training *longer*,
with another learning rate or on more data is a new run. Starting it from random weights would
throw the first run away; ``init_from`` starts it from that run's trained network instead, with
a fresh optimiser and a fresh warm-up/cosine schedule (fine-tuning).

What is taken: the network's trained weights (``net.*``, not the moving average: they are the
weights the optimiser was moving), on which a kept EMA restarts. What is checked: the checkpoint
holds the configured model with the same ``model_overrides`` (its weights must fit), and, since
the data contract of the first run is carried over, the data are normalised with the first run's
statistics and must match it (checked in ``ForecastSystem.setup``). Every checkpoint of the new
run records where it started (:data:`INIT_FROM_KEY`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch import callbacks as cb

from earthcast.training.checkpoint import NET_PREFIX, checkpoint_info, network_state, read_checkpoint

INIT_FROM_KEY = "earthcast_init_from"
"""Top-level checkpoint key: the checkpoint a run's weights were initialised from."""


def read_initial_weights(path: str | Path, model: str, model_overrides: dict[str, Any]) -> tuple[dict, dict]:
    """``(network weights, data contract)`` of ``path`` for a new run of ``model``.

    Raises:
        ValueError: the file is unreadable, not an ``earthcast fit`` forecasting checkpoint, or of
            another model or other ``model_overrides``.
    """
    checkpoint = read_checkpoint(path)
    info = checkpoint_info(checkpoint, path)
    if info["prefix"] != NET_PREFIX:
        raise ValueError(
            f"--init-from '{path}' is not a checkpoint of `earthcast fit` (no trained 'net.' weights)"
        )
    given = {key: value for key, value in model_overrides.items() if key in info["model_overrides"]}
    if info["model_name"] != model or given != {k: info["model_overrides"][k] for k in given}:
        raise ValueError(
            f"--init-from '{path}' holds model '{info['model_name']}' with {info['model_overrides']}, "
            f"but this run trains '{model}' with {model_overrides}; its weights would not fit"
        )
    return network_state(checkpoint["state_dict"], NET_PREFIX), info["data_contract"]


class InitialWeights(cb.Callback):
    """Loads the weights into the network once training starts (after ``setup`` has built it)
    and restarts a kept EMA from them; records the source in every checkpoint."""

    def __init__(self, path: str | Path, weights: dict[str, torch.Tensor]) -> None:
        self.path = str(Path(path).resolve())
        self.weights = weights

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.weights is None:  # loaded once: a later fit on this trainer must not reload
            return
        try:
            pl_module.net.load_state_dict(self.weights)
        except RuntimeError as err:  # missing keys / shape mismatches
            first = str(err).strip().splitlines()[0]
            raise ValueError(
                f"the weights of --init-from '{self.path}' do not fit this network: {first}"
            ) from err
        if getattr(pl_module, "ema", None) is not None:
            pl_module.ema.shadow.load_state_dict(pl_module.net.state_dict())
        self.weights = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[INIT_FROM_KEY] = self.path
