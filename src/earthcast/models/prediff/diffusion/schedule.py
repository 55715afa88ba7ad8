"""``NoiseSchedule``: the forward (noising) process of a discrete-time ε-parameterised diffusion.

The schedule is a frozen config (its fields are the only hyper-parameters) that also carries the
derived float64 tables of Ho et al. (2020), "Denoising Diffusion Probabilistic Models":

* ``betas`` β_t, ``alphas`` α_t = 1 − β_t, ``alphas_cumprod`` ᾱ_t = Π_{s≤t} α_s and
  ``alphas_cumprod_prev`` ᾱ_{t−1} (with ᾱ_{−1} = 1);
* the posterior q(z_{t−1} | z_t, z_0) = N(c1·z_0 + c2·z_t, β̃_t) with
  β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)  (Ho et al. Eq. 7), whose log is clipped at 1e-20 because
  β̃_0 = 0 (SPEC §5.3).

Axis legend: ``b`` batch; ``...`` the latent's remaining axes (``t h w c`` for PreDiff); the
diffusion step is written ``t`` (paper notation) and is *not* a frame axis. Timesteps are a
LongTensor ``(b,)`` (a python int or 0-d tensor is broadcast to the batch); every coefficient is
gathered per sample and broadcast over ``...``. Tables stay float64 on the CPU and are cast to the
latent's dtype/device on use (cached per device/dtype).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from einops import rearrange
from torch import Tensor

ScheduleKind = Literal["linear_sqrt", "linear", "cosine"]
_KINDS = ("linear_sqrt", "linear", "cosine")
_LOG_VARIANCE_FLOOR = 1e-20  # β̃_0 = 0: clip before the log, as the reference does (SPEC §5.3)


class Posterior(NamedTuple):
    """Mean, variance and clipped log-variance of q(z_{t−1} | z_t, z_0); variances are ``(b, 1, …)``."""

    mean: Tensor
    variance: Tensor
    log_variance: Tensor


@dataclass(frozen=True)
class NoiseSchedule:
    """Discrete β schedule plus the derived tables and the closed-form forward-process algebra.

    Attributes:
        num_train_timesteps: T, the number of diffusion steps (t = 0 … T−1).
        beta_start: β_0 for the linear kinds.
        beta_end: β_{T−1} for the linear kinds.
        kind: ``linear_sqrt`` — β = linspace(√β_0, √β_{T−1}, T)², the latent-diffusion / PreDiff
            schedule (SPEC §5.3, the default); ``linear`` — β = linspace(β_0, β_{T−1}, T) (Ho et al.);
            ``cosine`` — ᾱ(t) = cos²(((t/T) + s)/(1 + s) · π/2) (Nichol & Dhariwal 2021, Eq. 17),
            β_t = 1 − ᾱ(t+1)/ᾱ(t) clipped at ``max_beta``; ignores beta_start / beta_end.
        cosine_s: offset s of the cosine schedule (keeps β_0 from vanishing).
        max_beta: upper clip of the cosine β (prevents the singularity at t = T).

    Derived tables (float64, CPU, shape ``(T,)``, set at construction): ``betas``, ``alphas``,
    ``alphas_cumprod``, ``alphas_cumprod_prev``, ``sqrt_alphas_cumprod``,
    ``sqrt_one_minus_alphas_cumprod``, ``posterior_variance`` (β̃), ``posterior_log_variance_clipped``,
    ``posterior_mean_coef1`` and ``posterior_mean_coef2``.
    """

    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 2e-2
    kind: ScheduleKind = "linear_sqrt"
    cosine_s: float = 8e-3
    max_beta: float = 0.999

    def __post_init__(self) -> None:
        _validate(self)
        betas = _make_betas(self)
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        tables = {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": posterior_variance.clamp(min=_LOG_VARIANCE_FLOOR).log(),
            # Ho et al. Eq. 7: μ̃_t = c1·z_0 + c2·z_t
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
        }
        for name, table in tables.items():
            object.__setattr__(self, name, table)
        object.__setattr__(self, "_cache", {})

    # ----------------------------------------------------------------- forward-process algebra
    def add_noise(self, z0: Tensor, eps: Tensor, t: Tensor | int) -> Tensor:
        """q_sample: z_t = √ᾱ_t z_0 + √(1 − ᾱ_t) ε (Ho et al. Eq. 4). Shapes ``(b, ...)``."""
        return (
            self._at("sqrt_alphas_cumprod", t, z0) * z0
            + self._at("sqrt_one_minus_alphas_cumprod", t, z0) * eps
        )

    def predict_z0(self, z_t: Tensor, eps: Tensor, t: Tensor | int) -> Tensor:
        """Invert ``add_noise`` for z_0 given ε: ẑ_0 = (z_t − √(1 − ᾱ_t) ε) / √ᾱ_t. Shapes ``(b, ...)``."""
        noise_part = self._at("sqrt_one_minus_alphas_cumprod", t, z_t) * eps
        return (z_t - noise_part) / self._at("sqrt_alphas_cumprod", t, z_t)

    def predict_eps(self, z_t: Tensor, z0: Tensor, t: Tensor | int) -> Tensor:
        """Invert ``add_noise`` for ε given z_0: ε = (z_t − √ᾱ_t z_0) / √(1 − ᾱ_t). Shapes ``(b, ...)``."""
        signal_part = self._at("sqrt_alphas_cumprod", t, z_t) * z0
        return (z_t - signal_part) / self._at("sqrt_one_minus_alphas_cumprod", t, z_t)

    def posterior_mean_variance(self, z0: Tensor, z_t: Tensor, t: Tensor | int) -> Posterior:
        """q(z_{t−1} | z_t, z_0): mean ``(b, ...)``; variance and clipped log-variance ``(b, 1, …)``."""
        mean = self._at("posterior_mean_coef1", t, z_t) * z0 + self._at("posterior_mean_coef2", t, z_t) * z_t
        variance = self._at("posterior_variance", t, z_t)
        log_variance = self._at("posterior_log_variance_clipped", t, z_t)
        return Posterior(mean, variance, log_variance)

    def snr(self, t: Tensor | int) -> Tensor:
        """Signal-to-noise ratio ᾱ_t / (1 − ᾱ_t), ``(b,)`` in the default dtype on ``t``'s device."""
        t = torch.as_tensor(t)
        abar = self.alphas_cumprod[t.cpu()]
        return (abar / (1.0 - abar)).to(device=t.device, dtype=torch.get_default_dtype())

    # ----------------------------------------------------------------- config plumbing
    def replace(self, **changes: Any) -> NoiseSchedule:
        """A copy with ``changes`` applied (unknown keys raise a ValueError listing the valid ones)."""
        valid = [f.name for f in dataclasses.fields(self)]
        unknown = set(changes) - set(valid)
        if unknown:
            raise ValueError(f"unknown NoiseSchedule keys {sorted(unknown)}; valid keys: {valid}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    # ----------------------------------------------------------------- helpers
    def _at(self, name: str, t: Tensor | int, like: Tensor) -> Tensor:
        """Table ``name`` gathered at ``t`` and shaped ``(b, 1, …)`` to broadcast over ``like``."""
        table = self._table(name, like.device, like.dtype)
        t = torch.as_tensor(t, device=like.device)
        if t.ndim == 0:
            t = t.expand(like.shape[0])  # one step for the whole batch
        values = table[t.long()]  # (b,)
        pattern = "b -> b" + " 1" * (like.ndim - 1)
        return rearrange(values, pattern)  # (b, 1, …)

    def _table(self, name: str, device: torch.device, dtype: torch.dtype) -> Tensor:
        # cast on the CPU first: some backends (MPS) cannot hold float64
        key = (name, device, dtype)
        if key not in self._cache:
            self._cache[key] = getattr(self, name).to(dtype).to(device)
        return self._cache[key]


def _make_betas(cfg: NoiseSchedule) -> Tensor:
    """β_t, float64 ``(T,)``, for the configured kind."""
    steps = cfg.num_train_timesteps
    if cfg.kind == "linear_sqrt":
        return (
            torch.linspace(math.sqrt(cfg.beta_start), math.sqrt(cfg.beta_end), steps, dtype=torch.float64)
            ** 2
        )
    if cfg.kind == "linear":
        return torch.linspace(cfg.beta_start, cfg.beta_end, steps, dtype=torch.float64)
    # cosine: β_t = 1 − ᾱ(t+1)/ᾱ(t) evaluated on the continuous ᾱ(·) (Nichol & Dhariwal Eq. 17)
    grid = torch.arange(steps + 1, dtype=torch.float64) / steps
    abar = torch.cos((grid + cfg.cosine_s) / (1.0 + cfg.cosine_s) * math.pi / 2) ** 2
    return (1.0 - abar[1:] / abar[:-1]).clamp(max=cfg.max_beta)


def _validate(cfg: NoiseSchedule) -> None:
    problems = []
    if cfg.kind not in _KINDS:
        problems.append(f"kind={cfg.kind!r} (choose one of {list(_KINDS)})")
    if cfg.num_train_timesteps < 1:
        problems.append(f"num_train_timesteps={cfg.num_train_timesteps} must be >= 1")
    if not 0.0 < cfg.beta_start <= cfg.beta_end < 1.0:
        problems.append(f"need 0 < beta_start <= beta_end < 1 (got {cfg.beta_start}, {cfg.beta_end})")
    if not 0.0 < cfg.max_beta < 1.0:
        problems.append(f"max_beta={cfg.max_beta} must lie in (0, 1)")
    if problems:
        raise ValueError("invalid NoiseSchedule: " + "; ".join(problems))
