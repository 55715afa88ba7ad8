"""Lucas-Kanade optical flow + semi-Lagrangian extrapolation (pysteps), a training-free forecaster.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel; ``v`` the two motion
components ``(u, v)`` in pixels per frame.

Contract: ``(B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``, same dtype and device. For
each batch item and each of the first ``C_out`` channels independently:

1. the motion field is estimated from the latest ``motion_frames`` context frames with pysteps'
   dense Lucas-Kanade (Shi-Tomasi corners tracked by OpenCV's pyramidal LK, outliers removed,
   declustered, interpolated to every pixel by inverse-distance weighting);
2. the last context frame is advected along it, backward semi-Lagrangian (Germann and Zawadzki,
   2002), one step per output frame.

Values are advected as they are (any field works, no rain-unit conversion). Pixels advected in
from outside the domain are filled with the minimum of the last frame (``fill="min"``: the dry
floor of min-max scaled data, where NaN was replaced by 0) or with 0 (``fill="zero"``).

Degenerate inputs: where Lucas-Kanade finds no trackable feature (an all-zero / no-rain or a
constant context) pysteps returns a zero motion field and the forecast is Eulerian persistence of
the last frame. A motion field with any non-finite value is replaced by zeros for the same reason.
The module has no parameters and no gradient; pysteps is imported on the first forward.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from torch import Tensor, nn

from earthcast.models.classical._common import (
    ClassicalConfig,
    context_to_numpy,
    import_pysteps,
    numpy_to_forecast,
    quiet,
)

Fill = Literal["min", "zero"]


@dataclass(frozen=True)
class LKExtrapolationConfig(ClassicalConfig):
    """Hyper-parameters of :class:`LKExtrapolation` (``out_len``, ``channels_out``, motion options:
    see :class:`~earthcast.models.classical._common.ClassicalConfig`).

    Attributes:
        fill: value of pixels advected in from outside the domain: ``"min"`` (minimum of the last
            context frame) or ``"zero"``.
        interp_order: spline order of the semi-Lagrangian interpolation: 0 nearest, 1 linear
            (pysteps' default), 3 cubic (sharper, slower).
    """

    fill: Fill = "min"
    interp_order: int = 1

    def validate(self) -> None:
        self._check(self.fill in ("min", "zero"), "fill", "must be 'min' or 'zero'")
        self._check(self.interp_order in (0, 1, 2, 3), "interp_order", "must be 0, 1, 2 or 3")


def estimate_motion(frames: np.ndarray, config: ClassicalConfig) -> np.ndarray:
    """Dense Lucas-Kanade motion of ``frames (T, H, W)`` → ``(2, H, W)`` pixels per frame.

    Zero where pysteps finds nothing to track (see the module docstring).
    """
    pysteps = import_pysteps()
    lucas_kanade = pysteps.motion.get_method("LK")
    with quiet(), warnings.catch_warnings():
        # identical vectors (static or rigidly moving field) make the outlier covariance singular;
        # pysteps then flags no outlier, which is right, but warns once per vector
        warnings.filterwarnings("ignore", message="Singular matrix during outlier detection")
        velocity = lucas_kanade(
            frames[-config.motion_frames :],
            decl_scale=config.decl_scale,
            size_opening=config.size_opening,
            verbose=False,
        )  # (2, H, W)
    velocity = np.asarray(velocity, dtype=np.float64)
    return velocity if np.isfinite(velocity).all() else np.zeros_like(velocity)


def advect(
    field: np.ndarray, velocity: np.ndarray, steps: int, outval: float, interp_order: int = 1
) -> np.ndarray:
    """Semi-Lagrangian extrapolation of ``field (H, W)`` along ``velocity`` → ``(steps, H, W)``.

    Pixels whose back-trajectory leaves the domain get ``outval``.
    """
    pysteps = import_pysteps()
    extrapolate = pysteps.extrapolation.get_method("semilagrangian")
    with quiet():
        return extrapolate(field, velocity, steps, outval=outval, interp_order=interp_order)  # (T, H, W)


class LKExtrapolation(nn.Module):
    """Advect the last context frame along its Lucas-Kanade motion (see the module docstring)."""

    def __init__(self, config: LKExtrapolationConfig | None = None, **overrides) -> None:
        super().__init__()
        config = config or LKExtrapolationConfig()
        self.config = config.replace(**overrides) if overrides else config

    def forward(self, x: Tensor) -> Tensor:
        """Forecast: ``x (B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``."""
        fields = context_to_numpy(x, self.config, 2, "LKExtrapolation")  # (B, C_out, T_in, H, W)
        out = np.empty((*fields.shape[:2], self.config.out_len, *fields.shape[-2:]))  # (B, C, T_out, H, W)
        for b, c in np.ndindex(*fields.shape[:2]):
            velocity = estimate_motion(fields[b, c], self.config)  # (2, H, W)
            last = fields[b, c, -1]  # (H, W)
            outval = float(last.min()) if self.config.fill == "min" else 0.0
            out[b, c] = advect(
                last, velocity, self.config.out_len, outval, self.config.interp_order
            )  # (T_out, H, W)
        return numpy_to_forecast(out, x)  # (B, T_out, H, W, C_out)
