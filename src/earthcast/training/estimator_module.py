"""``EstimatorSystem``: trains the N-body :class:`EnergyEstimator`; ``load_energy_estimator`` reads it back.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel, ``k`` digit.

The estimator is injected (or built from ``estimator_config``); the system adds, and only adds:

1. **Data.** Ordinary N-body batches of ``ForecastDataModule``: the clip ``inputs (B, T_in, H, W, 1)``
   is regressed onto ``meta["energy"] (B,)``, the true energy at its last frame. With
   ``use_targets=True`` and a data set built with ``return_state=True`` (``data.options``), the
   ``targets`` clip joins the batch with the true energy of *its* last frame, computed from the
   returned ``positions`` / ``velocities`` with ``nbody_energy`` and the generator constants
   ``G``, ``d``, ``law`` given here: twice the clips per batch, and clips that look like forecasts.
2. **Normalisation.** Energies (and the estimator's moment features) are standardised with
   training statistics stored in the estimator's buffers (so they travel with its weights).
   Unless already set, they are measured in ``on_fit_start`` from up to
   ``normalization_samples`` training sequences (evenly spaced).
3. **Objective**: MSE of the standardised energies; AdamW + warm-up/cosine (``training/optim.py``).
4. **Logs**: ``{train,val,test}/loss`` (standardised MSE), ``{val,test}/mae`` and ``/rel_error``
   (mean |Ê − E| / |E|) in physical units, and ``{val,test}/corr`` (Pearson) per epoch.
5. **Checkpoints** carry ``estimator_config`` and the package version; the weights (with the
   normalisation buffers) are under ``estimator.``.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchmetrics import MeanAbsoluteError, MeanMetric, PearsonCorrCoef

from earthcast.data.nbody import NBodyConfig, nbody_energy
from earthcast.models.prediff.knowledge.energy import EnergyEstimator, EnergyEstimatorConfig, energy_mse_loss
from earthcast.training.checkpoint import network_state, read_checkpoint
from earthcast.training.config import OptimConfig, optim_config_from_dict
from earthcast.training.optim import lightning_optimizers
from earthcast.training.stage_logging import log_stage_loss

ESTIMATOR_PREFIX = "estimator."

DEFAULT_OPTIM = OptimConfig(lr=1e-3, weight_decay=1e-4, warmup_fraction=0.05, warmup_min_lr_ratio=0.1)
"""AdamW at 1e-3 with a short warm-up: a small CNN regression, no reference recipe exists."""


class EstimatorSystem(L.LightningModule):
    """Trains an :class:`EnergyEstimator` on N-body clips (see the module docstring).

    Args:
        estimator: the network; ``None`` builds one from ``estimator_config``.
        estimator_config: an :meth:`EnergyEstimatorConfig.to_dict` dict (recorded in checkpoints).
        optim: fields of :class:`OptimConfig` overriding :data:`DEFAULT_OPTIM`.
        use_targets: also train on the ``targets`` clip (needs ``return_state=True`` data).
        G, d, law: N-body constants for the targets' energies (defaults: :class:`NBodyConfig`'s).
        normalization_samples: training sequences read to measure the energy mean and std.
        earthcast_version: provenance written into checkpoints; not used.
    """

    def __init__(
        self,
        estimator: EnergyEstimator | None = None,
        *,
        estimator_config: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
        use_targets: bool = False,
        G: float = NBodyConfig.G,
        d: float = NBodyConfig.d,
        law: str = NBodyConfig.law,
        normalization_samples: int = 1024,
        earthcast_version: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["estimator"])
        if estimator is None:
            estimator = EnergyEstimator(EnergyEstimatorConfig(**(estimator_config or {})))
        self.hparams["estimator_config"] = estimator.config.to_dict()
        self.estimator = estimator
        self.optim_config = optim_config_from_dict(optim, DEFAULT_OPTIM)
        self.val_metrics = _EvalMetrics()
        self.test_metrics = _EvalMetrics()

    def forward(self, frames: Tensor) -> Tensor:
        """Energies of clips: ``(B, T, H, W, C)`` → ``(B, 1)``."""
        return self.estimator(frames)

    # ------------------------------------------------------------------------------ data
    def clips(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Training clips and their true energies: ``(N, T, H, W, C)`` and ``(N,)`` (step 1)."""
        frames, energy = batch["inputs"], batch["meta"]["energy"].to(batch["inputs"])  # (B, T_in, …), (B,)
        if not self.hparams.use_targets:
            return frames, energy
        if "positions" not in batch or "velocities" not in batch:
            raise ValueError("use_targets=True needs N-body data with return_state=True (data.options)")
        if batch["targets"].shape[1] != frames.shape[1]:
            raise ValueError("use_targets=True needs equal context and target lengths (one clip size)")
        # the states cover inputs and targets: the last one is the targets' last frame
        pos, vel = batch["positions"][:, -1], batch["velocities"][:, -1]  # (B, K, 2)
        h = self.hparams
        target_energy = nbody_energy(pos.double(), vel.double(), h.G, h.d, h.law).to(energy)  # (B,)
        return torch.cat([frames, batch["targets"]]), torch.cat([energy, target_energy])

    def on_fit_start(self) -> None:
        if bool(self.estimator.normalized):
            return  # set already (a resumed run, or by hand)
        dataset = getattr(self.trainer.datamodule, "train_dataset", None)
        if dataset is None:
            raise ValueError(
                "EstimatorSystem measures the energy normalisation on the data module's train_dataset; "
                "give a data module, or call estimator.set_normalization(mean, std) before fitting"
            )
        energies, moments = training_statistics(dataset, self.hparams.normalization_samples)
        std = float(energies.std().clamp_min(1e-6))
        self.estimator.set_normalization(float(energies.mean()), std, moments)

    # ------------------------------------------------------------------------------ steps
    def _common_step(self, batch: dict[str, Any], stage: str) -> Tensor:
        frames, energy = self.clips(batch) if stage == "train" else (batch["inputs"], batch["meta"]["energy"])
        energy = energy.to(frames)  # (N,)
        loss = energy_mse_loss(self.estimator, frames, energy)
        log_stage_loss(self, stage, loss, len(frames))
        if stage != "train":
            metrics = self.val_metrics if stage == "val" else self.test_metrics
            metrics.update(self.estimator(frames)[:, 0].detach(), energy)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._common_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._common_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self.log_dict({f"val/{k}": v for k, v in self.val_metrics.compute_and_reset().items()})

    def on_test_epoch_end(self) -> None:
        self.log_dict({f"test/{k}": v for k, v in self.test_metrics.compute_and_reset().items()})

    # ------------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        n_steps = max(1, int(self.trainer.estimated_stepping_batches))
        return lightning_optimizers(self.estimator, self.optim_config, n_steps)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from earthcast import __version__

        hparams = checkpoint.setdefault("hyper_parameters", {})
        hparams.update(estimator_config=self.estimator.config.to_dict(), earthcast_version=__version__)


