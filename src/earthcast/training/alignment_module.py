"""``AlignmentSystem``: trains PreDiff's knowledge alignment network U_φ; ``load_alignment`` reads it back.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space (``h``/``w`` latent grid for ``z``), ``c``
channel, ``k`` constrained statistics.

The system receives a frozen VAE, an :class:`AlignmentNetwork` and a constraint (each injected, or
built from recorded configs) and adds, and only adds (SPEC §5.5):

1. **Objective.** Per batch of real sequences ``(inputs y, targets x)``:
   ``z_0 = vae.encode(x).sample()`` (posterior sample, as the reference), ``t ~ U{0 … T−1}``,
   ``z_t = √ᾱ_t z_0 + √(1−ᾱ_t) ε`` (``NoiseSchedule.add_noise``), ``pred = mean over frames of
   U_φ(z_t, t)`` ``(B, K)`` and ``F = constraint.statistic(x, y)`` ``(B, K)``; loss = MSE(pred, F).
   The frame mean matches the guidance (``knowledge/guided.py``), which compares the same
   reduction with F₀. For ``nbody_energy``, F is the *estimator's* energy of the real future, not
   the true energy in ``meta``: at sampling time F₀ is the estimator's energy of the context and
   the forecast is judged by the same estimator, so training on the estimator's reading keeps one
   definition of F throughout (and the true energy at the last context frame is not the future's
   anyway, because clipping and walls break conservation).
   **Decoded targets and latent jitter** (``target="decoded"``, ``latent_jitter=j``; off by
   default, which is the reference recipe). Guidance moves latents along ∇U_φ, and forecasts are
   ``decode(z)``, so what must be right is U_φ's reading of *the decoder's output* for latents a
   little off the encoder's manifold. Trained only on encoder latents of real futures, U_φ can be
   fooled there: measured on synthetic SEVIR-LR, guidance toward −2σ brought U_φ's reading to the
   request while the decoded intensity moved a third as far (README, *Knowledge control*). With
   ``target="decoded"`` the statistic is ``F(decode(z̃_0), y)`` and ``z̃_0 = z_0 + j·u·δ``
   (``δ ~ N(0, I)``, ``u ~ U(0, 1)`` per sample, so both on- and off-manifold latents are seen), so
   the regression learns F∘decode around the manifold and its gradient points where the decoded
   statistic actually changes. Jitter needs decoded targets (the data's F says nothing about a
   perturbed latent). ``latent_scale`` must equal the diffusion model's (PreDiff multiplies
   encoder latents by it before diffusion; 1.0 in every preset).
2. **Validation** uses a fixed noise/timestep stream per batch (seeded by the batch index), so
   ``val/loss`` is comparable between epochs.
3. **Optimisation**: AdamW + warm-up/cosine from ``training/optim.py`` over U_φ only, with the
   reference recipe (:data:`REFERENCE_OPTIM`) unless overridden.
4. **Frozen parts**: the VAE and the constraint's networks never train and stay in eval mode.
   The VAE's weights are *not* written into checkpoints (they belong to the VAE's own checkpoint);
   ``on_load_checkpoint`` puts the injected VAE's weights back, so
   ``AlignmentSystem.load_from_checkpoint(path, vae=vae)`` and resuming both work.
5. **Checkpoints** record ``alignment_config``, ``constraint_name`` / ``constraint_options``, the
   ``schedule``, ``vae_config`` (provenance) and the package version; U_φ's weights are under
   ``net.`` and the constraint's (fitted regressor / trained estimator) under ``constraint.``.
   :func:`load_alignment` rebuilds both without Lightning.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from earthcast.models.prediff.denoiser.alignment import AlignmentNetwork
from earthcast.models.prediff.denoiser.config import AlignmentConfig
from earthcast.models.prediff.diffusion.schedule import NoiseSchedule
from earthcast.models.prediff.knowledge.constraints import CONSTRAINTS, Constraint
from earthcast.models.prediff.vae.fingerprint import vae_fingerprint
from earthcast.training.checkpoint import network_state, read_checkpoint
from earthcast.training.config import LATENT_OPTIM, optim_config_from_dict
from earthcast.training.optim import lightning_optimizers
from earthcast.training.stage_logging import log_stage_loss

NET_PREFIX = "net."
CONSTRAINT_PREFIX = "constraint."
VAE_PREFIX = "vae."

REFERENCE_OPTIM = LATENT_OPTIM
"""SPEC §5.5 (``training.config.LATENT_OPTIM``); an experiment's ``optim`` section overrides
fields of it."""


class AlignmentSystem(L.LightningModule):
    """Trains U_φ(z_t, t) to predict a constraint's statistic F of the clean future.

    Args:
        vae: the trained first stage (frozen here); it is needed even when loading a checkpoint.
        alignment_net: U_φ; ``None`` builds ``AlignmentNetwork(AlignmentConfig(**alignment_config))``.
        constraint: the knowledge constraint; ``None`` builds
            ``CONSTRAINTS.create(constraint_name, **constraint_options)`` (untrained: its weights
            then come from a checkpoint).
        alignment_config, constraint_name, constraint_options: recorded so the parts rebuild.
        schedule: fields of :class:`NoiseSchedule` (``None``: the PreDiff default).
        optim: fields of :class:`OptimConfig` overriding :data:`REFERENCE_OPTIM`.
        target: ``"data"`` (F of the real future, the reference) | ``"decoded"`` (F of the decoded
            latent; see the module docstring).
        latent_jitter: ``j ≥ 0``, the largest std of the Gaussian perturbation of ``z_0`` (needs
            ``target="decoded"`` when > 0).
        latent_scale: the diffusion model's latent scale (latents are ``encode(x) · latent_scale``).
        vae_config, earthcast_version, vae_fingerprint, data_contract: provenance written into
            checkpoints (guided sampling checks the last two against the PreDiff model); not used.
    """

    def __init__(
        self,
        vae: nn.Module,
        alignment_net: AlignmentNetwork | None = None,
        constraint: Constraint | None = None,
        *,
        alignment_config: dict[str, Any] | None = None,
        constraint_name: str | None = None,
        constraint_options: dict[str, Any] | None = None,
        schedule: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
        target: str = "data",
        latent_jitter: float = 0.0,
        latent_scale: float = 1.0,
        vae_config: dict[str, Any] | None = None,
        earthcast_version: str | None = None,
        vae_fingerprint: str | None = None,
        data_contract: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_target(target, latent_jitter, latent_scale)
        self.save_hyperparameters(ignore=["vae", "alignment_net", "constraint"])
        self.vae = vae.requires_grad_(False).eval()
        self.net = alignment_net if alignment_net is not None else _build_net(alignment_config)
        if constraint is None:
            constraint = _build_constraint(constraint_name, constraint_options)
        self.constraint = constraint.requires_grad_(False)
        self.schedule = NoiseSchedule(**(schedule or {}))
        self.optim_config = optim_config_from_dict(optim, REFERENCE_OPTIM)
        self.target, self.latent_jitter, self.latent_scale = target, float(latent_jitter), float(latent_scale)
        _check_parts(self.vae, self.net, self.constraint)
        self.hparams.update(self._recipe())

    def _recipe(self) -> dict[str, Any]:
        """The configs that rebuild the parts (recorded in ``hparams`` and in checkpoints)."""
        return {
            "alignment_config": _plain(self.net.config.to_dict()),
            "constraint_name": self.constraint.name,
            "constraint_options": self.constraint.build_options(),
            "schedule": self.schedule.to_dict(),
            "vae_config": _vae_config(self.vae),
            "vae_fingerprint": vae_fingerprint(self.vae),
        }

    def setup(self, stage: str) -> None:
        """Record the data contract, so guided sampling can refuse another data set's U_φ."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        contract = getattr(datamodule, "contract", None)
        if contract is not None:
            self.hparams["data_contract"] = contract

    @property
    def selection_metric(self) -> str:
        return "val/loss"

    @property
    def selection_mode(self) -> str:
        return "min"

    def train(self, mode: bool = True) -> AlignmentSystem:
        super().train(mode)
        self.vae.eval()  # frozen: Lightning's train() at every epoch must not switch it back
        return self

    def forward(self, z_t: Tensor, t: Tensor) -> Tensor:
        """Frame-mean prediction of F: ``z_t (B, T_out, h, w, c)``, ``t (B,)`` → ``(B, K)``."""
        return self.net(z_t, t).mean(dim=1)  # (B, T_out, K) -> (B, K)

    # ------------------------------------------------------------------------------ steps
    def loss(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> Tensor:
        """Step 1 of the module docstring: the MSE of U_φ's frame mean against F on one batch.

        Args:
            batch: ``inputs (B, T_in, H, W, C)``, ``targets (B, T_out, H, W, C)``.
            generator: source of the posterior sample, ``t`` and ``ε`` (``None``: the global RNG).
        """
        z0, statistic = self.regression_pair(batch, generator)  # (B, T_out, h, w, c), (B, K)
        b = z0.shape[0]
        t = torch.randint(0, self.schedule.num_train_timesteps, (b,), generator=generator, device=z0.device)
        eps = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
        z_t = self.schedule.add_noise(z0, eps, t)  # (B, T_out, h, w, c)
        return F.mse_loss(self(z_t, t), statistic)

    @torch.no_grad()
    def regression_pair(
        self, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """The clean latent ``z_0 (B, T_out, h, w, c)`` and the statistic ``F (B, K)`` U_φ must read."""
        inputs, targets = batch["inputs"], batch["targets"]  # (B, T_in, H, W, C), (B, T_out, H, W, C)
        z0 = self.vae.encode(torch.nan_to_num(targets)).sample(generator=generator)  # (B, T_out, h, w, c)
        z0 = self._jitter(z0 * self.latent_scale, generator)
        if self.target == "decoded":
            targets = self.vae.decode(z0 / self.latent_scale)  # what a forecast with this latent shows
        return z0, self.constraint.statistic(targets, inputs).float()

    def _jitter(self, z0: Tensor, generator: torch.Generator | None) -> Tensor:
        """``z_0 + j·u·δ`` with ``u ~ U(0, 1)`` per sample and ``δ ~ N(0, I)`` (``z_0`` when ``j = 0``)."""
        if self.latent_jitter == 0.0:
            return z0
        kwargs = {"generator": generator, "device": z0.device, "dtype": z0.dtype}
        size = torch.rand((z0.shape[0],) + (1,) * (z0.ndim - 1), **kwargs) * self.latent_jitter  # (B, 1, …)
        return z0 + size * torch.randn(z0.shape, **kwargs)

    def _common_step(self, batch: dict[str, Any], stage: str, generator: torch.Generator | None) -> Tensor:
        loss = self.loss(batch, generator)
        log_stage_loss(self, stage, loss, len(batch["inputs"]))
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._common_step(batch, "train", None)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._common_step(batch, "val", _fixed_generator(batch_idx, self.device))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._common_step(batch, "test", _fixed_generator(batch_idx, self.device))

    # ------------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        n_steps = max(1, int(self.trainer.estimated_stepping_batches))
        return lightning_optimizers(self.net, self.optim_config, n_steps)

    # ---------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from earthcast import __version__

        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(VAE_PREFIX)]:
            del state[key]  # the frozen VAE lives in its own checkpoint
        checkpoint.setdefault("hyper_parameters", {}).update(self._recipe(), earthcast_version=__version__)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key, value in self.vae.state_dict().items():
            state.setdefault(VAE_PREFIX + key, value)  # the injected VAE fills the gap left on save


@dataclass(frozen=True)
class LoadedAlignment:
    """What guided sampling needs from an alignment checkpoint (unpacks as ``network,
    constraint``), and what it was trained with (``vae_fingerprint``, ``data_contract``; None in
    checkpoints written before they were kept)."""

    network: AlignmentNetwork
    constraint: Constraint
    vae_fingerprint: str | None = None
    data_contract: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.network, self.constraint))


