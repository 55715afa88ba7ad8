"""``VAESystem``: trains PreDiff's frame autoencoder (SPEC §5.2); ``load_vae`` reads one back.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel.

The system receives an :class:`AutoencoderKL` (and, when its config uses the GAN, a PatchGAN
critic; one is built from the config if none is given) and adds, and only adds:

1. **Data.** Batches are the ordinary forecasting batches of ``ForecastDataModule``; every frame
   of ``inputs`` and ``targets`` is a training frame (``(B, T_in + T_out, H, W, C)``). NaN pixels
   are read as 0 by the networks and left out of the losses.
2. **Objective** (``models/prediff/vae/loss.py``): summed L1 + ``kl_weight``·KL through a
   posterior sample, plus the adaptive hinge GAN from generator step ``disc_start`` on.
3. **Optimisation**, by hand (``automatic_optimization = False``) because the generator and the
   critic alternate: per optimiser step, one generator update, then, once the GAN is on, one
   critic update on ``x`` and the detached ``x̂``. Both use ``training/optim.py``'s
   ``build_optimizer`` (Adam(W) with ``weight_decay = 0`` = Adam, β = (0.5, 0.9), warm-up +
   cosine on the same clock: both schedules step every generator step, the critic's also
   before it starts training). Lightning's own gradient clipping and accumulation do not
   apply to manual optimisation, so ``gradient_clip_val`` and ``accumulate_grad_batches``
   are arguments of this system (give the ``Trainer`` neither). With the critic, each backward
   pass reaches only one of the two networks, which plain DDP refuses; ``partial_backward``
   says so, and ``earthcast fit`` then runs ``strategy: ddp`` with unused-parameter detection.
4. **Step counting.** ``generator_steps`` / ``critic_steps`` (buffers, saved in checkpoints)
   count optimiser steps; ``disc_start`` refers to ``generator_steps``. Lightning's
   ``global_step`` counts the steps of *both* optimisers (its rule for manual optimisation), so
   with the GAN on a ``Trainer(max_steps=n)`` stops after fewer than ``n`` batches.
5. **Logs**: ``train/{loss, nll, rec_loss, kl}`` (+ ``g_loss, d_weight, d_loss, logits_real,
   logits_fake`` with the GAN); ``val/{rec_loss, mse, kl}`` from the posterior mode, where
   ``rec_loss`` is the mean absolute error per valid pixel (on [0, 1] data as scaled by the
   data module) and ``mse`` its squared counterpart. ``train/rec_loss`` is the same per-pixel
   L1, of the sampled reconstruction.
6. **Checkpoints** carry ``vae_config`` (the dict of the VAE's :class:`VAEConfig`), the
   package version and the ``data_contract`` of the frames it learnt in ``hyper_parameters``;
   the VAE's weights are under ``vae.``. :func:`load_vae` rebuilds the frozen VAE from them
   (and, given the data of a later stage, refuses frames of another kind: a latent space only
   means something for the data it was fitted to), and ``VAESystem.load_from_checkpoint`` the
   whole system.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from earthcast.models.prediff.vae.autoencoder import AutoencoderKL
from earthcast.models.prediff.vae.config import VAEConfig
from earthcast.models.prediff.vae.discriminator import NLayerDiscriminator
from earthcast.models.prediff.vae.distribution import DiagonalGaussian
from earthcast.models.prediff.vae.loss import LossOutput, VAELoss, masked_abs_error
from earthcast.training.checkpoint import network_state, read_checkpoint
from earthcast.training.config import VAE_OPTIM, optim_config_from_dict
from earthcast.training.optim import build_optimizer, param_groups, total_steps

VAE_PREFIX = "vae."

REFERENCE_OPTIM = VAE_OPTIM
"""The reference VAE recipe (SPEC §5.2; ``training.config.VAE_OPTIM``). ``VAESystem(optim=...)``
overrides fields of it, and so does an experiment's ``optim`` section."""