class _EvalMetrics(torch.nn.Module):
    """MAE, relative error and Pearson correlation of predicted vs true energies (physical units)."""

    def __init__(self) -> None:
        super().__init__()
        self.mae = MeanAbsoluteError()
        self.rel_error = MeanMetric()
        self.corr = PearsonCorrCoef()

    def update(self, pred: Tensor, energy: Tensor) -> None:
        self.mae.update(pred, energy)
        self.rel_error.update((pred - energy).abs() / energy.abs().clamp_min(1e-6))
        self.corr.update(pred.float(), energy.float())

    def compute_and_reset(self) -> dict[str, Tensor]:
        if self.mae.update_count == 0:
            return {}
        out = {"mae": self.mae.compute(), "rel_error": self.rel_error.compute()}
        if self.corr.update_count > 0 and int(self.corr.n_total) > 1:
            out["corr"] = self.corr.compute()
        for metric in (self.mae, self.rel_error, self.corr):
            metric.reset()
        return out


def training_statistics(dataset: Any, max_samples: int) -> tuple[Tensor, Tensor]:
    """Energies ``(N,)`` and context-clip moments ``(N, 6)`` of up to ``max_samples`` evenly spaced
    sequences of ``dataset`` (the estimator's normalisation, step 2 of the module docstring)."""
    n = len(dataset)
    if n == 0:
        raise ValueError("the training set is empty")
    indices = torch.linspace(0, n - 1, min(n, max_samples)).round().long().unique().tolist()
    samples = [dataset[i] for i in indices]
    energies = torch.tensor([float(s["meta"]["energy"]) for s in samples], dtype=torch.float64)
    clips = torch.stack([s["inputs"] for s in samples])  # (N, T_in, H, W, C)
    return energies, EnergyEstimator.clip_moments(clips)


def load_energy_estimator(path: str | os.PathLike, map_location: Any = "cpu") -> EnergyEstimator:
    """The trained estimator of an :class:`EstimatorSystem` checkpoint, frozen and in eval mode.

    Raises:
        ValueError: the file is missing or unreadable, not an estimator checkpoint, or its weights
            do not fit the recorded config.
    """
    checkpoint = read_checkpoint(path, map_location)
    raw = (checkpoint.get("hyper_parameters") or {}).get("estimator_config")
    if not isinstance(raw, dict):
        raise ValueError(f"'{path}' is not an energy-estimator checkpoint: no 'estimator_config'")
    estimator = EnergyEstimator(EnergyEstimatorConfig(**raw))
    try:
        estimator.load_state_dict(network_state(checkpoint["state_dict"], ESTIMATOR_PREFIX))
    except RuntimeError as err:
        raise ValueError(f"the weights in '{path}' do not fit its estimator config: {err}") from err
    return estimator.requires_grad_(False).eval()