def load_alignment(path: str | os.PathLike, map_location: Any = "cpu") -> LoadedAlignment:
    """U_φ and its constraint (with the fitted regressor / trained estimator) from a checkpoint.

    Both come back frozen and in eval mode, ready for ``knowledge.make_guidance``.

    Raises:
        ValueError: the file is missing or unreadable, not an alignment checkpoint, or its weights
            do not fit the recorded configs.
    """
    checkpoint = read_checkpoint(path, map_location)
    hparams = checkpoint.get("hyper_parameters") or {}
    if not isinstance(hparams.get("alignment_config"), dict) or not hparams.get("constraint_name"):
        raise ValueError(f"'{path}' is not an alignment checkpoint: no alignment_config / constraint_name")
    net = _build_net(hparams["alignment_config"])
    constraint = _build_constraint(hparams["constraint_name"], hparams.get("constraint_options"))
    state = checkpoint["state_dict"]
    try:
        net.load_state_dict(network_state(state, NET_PREFIX))
        constraint.load_state_dict(network_state(state, CONSTRAINT_PREFIX))
    except RuntimeError as err:
        raise ValueError(f"the weights in '{path}' do not fit the recorded configs: {err}") from err
    return LoadedAlignment(
        net.requires_grad_(False).eval(),
        constraint.requires_grad_(False).eval(),
        hparams.get("vae_fingerprint"),
        hparams.get("data_contract"),
    )


