"""``ForecastSystem``: the deterministic-forecasting training system for any registered network.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel.

The network is a plain ``nn.Module`` injected into the system (or built from ``model_name`` +
``model_overrides`` through ``earthcast.models``). The system adds, and only adds:

1. the objective: MSE between forecast and target on the normalised data, over valid target
   pixels only (NaN marks missing data, e.g. SEVIR outages); NaN inputs are read as 0;
2. per-data-set validation/test metrics and the selection metric (``training/scoring.py``);
3. AdamW + warm-up/cosine from ``training/optim.py``, stepped per optimiser step;
4. an optional EMA of the weights (``training/ema.py``), used for validation, test and predict;
5. teacher forcing for recurrent networks (``net.accepts_targets``): in training they get
   ``net(inputs, targets=targets, step=global_step)`` (see ``models/baselines/_base.py``), and a
   network's ``auxiliary_loss()`` (e.g. PhyDNet's moment constraint) is added to the training loss;
   ensemble outputs ``(B, S, T_out, H, W, C_out)`` (e.g. STEPS) are scored through their mean,
   and as ensembles too: ``crps`` (eCDF form) and ``spread_skill``/``spread_skill_corrected``;
6. the checkpoint contract (``training/checkpoint.py``): model name and overrides, resolved
   model config, data contract, package version, experiment (every rank's random state is
   added by the ``RandomState`` callback, ``training/random_state.py``).

Models whose registry factory declares ``contract_fields`` (e.g. ``persistence``: ``out_len``,
``channels_out``) get those settings from the data contract in ``setup`` unless overridden.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from earthcast.training.config import optim_config_from_dict
from earthcast.training.ema import EMA
from earthcast.training.optim import lightning_optimizers, total_steps
from earthcast.training.scoring import ENSEMBLE_METRICS, Scoring, ensemble_metrics, scoring_for
from earthcast.training.stage_logging import log_stage_loss

_SHAPE_KEYS = ("in_len", "out_len", "height", "width", "channels_in", "channels_out")
_VARIABLE_KEYS = ("input_variables", "target_variables", "normalization")


def masked_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over the finite target pixels (``(B, T, H, W, C)`` each)."""
    valid = torch.isfinite(target)
    diff = torch.where(valid, pred.float() - torch.nan_to_num(target.float()), 0.0)
    return diff.square().sum() / valid.sum().clamp_min(1)


def contract_defaults(model_name: str, contract: dict[str, Any]) -> dict[str, Any]:
    """Model settings the registry says follow the data (``factory.contract_fields``)."""
    from earthcast.models import MODELS

    fields = getattr(MODELS.get(model_name), "contract_fields", {})
    return {field: contract[key] for field, key in fields.items() if contract.get(key) is not None}


def needs_contract(model_name: str, overrides: dict[str, Any]) -> bool:
    from earthcast.models import MODELS

    return bool(set(getattr(MODELS.get(model_name), "contract_fields", {})) - set(overrides))


def model_config_dict(net: nn.Module) -> dict[str, Any]:
    """The resolved config of a network, as a plain dict (empty when it has none)."""
    config = getattr(net, "config", None)
    if config is None:
        return {}
    raw = config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in raw.items()}


