"""A synthetic radar composite in the layout ``earthcast.data.radar.import_radar`` writes.

One variable ``precip`` ``(time, y, x)`` in dBR (the default radar transform), 5-minute steps, a
time coordinate, projection-like ``y``/``x`` pixel centres and the attributes of a real import.
The rain comes from the synthetic SEVIR storm generator (drifting, growing and decaying cells):
consecutive storms are chained in time, VIL is decoded to kg m⁻² and used as a rain rate in mm/h,
and a corner outside the "radar domain" is NaN, as in real composites. Offline, seeded, small.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from einops import rearrange

from earthcast.data.radar import UNITS, rain_transform
from earthcast.data.sevir.constants import vil_to_kg_m2
from earthcast.data.sevir.synth import storm_event
from earthcast.utils.io import atomic_path

TIMESTEP_MINUTES = 5
"""Minutes between frames of the synthetic composite."""


def synthetic_radar(n_times: int = 192, size: int = 32, seed: int = 0, threshold: float = 0.1):
    """An in-memory synthetic composite (an ``xarray.Dataset``; see the module docstring).

    Args:
        n_times: number of frames.
        size: pixels per side.
        seed: seed of everything random.
        threshold: rain rate (mm/h) below which a pixel is dry (dBR floor as ``import_radar``).
    """
    import xarray as xr

    if n_times < 2 or size < 8:
        raise ValueError(f"need n_times >= 2 and size >= 8, got {n_times} and {size}")
    rng = np.random.default_rng(seed)
    storm_len = 48
    chunks = [storm_event(rng, size, storm_len) for _ in range(-(-n_times // storm_len))]  # (h, w, t) each
    codes = rearrange(np.concatenate(chunks, axis=-1)[..., :n_times], "h w t -> t h w")
    rate = vil_to_kg_m2(codes)  # (t, h, w), read as mm/h
    yy, xx = np.mgrid[0:size, 0:size]
    rate[:, (yy + xx) < size // 4] = np.nan  # outside the radar domain
    values, zerovalue = rain_transform(rate, "dbr", threshold)
    times = np.datetime64("2024-06-01T00:00", "ns") + np.arange(n_times) * np.timedelta64(
        TIMESTEP_MINUTES, "m"
    )
    pixel = 1000.0 * 384 / size
    centres = (np.arange(size) + 0.5) * pixel
    attrs = {
        "long_name": "precipitation",
        "units": UNITS["dbr"],
        "transform": "dbr",
        "threshold": float(threshold),
        "threshold_units": "mm/h",
        "zerovalue": zerovalue,
    }
    return xr.Dataset(
        {"precip": (("time", "y", "x"), values, attrs)},
        coords={"time": times, "y": centres[::-1].copy(), "x": centres},
        attrs={
            "source": "synthetic",
            "title": "earthcast synthetic radar composite (not real observations)",
            "timestep": TIMESTEP_MINUTES,
            "timestep_units": "minutes",
            "seed": seed,
        },
    )


def write_synthetic_radar(
    out: str | os.PathLike, n_times: int = 192, size: int = 32, seed: int = 0, threshold: float = 0.1
) -> Path:
    """Write :func:`synthetic_radar` to ``out`` (NetCDF if it ends in ``.nc``, else Zarr), atomically."""
    out = Path(out)
    ds = synthetic_radar(n_times, size, seed, threshold)
    with atomic_path(out, directory=out.suffix != ".nc") as tmp:
        if out.suffix == ".nc":
            ds.to_netcdf(tmp)
        else:
            ds.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True)
    return out
