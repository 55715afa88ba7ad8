"""Edge conversion between earthcast's normalised fields and the rain units pysteps expects.

Axis legend: none; every function is elementwise on numpy arrays of any shape (``t h w`` here).

Data modules hand models *normalised* values ``x``; the stored (physical-transform) value is

    v = x · scale_factor + scale_offset                     (the data contract's keys)

and ``v`` is a precipitation field in one of the ``import_radar`` transforms (``transform``,
threshold ``τ`` in mm/h, dry floor ``z``):

==============  ==================================  =================================
transform       rain rate R (mm/h) → v              v → R (then R < τ → 0)
==============  ==================================  =================================
``rainrate``    R if R ≥ τ else 0                   R = v
``dbr``         10·log10(R) if R ≥ τ else z         R = 10^(v / 10)
``log1p``       log(1 + R) if R ≥ τ else 0          R = exp(v) − 1
``none``        not a precipitation field: STEPS refuses it (``ValueError``)
==============  ==================================  =================================

The dBR floor defaults to ``z = 10·log10(τ) − 5`` (−15 dBR for τ = 0.1 mm/h), the convention of
pysteps and of ``earthcast.data.radar``. STEPS runs in dBR: :func:`to_dbr` maps ``x`` to dBR
through R, :func:`from_dbr` maps a dBR forecast back to ``x``. Every pixel below ``τ`` counts as
dry in both directions, so wet values round-trip exactly and dry ones land on the floor.
Lucas-Kanade extrapolation needs none of this: it advects ``x`` as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

import numpy as np

Transform = Literal["dbr", "log1p", "rainrate", "none"]
TRANSFORMS: tuple[str, ...] = get_args(Transform)
#: Units written by ``earthcast.data.radar.import_radar`` for each transform.
UNITS: dict[str, str] = {"rainrate": "mm/h", "dbr": "dBR", "log1p": "log(1 + mm/h)"}


def _wet(rate: np.ndarray, threshold: float) -> np.ndarray:
    """``rate >= threshold`` up to rounding: a threshold value that went through log/exp stays wet."""
    return rate >= threshold * (1.0 - 1e-9)


def dbr_floor(threshold: float) -> float:
    """The dBR value of dry pixels: 5 dB below the threshold (pysteps' ``zerovalue``)."""
    return 10.0 * float(np.log10(threshold)) - 5.0


def check_precipitation(transform: str) -> None:
    """Raise a ValueError unless ``transform`` names a precipitation transform."""
    if transform not in UNITS:
        hint = (
            " The data are not a precipitation field; STEPS needs rain rate in some transform."
            if transform == "none"
            else ""
        )
        raise ValueError(
            f"transform={transform!r} cannot be converted to rain rate.{hint} "
            f"Valid precipitation transforms: {', '.join(UNITS)}"
        )


def denormalise(x: np.ndarray, scale_factor: float = 1.0, scale_offset: float = 0.0) -> np.ndarray:
    """Normalised data → stored values ``v = x · scale_factor + scale_offset``."""
    return np.asarray(x, dtype=np.float64) * scale_factor + scale_offset


def normalise(v: np.ndarray, scale_factor: float = 1.0, scale_offset: float = 0.0) -> np.ndarray:
    """Stored values → normalised data ``x = (v − scale_offset) / scale_factor``."""
    return (np.asarray(v, dtype=np.float64) - scale_offset) / scale_factor


def to_rainrate(v: np.ndarray, transform: str, threshold: float) -> np.ndarray:
    """Transformed values → rain rate R in mm/h, with R < ``threshold`` (and the floor) set to 0."""
    check_precipitation(transform)
    v = np.asarray(v, dtype=np.float64)
    if transform == "dbr":
        rate = 10.0 ** (v / 10.0)
    elif transform == "log1p":
        rate = np.expm1(v)
    else:
        rate = v
    return np.where(_wet(rate, threshold), rate, 0.0)


def from_rainrate(
    rate: np.ndarray, transform: str, threshold: float, zerovalue: float | None = None
) -> np.ndarray:
    """Rain rate R in mm/h → transformed values; dry pixels (R < ``threshold``) get the floor.

    ``zerovalue`` is the dBR floor (default :func:`dbr_floor`); the other transforms floor at 0.
    """
    check_precipitation(transform)
    rate = np.asarray(rate, dtype=np.float64)
    wet = _wet(rate, threshold)
    safe = np.where(wet, rate, threshold)  # keeps log10 finite on dry pixels
    if transform == "dbr":
        floor = dbr_floor(threshold) if zerovalue is None else zerovalue
        return np.where(wet, 10.0 * np.log10(safe), floor)
    if transform == "log1p":
        return np.where(wet, np.log1p(safe), 0.0)
    return np.where(wet, rate, 0.0)


def to_dbr(
    x: np.ndarray,
    transform: str,
    threshold: float,
    scale_factor: float = 1.0,
    scale_offset: float = 0.0,
    zerovalue: float | None = None,
) -> np.ndarray:
    """Normalised data → dBR (dry pixels at ``zerovalue``), the input STEPS expects."""
    rate = to_rainrate(denormalise(x, scale_factor, scale_offset), transform, threshold)
    return from_rainrate(rate, "dbr", threshold, zerovalue)


def from_dbr(
    dbr: np.ndarray,
    transform: str,
    threshold: float,
    scale_factor: float = 1.0,
    scale_offset: float = 0.0,
    zerovalue: float | None = None,
) -> np.ndarray:
    """dBR → normalised data; the inverse of :func:`to_dbr` on wet pixels, the floor on dry ones."""
    rate = to_rainrate(dbr, "dbr", threshold)
    return normalise(from_rainrate(rate, transform, threshold, zerovalue), scale_factor, scale_offset)


def transform_for_units(units: str | None) -> str | None:
    """The transform that data in ``units`` are stored in: a precipitation transform for the units
    ``import_radar`` writes ("dBR", "mm/h", "log(1 + mm/h)"), ``"none"`` for any other units (grey
    levels, kelvin, VIL: STEPS then refuses them instead of reading them as dBR), ``None`` when the
    data say nothing (the caller's default stands)."""
    if units is None:
        return None
    by_units = {name_units: name for name, name_units in UNITS.items()}
    return by_units.get(units, "none")


def scaling_from_contract(contract: Mapping[str, Any]) -> dict[str, Any]:
    """STEPS config overrides read from a data contract (the keys it has; units name the transform).

    ``units`` select ``transform`` (:func:`transform_for_units`); ``scale_factor``/``scale_offset``
    and ``frame_interval_minutes`` are copied when present.
    """
    out: dict[str, Any] = {}
    transform = transform_for_units(contract.get("units"))
    if transform is not None:
        out["transform"] = transform
    for key in ("scale_factor", "scale_offset"):
        if contract.get(key) is not None:
            out[key] = float(contract[key])
    if contract.get("frame_interval_minutes") is not None:
        out["timestep_minutes"] = float(contract["frame_interval_minutes"])
    return out