class ForecastSystem(L.LightningModule):
    """Deterministic forecasting of ``(B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``.

    Args:
        net: the network; ``None`` builds ``create_model(model_name, **model_overrides)``.
        model_name: registered model name (recorded in checkpoints).
        model_overrides: config overrides of the model (recorded; rebuild the same network).
        dataset: data set name; picks the metrics and the selection metric.
        optim: fields of :class:`OptimConfig` (``None``: defaults).
        ema_decay: keep an EMA of the weights with this decay (``None``: off).
        data_contract: contract of data the model was trained on (filled in ``setup``).
        experiment: the experiment config as a dict (provenance).
        model_config, earthcast_version: provenance written into checkpoints; not used.
    """

    def __init__(
        self,
        net: nn.Module | None = None,
        *,
        model_name: str,
        model_overrides: dict[str, Any] | None = None,
        dataset: str = "generic",
        optim: dict[str, Any] | None = None,
        ema_decay: float | None = None,
        data_contract: dict[str, Any] | None = None,
        experiment: dict[str, Any] | None = None,
        model_config: dict[str, Any] | None = None,
        earthcast_version: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        overrides = dict(model_overrides or {})
        self.hparams["model_overrides"] = overrides
        self.optim_config = optim_config_from_dict(optim)
        self.scoring: Scoring = scoring_for(dataset)
        if net is None and not needs_contract(model_name, overrides):
            net = _create(model_name, overrides)
        self.net: nn.Module | None = None
        self.ema: EMA | None = None
        if net is not None:
            self._attach(net)
        self.val_metrics = nn.ModuleDict()
        self.test_metrics = nn.ModuleDict()

    # ----------------------------------------------------------------------------- network
    def _attach(self, net: nn.Module) -> None:
        self.net = net
        for name in getattr(net, "unused_parameter_names", lambda: set())():
            net.get_parameter(name).requires_grad_(False)  # never read by forward: keep DDP exact
        if self.hparams.ema_decay:
            self.ema = EMA(net, self.hparams.ema_decay)
        self.hparams["model_config"] = model_config_dict(net)

    @property
    def forecaster(self) -> nn.Module:
        """The network used for evaluation: the EMA weights when kept, else the trained ones."""
        return self.ema.shadow if self.ema is not None else self.net

    def forward(self, inputs: Tensor) -> Tensor:
        """Forecast with the evaluation weights: ``(B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``."""
        return self.forecaster(torch.nan_to_num(inputs))

    # ------------------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        contract = self._resolve_contract()
        if self.net is None:
            if contract is None:
                raise ValueError(
                    f"model '{self.hparams.model_name}' takes its shape from the data; give a data module"
                )
            overrides = {
                **contract_defaults(self.hparams.model_name, contract),
                **self.hparams.model_overrides,
            }
            self.hparams["model_overrides"] = overrides
            self._attach(_create(self.hparams.model_name, overrides))
        if contract is not None:
            _check_shapes(self.net, contract, self.hparams.model_name)
            self.hparams["data_contract"] = contract
            self.val_metrics = nn.ModuleDict({**self.scoring.build(contract), **ensemble_metrics()})
            self.test_metrics = nn.ModuleDict({**self.scoring.build(contract), **ensemble_metrics()})

    def _resolve_contract(self) -> dict[str, Any] | None:
        recorded = self.hparams.get("data_contract")
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        current = getattr(datamodule, "contract", None) if datamodule is not None else None
        if recorded and current:
            check_same_data(recorded, current)
        return current or recorded

    @property
    def selection_metric(self) -> str:
        """Logged name of the checkpoint/early-stopping metric, e.g. ``val/csi_m``."""
        return f"val/{self.scoring.selection}"

    @property
    def selection_mode(self) -> str:
        return self.scoring.mode

    # ------------------------------------------------------------------------------ steps
    def _common_step(self, batch: dict[str, Any], stage: str) -> Tensor:
        inputs, targets = batch["inputs"], batch["targets"]  # (B, T_in, H, W, C_in), (B, T_out, H, W, C_out)
        net = self.net if stage == "train" else self.forecaster
        if stage == "train" and getattr(net, "accepts_targets", False):
            # recurrent baselines: teacher forcing / scheduled sampling needs the truth and the step
            pred = net(torch.nan_to_num(inputs), targets=torch.nan_to_num(targets), step=self.global_step)
        else:
            pred = net(torch.nan_to_num(inputs))  # (B, T_out, H, W, C_out) or (B, S, T_out, H, W, C_out)
        members = None
        if pred.ndim == 6:  # ensemble forecasters (e.g. STEPS): deterministic scores of the mean
            members, pred = pred, pred.mean(dim=1)  # (B, S, T_out, H, W, C_out), (B, T_out, H, W, C_out)
        loss = masked_mse(pred, targets)
        if stage == "train" and hasattr(net, "auxiliary_loss"):
            # physics terms of a network (PhyDNet's moment constraint) join the objective
            auxiliary = net.auxiliary_loss()
            self.log("train/aux_loss", auxiliary, on_step=True, on_epoch=True, batch_size=len(inputs))
            loss = loss + auxiliary
        log_stage_loss(self, stage, loss, len(inputs))
        if stage != "train":
            metrics = self.val_metrics if stage == "val" else self.test_metrics
            deterministic = {k: m for k, m in metrics.items() if k not in ENSEMBLE_METRICS}
            self.scoring.update(deterministic, pred.detach().float(), targets.float(), batch)
            if members is not None:
                for name in ENSEMBLE_METRICS:
                    metrics[name].update(members.detach().float(), targets.float())
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._common_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._common_step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self(batch["inputs"])

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")

    def _log_metrics(self, metrics: nn.ModuleDict, stage: str) -> None:
        seen = {name: m for name, m in metrics.items() if m.update_count > 0}
        values = self.scoring.compute(seen)  # torchmetrics sums the states over ranks first
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, sync_dist=False)
        for metric in metrics.values():
            metric.reset()

    # ------------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        if not any(p.requires_grad for p in self.net.parameters()):
            raise ValueError(
                f"model '{self.hparams.model_name}' has no trainable parameters; evaluate it with "
                "`earthcast test CONFIG --model NAME` instead of training it"
            )
        return lightning_optimizers(self.net, self.optim_config, self._schedule_length())

    def _schedule_length(self) -> int:
        trainer = self.trainer
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "train_dataset"):
            return int(trainer.estimated_stepping_batches)
        return total_steps(
            n_sequences=len(datamodule.train_dataset),
            micro_batch=datamodule.config.batch_size,
            epochs=trainer.max_epochs if trainer.max_epochs is not None else -1,
            world_size=trainer.world_size,
            accumulate=trainer.accumulate_grad_batches,
            max_steps=trainer.max_steps,
            limit_batches=trainer.limit_train_batches if trainer.limit_train_batches is not None else 1.0,
        )

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.net)

    # ---------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from earthcast import __version__

        hparams = checkpoint.setdefault("hyper_parameters", {})
        hparams.update(
            model_overrides=dict(self.hparams.model_overrides or {}),
            model_config=model_config_dict(self.net) if self.net is not None else {},
            data_contract=self.hparams.get("data_contract"),
            earthcast_version=__version__,
        )