class VAESystem(L.LightningModule):
    """Trains an :class:`AutoencoderKL` on single frames (see the module docstring).

    Args:
        vae: the autoencoder; ``None`` builds one from ``vae_config``.
        discriminator: the PatchGAN critic (only with ``vae.config.use_discriminator``; ``None``
            then builds ``NLayerDiscriminator.from_config``).
        vae_config: a :meth:`VAEConfig.to_dict` dict, used when ``vae`` is ``None`` (and
            recorded, so that ``load_from_checkpoint`` rebuilds the same VAE).
        optim: fields of :class:`OptimConfig` overriding :data:`REFERENCE_OPTIM`.
        gradient_clip_val: clip each network's gradient norm to this (``None``: no clipping).
        accumulate_grad_batches: batches per optimiser step.
        earthcast_version: provenance written into checkpoints; not used.
        data_contract: the data module's contract, recorded in ``setup`` so the later stages can
            check they run on the same kind of frames (see :func:`load_vae`).
    """

    def __init__(
        self,
        vae: AutoencoderKL | None = None,
        discriminator: NLayerDiscriminator | None = None,
        *,
        vae_config: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
        gradient_clip_val: float | None = 1.0,
        accumulate_grad_batches: int = 1,
        earthcast_version: str | None = None,
        data_contract: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["vae", "discriminator"])
        if vae is None:
            if vae_config is None:
                raise ValueError("VAESystem needs a `vae` or a `vae_config` to build one")
            vae = AutoencoderKL(VAEConfig.from_dict(vae_config))
        if accumulate_grad_batches < 1:
            raise ValueError(f"accumulate_grad_batches={accumulate_grad_batches} must be >= 1")
        config = vae.config
        self.hparams["vae_config"] = config.to_dict()
        self.vae = vae
        self.discriminator = _critic(config, discriminator)
        self.loss = VAELoss(config)
        self.optim_config = optim_config_from_dict(optim, REFERENCE_OPTIM)
        self.automatic_optimization = False
        # the generator's backward never reaches the critic and the critic's never the VAE
        self.partial_backward = self.discriminator is not None
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("critic_steps", torch.zeros((), dtype=torch.int64))

    def setup(self, stage: str) -> None:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        contract = getattr(datamodule, "contract", None)
        if contract is not None:
            self.hparams["data_contract"] = contract

    @property
    def selection_metric(self) -> str:
        """Logged name of the checkpoint/early-stopping metric."""
        return "val/rec_loss"

    @property
    def selection_mode(self) -> str:
        return "min"

    def forward(self, x: Tensor) -> Tensor:
        """Deterministic reconstruction (posterior mode): ``(B, T, H, W, C)`` → ``(B, T, H, W, C)``."""
        return self.vae(torch.nan_to_num(x), sample_posterior=False)[0]

    # ------------------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = _frames(batch)  # (B, T, H, W, C), NaN = missing
        gan = self.loss.gan_active(int(self.generator_steps))
        boundary = (batch_idx + 1) % self.hparams.accumulate_grad_batches == 0 or self.trainer.is_last_batch
        opts = self._optimizers()
        x_hat, posterior = self.vae(torch.nan_to_num(x))  # (B, T, H, W, C), q: (B, T, h, w, c)
        logs = self._generator_update(opts[0], x, x_hat, posterior, gan, boundary).logs
        if gan:
            logs |= self._critic_update(opts[1], x, x_hat.detach(), boundary).logs
        if boundary:
            self._step_schedulers()
            self.generator_steps += 1
            self.critic_steps += int(gan)
        frames = x[..., 0, 0, 0].numel()
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, on_step=True, batch_size=frames)

    def _generator_update(
        self, opt: Any, x: Tensor, x_hat: Tensor, posterior: DiagonalGaussian, gan: bool, boundary: bool
    ) -> LossOutput:
        with self.toggled_optimizer(opt):  # the critic only scores x̂ here: no gradient into it
            logits_fake = self.discriminator(x_hat) if gan else None  # (B, T, H', W', 1)
            out = self.loss.generator_loss(
                x, x_hat, posterior, logits_fake, self.vae.last_layer if gan else None
            )
            self.manual_backward(out.loss / self.hparams.accumulate_grad_batches)
        if boundary:
            self._step(opt)
        return out

    def _critic_update(self, opt: Any, x: Tensor, x_hat: Tensor, boundary: bool) -> LossOutput:
        with self.toggled_optimizer(opt):
            logits_real = self.discriminator(torch.nan_to_num(x))  # (B, T, H', W', 1)
            out = self.loss.discriminator_loss(logits_real, self.discriminator(x_hat))
            self.manual_backward(out.loss / self.hparams.accumulate_grad_batches)
        if boundary:
            self._step(opt)
        return out

    def _step(self, opt: Any) -> None:
        clip = self.hparams.gradient_clip_val
        if clip is not None:
            self.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        opt.step()
        opt.zero_grad(set_to_none=True)

    def _step_schedulers(self) -> None:
        """Advance both schedules by one generator step (one clock for both networks)."""
        for scheduler in self._schedulers():
            with warnings.catch_warnings():
                # the critic's schedule runs before disc_start, while its optimiser is idle: intended
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step")
                scheduler.step()

    def _optimizers(self) -> list[Any]:
        opts = self.optimizers()
        return opts if isinstance(opts, list) else [opts]

    def _schedulers(self) -> list[Any]:
        schedulers = self.lr_schedulers()
        return schedulers if isinstance(schedulers, list) else [schedulers]

    # ---------------------------------------------------------------------------- evaluation
    def _common_step(self, batch: dict[str, Any], stage: str) -> None:
        x = _frames(batch)  # (B, T, H, W, C)
        x_hat, posterior = self.vae(torch.nan_to_num(x), sample_posterior=False)  # (B, T, H, W, C)
        error, valid = masked_abs_error(x, x_hat)
        pixels = valid.sum().clamp_min(1)
        logs = {"rec_loss": error.sum() / pixels, "mse": error.square().sum() / pixels}
        logs["kl"] = posterior.kl().mean()
        self.log_dict(
            {f"{stage}/{k}": v for k, v in logs.items()},
            on_epoch=True,
            sync_dist=True,
            batch_size=x[..., 0, 0, 0].numel(),
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._common_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._common_step(batch, "test")

    # ------------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> Any:
        n_steps = self._schedule_length()
        opt_g, sched_g = build_optimizer(self._generator_groups(), self.optim_config, n_steps)
        schedulers = [{"scheduler": sched_g, "interval": "step", "name": "lr"}]
        if self.discriminator is None:
            return [opt_g], schedulers
        opt_d, sched_d = build_optimizer(self.discriminator, self.optim_config, n_steps)
        return [opt_g, opt_d], [*schedulers, {"scheduler": sched_d, "interval": "step", "name": "lr_critic"}]

    def _generator_groups(self) -> list[dict[str, Any]]:
        groups = param_groups(self.vae, self.optim_config.weight_decay)
        if isinstance(self.loss.rec_logvar, nn.Parameter):
            groups.append({"params": [self.loss.rec_logvar], "weight_decay": 0.0})
        return groups

    def _schedule_length(self) -> int:
        """Generator optimiser steps of the run (``max_steps`` read as generator steps)."""
        trainer = self.trainer
        accumulate = self.hparams.accumulate_grad_batches
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "train_dataset"):
            return max(1, int(trainer.estimated_stepping_batches) // accumulate)
        limit = trainer.limit_train_batches if trainer.limit_train_batches is not None else 1.0
        return total_steps(
            n_sequences=len(datamodule.train_dataset),
            micro_batch=datamodule.config.batch_size,
            epochs=trainer.max_epochs if trainer.max_epochs is not None else -1,
            world_size=trainer.world_size,
            accumulate=accumulate,
            max_steps=trainer.max_steps,
            limit_batches=limit,
        )

    # ---------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from earthcast import __version__

        hparams = checkpoint.setdefault("hyper_parameters", {})
        hparams.update(vae_config=self.vae.config.to_dict(), earthcast_version=__version__)


# what makes two data sets' frames the same kind of frames for an autoencoder: the window
# lengths and the frame size may differ (the VAE is applied frame by frame, fully convolutional)
_FRAME_KEYS = (
    "dataset",
    "channels_in",
    "channels_out",
    "scale",
    "input_variables",
    "target_variables",
    "normalization",
)


def load_vae(
    path: str | os.PathLike, map_location: Any = "cpu", *, data_contract: dict[str, Any] | None = None
) -> AutoencoderKL:
    """The trained VAE of a :class:`VAESystem` checkpoint, frozen and in eval mode.

    Args:
        path: the checkpoint.
        map_location: device for the weights.
        data_contract: the contract of the data a later stage (diffusion, alignment) will train
            on; when given, the VAE must have been trained on frames of the same data set, channels,
            scale and normalisation (checkpoints older than this record pass).

    Raises:
        ValueError: the file is missing or unreadable, is not a VAE checkpoint, its weights do not
            fit the recorded config, or it was trained on other frames than ``data_contract``.
    """
    checkpoint = read_checkpoint(path, map_location)
    hparams = checkpoint.get("hyper_parameters") or {}
    raw = hparams.get("vae_config")
    if not isinstance(raw, dict):
        raise ValueError(f"'{path}' is not a VAE checkpoint: its hyper_parameters have no 'vae_config'")
    if data_contract is not None:
        check_vae_data(hparams.get("data_contract"), data_contract, path)
    vae = AutoencoderKL(VAEConfig.from_dict(raw))
    try:
        vae.load_state_dict(network_state(checkpoint["state_dict"], VAE_PREFIX))
    except RuntimeError as err:  # missing / unexpected keys, shape mismatches
        raise ValueError(f"the weights in '{path}' do not fit its VAE config: {err}") from err
    return vae.requires_grad_(False).eval()


def check_vae_data(trained_on: dict[str, Any] | None, current: dict[str, Any], path: Any = "the VAE") -> None:
    """Refuse to use a VAE on frames of another kind than it was trained on (``_FRAME_KEYS``;
    a key either contract lacks is not compared, so older checkpoints pass)."""
    trained_on = trained_on or {}
    clash = [
        k
        for k in _FRAME_KEYS
        if trained_on.get(k) is not None and current.get(k) is not None and trained_on[k] != current[k]
    ]
    if clash:
        detail = ", ".join(f"{k} {trained_on[k]!r} vs {current[k]!r}" for k in clash)
        raise ValueError(
            f"VAE '{path}' was trained on other frames than these data ({detail}); train the VAE "
            "stage on this data set (task: vae with the same data section) and point "
            "task_options.vae_ckpt at it"
        )


def _frames(batch: dict[str, Any]) -> Tensor:
    """All frames of a forecasting batch: ``inputs ‖ targets`` along time, ``(B, T_in + T_out, H, W, C)``."""
    inputs, targets = batch["inputs"], batch["targets"]
    if inputs.shape[2:] != targets.shape[2:]:
        raise ValueError(
            f"the VAE trains on input and target frames alike, which must share (H, W, C); got "
            f"{tuple(inputs.shape[2:])} and {tuple(targets.shape[2:])}"
        )
    return torch.cat([inputs, targets], dim=1)


def _critic(config: VAEConfig, discriminator: NLayerDiscriminator | None) -> NLayerDiscriminator | None:
    if not config.use_discriminator:
        if discriminator is not None:
            raise ValueError("a discriminator was given but the VAE config has use_discriminator=False")
        return None
    return discriminator if discriminator is not None else NLayerDiscriminator.from_config(config)