_PAIRED_KEYS = ("dataset", "in_len", "out_len", "height", "width", "channels_out")


def check_alignment_pairing(
    loaded: LoadedAlignment, prediff: nn.Module, contract: dict[str, Any] | None, path: Any = "U_phi"
) -> None:
    """Refuse an alignment network from another VAE's latent space or from other data than the
    PreDiff model it would steer (older alignment checkpoints carry neither record and pass)."""
    if loaded.vae_fingerprint and loaded.vae_fingerprint != vae_fingerprint(prediff.vae):
        raise ValueError(
            f"alignment '{path}' was trained on the latents of another VAE than this PreDiff model's; "
            "train the alignment stage with task_options.vae_ckpt set to this model's VAE checkpoint"
        )
    trained_on = loaded.data_contract or {}
    clash = [k for k in _PAIRED_KEYS if contract and k in trained_on and trained_on[k] != contract.get(k)]
    if clash:
        detail = ", ".join(f"{k} {trained_on[k]!r} vs {contract[k]!r}" for k in clash)
        raise ValueError(f"alignment '{path}' was trained on other data than this model ({detail})")


# ------------------------------------------------------------------------------------ helpers


def _build_net(alignment_config: dict[str, Any] | None) -> AlignmentNetwork:
    if alignment_config is None:
        raise ValueError("AlignmentSystem needs an `alignment_net` or an `alignment_config` to build one")
    return AlignmentNetwork(AlignmentConfig(**alignment_config))