def _create(model_name: str, overrides: dict[str, Any]) -> nn.Module:
    from earthcast.models import create_model

    return create_model(model_name, **overrides)


def check_same_data(recorded: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse data that differ from a model's contract in shape, scale, channel meaning or
    normalisation (the last three only where both contracts record them: older checkpoints and
    other data sets have no per-variable entries)."""
    clash = {
        k: (recorded.get(k), current.get(k))
        for k in (*_SHAPE_KEYS, "scale", *_VARIABLE_KEYS)
        if recorded.get(k) != current.get(k)
        and (k not in _VARIABLE_KEYS or None not in (recorded.get(k), current.get(k)))
    }
    if clash:
        detail = ", ".join(f"{k}: model {a!r} vs data {b!r}" for k, (a, b) in clash.items())
        raise ValueError(
            f"the data do not match the model's data contract ({detail}); use data laid out and "
            "normalised as the model was trained (data.options.variables, data.options.normalization)"
        )


def _check_shapes(net: nn.Module, contract: dict[str, Any], model_name: str) -> None:
    """Fail early, naming the fix, when the network's configured shapes disagree with the data."""
    config = getattr(net, "config", None)
    data_in = (contract["in_len"], contract["height"], contract["width"], contract["channels_in"])
    data_out = (contract["out_len"], contract["height"], contract["width"], contract["channels_out"])
    for key, data_shape in (("input_shape", data_in), ("target_shape", data_out)):
        model_shape = tuple(getattr(config, key, ())) if config is not None else ()
        if model_shape and model_shape != data_shape:
            raise ValueError(
                f"model '{model_name}' has {key}={list(model_shape)} but the '{contract['dataset']}' data "
                f"give {list(data_shape)} (T, H, W, C); set model_overrides.{key}={list(data_shape)} or "
                "change the data windows"
            )
