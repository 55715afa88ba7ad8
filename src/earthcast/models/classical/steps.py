"""STEPS ensemble nowcast (pysteps), a training-free probabilistic forecaster.

Axis legend: ``b`` batch, ``s`` ensemble member, ``t`` time, ``h``/``w`` space, ``c`` channel.

Contract: ``(B, T_in, H, W, C_in)`` → ``(B, S, T_out, H, W, C_out)`` with ``S = n_ens_members``,
same dtype and device. For each batch item and each of the first ``C_out`` channels:

1. the normalised context is converted to dBR (``scaling.to_dbr``: de-normalise with
   ``scale_factor``/``scale_offset``, read it as ``transform``, dry below ``precip_threshold``);
2. the motion field is estimated from it with dense Lucas-Kanade (as in ``LKExtrapolation``);
3. pysteps' STEPS (Bowler et al., 2006; Seed et al., 2013) decomposes the latest ``ar_order + 1``
   frames into an FFT cascade of ``n_cascade_levels`` Gaussian bands, fits an AR(p) model per band,
   and advects the cascade while adding spatially correlated noise, with perturbed motion (BPS),
   an incremental rain mask and CDF probability matching;
4. the dBR forecast goes back to normalised units (``scaling.from_dbr``). Pixels that pysteps
   leaves NaN (advected in from outside the domain) become dry.

``n_cascade_levels=None`` adapts to the grid: ``clip(floor(log2(max(H, W))) − 2, 3, 6)``
(3 up to 32 px, 4 at 64, 5 at 128, pysteps' 6 from 256). An explicit value must lie in
``[3, log2(max(H, W))]``. ``seed`` fixes the noise: a forecast depends only on its context and the
seed (every batch item and channel uses the same seed), so repeated calls are identical; ``None``
draws fresh noise every call.

Degenerate inputs: a context with no rain above the threshold (fraction of wet pixels in the last
frame <= ``norain_fraction``) gives an all-dry forecast (pysteps' zero-precipitation branch).
A context whose statistics STEPS cannot fit (a static or perfectly translating field makes the
AR(2) model non-stationary or its Yule-Walker matrix singular; a uniform field leaves the noise
generator nothing to fit) is retried with AR(1); if that fails too, ``on_failure="extrapolate"``
warns and returns the deterministic semi-Lagrangian extrapolation of the last frame for every
member (zero spread), ``on_failure="raise"`` re-raises pysteps' error.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from einops import repeat
from torch import Tensor, nn

from earthcast.models.classical import scaling
from earthcast.models.classical._common import (
    ClassicalConfig,
    context_to_numpy,
    import_pysteps,
    numpy_to_forecast,
    quiet,
)
from earthcast.models.classical.extrapolation import advect, estimate_motion

NoiseMethod = Literal["nonparametric", "parametric", "ssft", "nested"]
MaskMethod = Literal["incremental", "obs", "sprog"]


@dataclass(frozen=True)
class STEPSConfig(ClassicalConfig):
    """Hyper-parameters of :class:`STEPSNowcast` (``out_len``, ``channels_out``, motion options:
    see :class:`~earthcast.models.classical._common.ClassicalConfig`).

    Attributes:
        n_ens_members: ensemble size ``S``.
        n_cascade_levels: cascade bands; ``None`` adapts to the grid (module docstring).
        ar_order: order of the per-band autoregressive model (1 or 2); the context needs
            ``ar_order + 1`` frames.
        seed: noise seed (``None``: fresh noise each call).
        precip_threshold: rain rate in mm/h below which a pixel is dry.
        norain_fraction: wet-pixel fraction of the last frame at or below which the forecast is dry.
        kmperpixel: grid spacing in km (scales the motion perturbations and the rain mask growth).
        timestep_minutes: minutes between frames (same role).
        transform: how the stored values encode rain rate (``scaling`` module); ``"none"`` is
            refused (not a precipitation field).
        scale_factor, scale_offset: de-normalisation ``v = x · scale_factor + scale_offset``, the
            data contract's keys.
        zerovalue: dBR of dry pixels; ``None`` gives ``10·log10(precip_threshold) − 5``.
        noise_method: pysteps noise generator.
        vel_pert_method: motion perturbation (``"bps"``) or ``None`` for unperturbed motion.
        mask_method: rain/no-rain masking of the members (``None`` disables it).
        on_failure: what to do when STEPS cannot fit the context (module docstring).
    """

    n_ens_members: int = 8
    n_cascade_levels: int | None = None
    ar_order: int = 2
    seed: int | None = 0
    precip_threshold: float = 0.1
    norain_fraction: float = 0.0
    kmperpixel: float = 1.0
    timestep_minutes: float = 5.0
    transform: scaling.Transform = "dbr"
    scale_factor: float = 1.0
    scale_offset: float = 0.0
    zerovalue: float | None = None
    noise_method: NoiseMethod = "nonparametric"
    vel_pert_method: Literal["bps"] | None = "bps"
    mask_method: MaskMethod | None = "incremental"
    on_failure: Literal["extrapolate", "raise"] = "extrapolate"

    def validate(self) -> None:
        scaling.check_precipitation(self.transform)
        self._check(int(self.n_ens_members) >= 1, "n_ens_members", "must be >= 1")
        levels = self.n_cascade_levels
        self._check(levels is None or int(levels) >= 3, "n_cascade_levels", "must be >= 3 or None")
        self._check(self.ar_order in (1, 2), "ar_order", "must be 1 or 2")
        self._check(self.precip_threshold > 0, "precip_threshold", "must be > 0 (mm/h)")
        self._check(0 <= self.norain_fraction < 1, "norain_fraction", "must lie in [0, 1)")
        self._check(self.kmperpixel > 0, "kmperpixel", "must be > 0")
        self._check(self.timestep_minutes > 0, "timestep_minutes", "must be > 0")
        self._check(self.scale_factor != 0, "scale_factor", "must be non-zero")
        dry_ok = self.zerovalue is None or self.zerovalue < 10 * math.log10(self.precip_threshold)
        self._check(dry_ok, "zerovalue", "must lie below the threshold in dBR, 10·log10(precip_threshold)")
        self._check(self.on_failure in ("extrapolate", "raise"), "on_failure", "must be extrapolate|raise")

    @property
    def dry_dbr(self) -> float:
        """dBR value of dry pixels."""
        return scaling.dbr_floor(self.precip_threshold) if self.zerovalue is None else self.zerovalue


def cascade_levels(config: STEPSConfig, height: int, width: int) -> int:
    """Number of cascade bands for an ``height × width`` grid (see the module docstring)."""
    most = int(math.log2(max(height, width)))
    if most < 3:
        raise ValueError(f"STEPS needs a grid of at least 8 pixels along one side, got {height}x{width}")
    if config.n_cascade_levels is None:
        return min(6, max(3, most - 2))
    if config.n_cascade_levels > most:
        raise ValueError(
            f"n_cascade_levels={config.n_cascade_levels} is too many for a {height}x{width} grid "
            f"(at most log2(max(H, W)) = {most}); lower it or pass None to adapt"
        )
    return config.n_cascade_levels


class STEPSNowcast(nn.Module):
    """pysteps STEPS ensemble on earthcast batches (see the module docstring)."""

    def __init__(self, config: STEPSConfig | None = None, **overrides) -> None:
        super().__init__()
        config = config or STEPSConfig()
        self.config = config.replace(**overrides) if overrides else config

    def forward(self, x: Tensor) -> Tensor:
        """Forecast: ``x (B, T_in, H, W, C_in)`` → ``(B, S, T_out, H, W, C_out)``."""
        cfg = self.config
        fields = context_to_numpy(x, cfg, cfg.ar_order + 1, "STEPSNowcast")  # (B, C, T_in, H, W)
        levels = cascade_levels(cfg, *fields.shape[-2:])
        shape = (*fields.shape[:2], cfg.n_ens_members, cfg.out_len, *fields.shape[-2:])
        out = np.empty(shape)  # (B, C, S, T_out, H, W)
        for b, c in np.ndindex(*fields.shape[:2]):
            dbr = self._to_dbr(fields[b, c])  # (T_in, H, W)
            velocity = estimate_motion(dbr, cfg)  # (2, H, W)
            members = self._ensemble(dbr, velocity, levels)  # (S, T_out, H, W)
            out[b, c] = self._from_dbr(members)  # (S, T_out, H, W), normalised
        return numpy_to_forecast(out, x)  # (B, S, T_out, H, W, C_out)

    def _to_dbr(self, fields: np.ndarray) -> np.ndarray:
        cfg = self.config
        return scaling.to_dbr(
            fields, cfg.transform, cfg.precip_threshold, cfg.scale_factor, cfg.scale_offset, cfg.dry_dbr
        )

    def _from_dbr(self, dbr: np.ndarray) -> np.ndarray:
        cfg = self.config
        dbr = np.where(np.isfinite(dbr), dbr, cfg.dry_dbr)  # NaN: advected in from outside → dry
        return scaling.from_dbr(
            dbr, cfg.transform, cfg.precip_threshold, cfg.scale_factor, cfg.scale_offset, cfg.dry_dbr
        )

    def _ensemble(self, dbr: np.ndarray, velocity: np.ndarray, levels: int) -> np.ndarray:
        """STEPS members ``(S, T_out, H, W)`` in dBR, with the AR(1) and extrapolation fallbacks."""
        cfg = self.config
        error: Exception | None = None
        for ar_order in dict.fromkeys((cfg.ar_order, 1)):  # AR(p), then AR(1) once
            try:
                return self._steps(dbr[-(ar_order + 1) :], velocity, levels, ar_order)
            except (RuntimeError, ValueError) as err:  # LinAlgError is a ValueError
                error = err
        if cfg.on_failure == "raise":
            raise error
        warnings.warn(
            f"STEPS could not fit this context ({error}); returning the deterministic "
            "extrapolation of the last frame for every member",
            RuntimeWarning,
            stacklevel=3,
        )
        frames = advect(dbr[-1], velocity, cfg.out_len, cfg.dry_dbr)  # (T_out, H, W)
        return repeat(frames, "t h w -> s t h w", s=cfg.n_ens_members)  # (S, T_out, H, W)

    def _steps(self, dbr: np.ndarray, velocity: np.ndarray, levels: int, ar_order: int) -> np.ndarray:
        """One pysteps STEPS call on ``dbr (ar_order + 1, H, W)`` → ``(S, T_out, H, W)``."""
        cfg = self.config
        nowcast = import_pysteps().nowcasts.get_method("steps")
        with quiet(), np.errstate(invalid="ignore", divide="ignore"):
            members = nowcast(
                dbr,
                velocity,
                cfg.out_len,
                n_ens_members=cfg.n_ens_members,
                n_cascade_levels=levels,
                precip_thr=10.0 * math.log10(cfg.precip_threshold),
                norain_thr=cfg.norain_fraction,
                kmperpixel=cfg.kmperpixel,
                timestep=cfg.timestep_minutes,
                noise_method=cfg.noise_method,
                vel_pert_method=cfg.vel_pert_method,
                mask_method=cfg.mask_method,
                ar_order=ar_order,
                seed=cfg.seed,
                measure_time=False,
            )
        members = np.reshape(
            np.asarray(members, dtype=np.float64), (cfg.n_ens_members, cfg.out_len, *dbr.shape[-2:])
        )
        if not np.isfinite(members).any():
            raise RuntimeError("STEPS produced no finite value")
        return members
