"""``LatentDiffusionSystem``: trains PreDiff's denoiser on the latents of a frozen VAE (SPEC §5.3).

Axis legend: ``b`` batch, ``s`` ensemble member, ``t`` time, ``h``/``w`` space, ``c`` channel.

Objective (ε-parameterisation): ``z_0 = scale · sample(q(z | future))``, ``z_cond = mode(q(z |
context))``, ``t ~ U{0 … T−1}``, ``z_t = √ᾱ_t z_0 + √(1−ᾱ_t) ε``; per sample
``ℓ = mean((ε̂ − ε)²)``; with ``learn_logvar`` the loss is ``ℓ / e^{λ_t} + λ_t`` with a learned
per-timestep log-variance vector ``λ`` (init 0, the reference's setting), else ``ℓ``.

Validation logs the same loss and, on the first ``val_sample_batches`` batches, draws a small DDIM
ensemble with the EMA weights and scores it: the data set's deterministic metrics on the ensemble
mean (``training/scoring.py``) and the CRPS of the ensemble (``val/crps``). The selection metric is
``val/crps`` (min).

The VAE is frozen and saved inside the checkpoint together with every config, so
:func:`load_prediff` rebuilds a ready :class:`~earthcast.models.prediff.prediff.PreDiff` from the
file alone.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from earthcast.metrics.probabilistic import CRPS
from earthcast.models.prediff.diffusion import NoiseSchedule
from earthcast.models.prediff.prediff import PreDiff, SamplingConfig
from earthcast.training.config import LATENT_OPTIM, optim_config_from_dict
from earthcast.training.ema import EMA
from earthcast.training.optim import build_optimizer
from earthcast.training.scoring import scoring_for


class LatentDiffusionSystem(L.LightningModule):
    """Training system of the latent diffusion stage (see the module docstring).

    Args:
        vae: the trained first stage (``AutoencoderKL``); ``None`` loads ``vae_ckpt``.
        vae_ckpt: checkpoint of a ``VAESystem`` run (used when ``vae`` is ``None``).
        denoiser: preset of the Earthformer-UNet (``prediff_nbody``, ``prediff_sevirlr``, ``prediff_tiny``).
        denoiser_overrides: config overrides; the latent shape and window lengths come from the
            data contract and the VAE unless given here.
        schedule: fields of :class:`NoiseSchedule`.
        learn_logvar: learn the per-timestep log-variance loss weighting.
        ema_decay: EMA of the denoiser (SPEC: 0.9999); ``None`` samples with the raw weights.
        optim: fields of :class:`OptimConfig` overriding ``training.config.LATENT_OPTIM`` (SPEC §5.3).
        sampling: fields of :class:`SamplingConfig` (defaults of the trained ``PreDiff``).
        val_samples, val_steps, val_sample_batches: the validation ensemble (members, DDIM
            steps, batches); ``val_sample_batches=0`` logs the loss only.
        dataset: data set name (picks the deterministic metrics).
    """

    def __init__(
        self,
        vae: nn.Module | None = None,
        *,
        vae_ckpt: str | None = None,
        denoiser: str = "prediff_nbody",
        denoiser_overrides: dict[str, Any] | None = None,
        schedule: dict[str, Any] | None = None,
        learn_logvar: bool = True,
        ema_decay: float | None = 0.999,
        optim: dict[str, Any] | None = None,
        sampling: dict[str, Any] | None = None,
        val_samples: int = 4,
        val_steps: int = 20,
        val_sample_batches: int = 1,
        dataset: str = "generic",
        data_contract: dict[str, Any] | None = None,
        vae_config: dict[str, Any] | None = None,
        denoiser_config: dict[str, Any] | None = None,
        experiment: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["vae"])
        self.schedule = NoiseSchedule(**(schedule or {}))
        self.optim_config = optim_config_from_dict(optim, LATENT_OPTIM)
        self.scoring = scoring_for(dataset)
        self._given_vae = [vae] if vae is not None else []  # a list: not registered twice as a submodule
        self.prediff: PreDiff | None = None
        self.ema: EMA | None = None
        self.logvar = nn.Parameter(torch.zeros(self.schedule.num_train_timesteps), requires_grad=learn_logvar)
        self.val_metrics = nn.ModuleDict()
        if denoiser_config is not None:  # rebuilding from a checkpoint: every shape is recorded
            self._build(denoiser_config, vae_config)

    # ---------------------------------------------------------------------------- building
    def setup(self, stage: str) -> None:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        contract = getattr(datamodule, "contract", None) or self.hparams.data_contract
        if self.prediff is None:
            if contract is None:
                raise ValueError("the diffusion stage takes its shapes from the data; give a data module")
            self._build(self._denoiser_config(contract), None)
        if contract is not None:
            self.hparams["data_contract"] = contract
            self.val_metrics = nn.ModuleDict({**self.scoring.build(contract), "crps": CRPS("ecdf")})

    def _first_stage(
        self, vae_config: dict[str, Any] | None, contract: dict[str, Any] | None = None
    ) -> nn.Module:
        if self._given_vae:
            return self._given_vae[0]
        if vae_config is not None:  # weights follow in the checkpoint's state dict
            from earthcast.models.prediff.vae import AutoencoderKL, VAEConfig

            return AutoencoderKL(VAEConfig(**_tuples(vae_config)))
        if not self.hparams.vae_ckpt:
            raise ValueError(
                "the diffusion stage needs a trained VAE: set task_options.vae_ckpt to a VAE checkpoint"
            )
        from earthcast.training.vae_module import load_vae

        return load_vae(self.hparams.vae_ckpt, data_contract=contract)

    def _denoiser_config(self, contract: dict[str, Any]) -> dict[str, Any]:
        from earthcast.models.prediff.denoiser.config import get_denoiser_config

        vae = self._first_stage(None, contract)
        self._given_vae = [vae]
        factor, latent = vae.config.downsample_factor, vae.config.latent_channels
        if contract["height"] % factor or contract["width"] % factor:
            raise ValueError(
                f"frames {contract['height']}×{contract['width']} are not a multiple of the VAE's "
                f"factor {factor}"
            )
        shaped = {
            "context_len": contract["in_len"],
            "target_len": contract["out_len"],
            "latent_hw": (contract["height"] // factor, contract["width"] // factor),
            "latent_channels": latent,
        }
        overrides = {**shaped, **(self.hparams.denoiser_overrides or {})}
        return get_denoiser_config(self.hparams.denoiser, **overrides).to_dict()

    def _build(self, denoiser_config: dict[str, Any], vae_config: dict[str, Any] | None) -> None:
        from earthcast.models.prediff.denoiser.config import DenoiserConfig
        from earthcast.models.prediff.denoiser.earthformer_unet import EarthformerUNet

        vae = self._first_stage(vae_config)
        denoiser = EarthformerUNet(DenoiserConfig(**_tuples(denoiser_config)))
        sampling = SamplingConfig(**(self.hparams.sampling or {}))
        self.prediff = PreDiff(vae, denoiser, self.schedule, sampling)
        if self.hparams.ema_decay:
            self.ema = EMA(denoiser, self.hparams.ema_decay)
        self.hparams["denoiser_config"] = denoiser_config
        self.hparams["vae_config"] = vae.config.to_dict()

    @property
    def sampler_model(self) -> PreDiff:
        """PreDiff with the EMA denoiser (what validation and ``load_prediff`` sample with)."""
        if self.ema is None:
            return self.prediff
        return PreDiff(self.prediff.vae, self.ema.shadow, self.schedule, self.prediff.sampling)

    # ------------------------------------------------------------------------------- steps
    def diffusion_loss(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> Tensor:
        """The ε-prediction loss of one batch (scalar)."""
        prediff = self.prediff
        z_cond = prediff.encode_context(batch["inputs"])  # (B, T_in, h, w, c)
        z0 = prediff.encode_future(batch["targets"], generator)  # (B, T_out, h, w, c)
        t = torch.randint(
            0, self.schedule.num_train_timesteps, (len(z0),), device=z0.device, generator=generator
        )
        noise = torch.randn(z0.shape, device=z0.device, dtype=z0.dtype, generator=generator)
        z_t = self.schedule.add_noise(z0, noise, t)  # (B, T_out, h, w, c)
        eps = prediff.predict_noise(z_t, t, z_cond)  # (B, T_out, h, w, c)
        per_sample = (eps - noise).square().flatten(1).mean(dim=1)  # (B,)
        logvar = self.logvar[t]  # (B,)
        return (per_sample / logvar.exp() + logvar).mean()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss = self.diffusion_loss(batch)
        self.log(
            "train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["inputs"])
        )
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        loss = self.diffusion_loss(batch, generator)
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(batch["inputs"]))
        if batch_idx < self.hparams.val_sample_batches:
            ensemble = self.sampler_model.forecast(
                batch["inputs"],
                self.hparams.val_samples,
                sampler="ddim",
                num_inference_steps=self.hparams.val_steps,
                generator=generator,
            )  # (B, S, T_out, H, W, C)
            targets = batch["targets"].float()
            deterministic = {k: m for k, m in self.val_metrics.items() if k != "crps"}
            self.scoring.update(deterministic, ensemble.mean(dim=1).float(), targets, batch)
            self.val_metrics["crps"].update(ensemble.float(), targets)

    def on_validation_epoch_end(self) -> None:
        seen = {name: m for name, m in self.val_metrics.items() if m.update_count > 0}
        if seen:
            values = self.scoring.compute(seen)
            self.log_dict({f"val/{k}": v for k, v in values.items()})
        for metric in self.val_metrics.values():
            metric.reset()

    # ------------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        groups = [{"params": [p for p in self.prediff.denoiser.parameters() if p.requires_grad]}]
        if self.logvar.requires_grad:
            groups.append({"params": [self.logvar], "weight_decay": 0.0})
        groups[0]["weight_decay"] = self.optim_config.weight_decay
        steps = int(self.trainer.estimated_stepping_batches)
        optimizer, scheduler = build_optimizer(groups, self.optim_config, steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.prediff.denoiser)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from earthcast import __version__

        checkpoint.setdefault("hyper_parameters", {}).update(
            denoiser_config=self.hparams.denoiser_config,
            vae_config=self.hparams.vae_config,
            data_contract=self.hparams.get("data_contract"),
            earthcast_version=__version__,
            task="diffusion",
        )

    @property
    def selection_metric(self) -> str:
        return "val/crps"

    @property
    def selection_mode(self) -> str:
        return "min"


def load_prediff(
    path: str, map_location: Any = "cpu", use_ema: bool = True
) -> tuple[PreDiff, dict[str, Any]]:
    """``(PreDiff in eval mode, data contract)`` from a ``LatentDiffusionSystem`` checkpoint."""
    from earthcast.training.checkpoint import read_checkpoint

    state = read_checkpoint(path)
    hparams = state.get("hyper_parameters") or {}
    if hparams.get("task") != "diffusion" or "denoiser_config" not in hparams:
        raise ValueError(f"'{path}' is not a PreDiff (diffusion-stage) checkpoint")
    system = LatentDiffusionSystem(
        **{k: v for k, v in hparams.items() if k in _INIT_KEYS},
    )
    system.load_state_dict(state["state_dict"])
    model = system.sampler_model if use_ema else system.prediff
    return model.eval().to(map_location), hparams.get("data_contract") or {}


_INIT_KEYS = {
    "denoiser",
    "denoiser_overrides",
    "schedule",
    "learn_logvar",
    "ema_decay",
    "optim",
    "sampling",
    "dataset",
    "data_contract",
    "vae_config",
    "denoiser_config",
}


def _tuples(config: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