def _build_constraint(name: str | None, options: dict[str, Any] | None) -> Constraint:
    if name is None:
        raise ValueError(
            f"AlignmentSystem needs a `constraint` or a `constraint_name` ({', '.join(CONSTRAINTS.names())})"
        )
    return CONSTRAINTS.create(name, **(options or {}))


def _check_target(target: str, latent_jitter: float, latent_scale: float) -> None:
    if target not in ("data", "decoded"):
        raise ValueError(f"target={target!r}: choose 'data' (F of the real future) or 'decoded'")
    if latent_jitter < 0 or latent_scale <= 0:
        raise ValueError(f"need latent_jitter >= 0 and latent_scale > 0, got {latent_jitter}, {latent_scale}")
    if latent_jitter > 0 and target != "decoded":
        raise ValueError(
            "latent_jitter > 0 needs target='decoded': the real future's statistic does not describe a "
            "perturbed latent"
        )


def _check_parts(vae: nn.Module, net: AlignmentNetwork, constraint: Constraint) -> None:
    """Fail early, naming both sides, when the parts cannot work together."""
    latent = getattr(getattr(vae, "config", None), "latent_channels", None)
    if latent is not None and latent != net.config.latent_channels:
        raise ValueError(
            f"the VAE gives {latent} latent channels but the alignment network expects "
            f"{net.config.latent_channels} (set alignment latent_channels={latent})"
        )
    if net.config.out_dim != constraint.num_statistics:
        raise ValueError(
            f"constraint '{constraint.name}' has {constraint.num_statistics} statistic(s) but the "
            f"alignment network predicts out_dim={net.config.out_dim}"
        )


def _fixed_generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def _vae_config(vae: nn.Module) -> dict[str, Any] | None:
    config = getattr(vae, "config", None)
    return config.to_dict() if hasattr(config, "to_dict") else None


def _plain(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in raw.items()}
