"""Forecasts as CF-1.8 NetCDF: lead times in minutes, units, provenance, optional ensembles.

Axis legend: ``n`` sample, ``s`` ensemble member, ``t`` lead time, ``h``/``w`` space,
``c`` channel, ``k`` threshold.

``forecast_dataset(forecast, contract, ...)`` turns ``(N, T, H, W, C)`` (deterministic) or
``(N, S, T, H, W, C)`` (ensemble) arrays into an ``xr.Dataset``; ``write_forecast`` writes it
atomically. ``write_forecast_batches`` writes the same file from forecasts that arrive a batch at
a time (``earthcast.inference.iter_forecasts``), holding one batch in memory: the ``sample``
dimension is unlimited and every later batch is appended to it. Each sample is its own
compressed chunk, so reading one sample reads only its chunk. Layout of the file:

========================================  ==============================================
``<variable>(sample, [member,] lead_time, y, x[, channel])``  the forecast, named after the contract
``<variable>_ensemble_mean(sample, lead_time, y, x[, channel])``  ensembles only
``<variable>_exceedance_probability(sample, threshold, lead_time, y, x[, channel])``
                                          ensembles with thresholds: fraction of members with
                                          physical value ≥ τ
``lead_time(lead_time)``                  minutes after the reference time (``standard_name
                                          forecast_period``); frame steps when the contract has
                                          no clock interval (monthly data)
``sample(sample)``                        index of the sample in the input file
``time(sample)``, ``valid_time``          reference time / valid time, when known
``y(y)``, ``x(x)``                        the input's grid coordinates; else latitudes /
                                          longitudes recorded in the contract
                                          (``grid_latitude``/``grid_longitude``, ENSO); else
                                          row / column indices
========================================  ==============================================

**Row order.** Plots draw row 0 at the top, which is north only for data stored north-first
(SEVIR, radar composites). Grids whose latitude grows with the row index (ENSO: 55°S … 60°N, most
lat-ascending NetCDF/Zarr stores) must be drawn the other way up, and ``.npy`` inputs carry no
coordinates that would tell. So the ``y`` coordinate gets a ``row_order`` attribute,
``"north_first"`` or ``"south_first"``, whenever it is known: from the input's own ``y``
coordinate (latitude, or projection y), else from the contract's ``row_order``
(``contract_row_order``). ``row_order`` reads it back from a coordinate; ``earthcast plot`` draws
``"south_first"`` grids with ``origin="lower"``, so north is at the top.

**Values stay in the model's scale** (the scale of the input, e.g. SEVIR VIL code / 255), so a
forecast scores against targets prepared like the training data. The ``units`` attribute
describes the stored numbers: the contract's ``units`` when the data are unscaled (``scale``
``"raw"``/``"255"``), ``"1"`` for normalised data. Then ``physical_units``,
``physical_scale_factor`` and ``physical_add_offset`` give the way back
(``physical = value × factor + offset``; deliberately not the CF packing attributes
``scale_factor``/``add_offset``, which readers would apply silently). Thresholds ``τ`` are in
physical units, as the contract's ``thresholds`` (e.g. the SEVIR codes 16 … 219).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from earthcast.utils.io import atomic_path

__all__ = [
    "FILL_VALUE",
    "ROW_ORDERS",
    "cf_units",
    "contract_row_order",
    "exceedance_probability",
    "forecast_dataset",
    "physical_scale",
    "row_order",
    "variable_name",
    "write_forecast",
    "write_forecast_batches",
]

FILL_VALUE = np.float32(-9999.0)
"""``_FillValue`` of every float variable (forecasts never contain it; CF tools expect one)."""
REFERENCES = (
    "Gao et al. 2022, Earthformer: Exploring Space-Time Transformers for Earth System Forecasting "
    "(NeurIPS); Gao et al. 2023, PreDiff: Precipitation Nowcasting with Latent Diffusion Models (NeurIPS)"
)
_UNSCALED = (None, "raw", "255", "none")
# long_name and (where CF defines one) standard_name per contract variable
_VARIABLES: dict[str, tuple[str, str | None]] = {
    "vil": ("vertically integrated liquid (SEVIR VIL)", None),
    "precip": ("precipitation rate", "rainfall_rate"),
    "rainrate": ("rainfall rate", "rainfall_rate"),
    "rain_rate": ("rainfall rate", "rainfall_rate"),
    "sst": ("sea surface temperature anomaly", None),
    "frames": ("image intensity", None),
    "digits": ("image intensity", None),
    "intensity": ("image intensity", None),
}
_RAIN_RATE_UNITS = ("mm/h", "mm h-1", "mm hr-1")
_DIMENSIONLESS_WORDS = ("code", "grey level", "gray level", "count")
_MEMBER_ATTRS = {"standard_name": "realization", "long_name": "ensemble member"}
ROW_ORDERS: tuple[str, ...] = ("north_first", "south_first")
"""Values of ``row_order``: row 0 is the northernmost row (image order) or the southernmost."""
_NORTHWARD_STANDARD_NAMES = ("latitude", "grid_latitude", "projection_y_coordinate")
_LATITUDE_UNITS = ("degrees_north", "degree_north", "degrees_n", "degree_n", "degreesn", "degreen")
_LATITUDE_DIMS = ("lat", "latitude", "nav_lat")
_LEGACY_ROW_ORDERS = {"enso": "south_first"}
"""Row order of built-in data sets whose older contracts do not record it."""


def physical_scale(contract: Mapping[str, Any]) -> tuple[float, float]:
    """``(factor, offset)`` with ``physical = value × factor + offset`` for the contract's scale.

    ``"01"`` is ``x / 255`` (factor 255) unless the contract states ``scale_factor``; unscaled data
    have ``(1, 0)``; other scales (``"minmax"``, ``"standard"``) need ``scale_factor`` (and
    ``scale_offset``) in the contract.
    """
    scale = contract.get("scale")
    factor, offset = contract.get("scale_factor"), contract.get("scale_offset")
    if factor is None:
        if scale == "01":
            factor = 255.0
        elif scale in _UNSCALED:
            factor = 1.0
        else:
            raise ValueError(
                f"the data contract has scale {scale!r} but no 'scale_factor', so values cannot be "
                "related to physical thresholds; give thresholds only for models whose contract "
                "states its scaling"
            )
    return float(factor), float(offset or 0.0)


def exceedance_probability(
    members: np.ndarray, thresholds: Sequence[float], factor: float = 1.0, offset: float = 0.0
) -> np.ndarray:
    """``P(x ≥ τ)`` as the fraction of members: ``(N, S, T, ...)`` → ``(N, K, T, ...)`` float32.

    ``x = members × factor + offset`` is the physical value compared with each ``τ``.
    """
    physical = np.asarray(members, dtype=np.float64) * factor + offset  # (n, s, t, ...)
    return np.stack([(physical >= tau).mean(axis=1) for tau in thresholds], axis=1).astype(np.float32)


def cf_units(units: str | None) -> str:
    """UDUNITS-style ``units`` for a contract's units string.

    A trailing parenthetical is a description (``"K (SST anomaly)"`` → ``"K"``); codes and grey
    levels are dimensionless (``"VIL byte code (0-254; …)"`` → ``"1"``); empty means ``"1"``.
    """
    base = re.sub(r"\s*\(.*\)\s*$", "", str(units or "")).strip()
    if not base or any(word in base.lower() for word in _DIMENSIONLESS_WORDS):
        return "1"
    return base


def _grows_northward(attrs: Mapping[str, Any], name: str | None) -> bool:
    """Whether a y coordinate is a latitude or a northing, so its direction tells the row order;
    plain ``y`` values (row indices, unlabelled numbers) say nothing about north."""
    standard = str(attrs.get("standard_name", "")).strip().lower()
    units = str(attrs.get("units", "")).replace(" ", "").lower()
    long_name = str(attrs.get("long_name", "")).strip().lower()
    return (
        standard in _NORTHWARD_STANDARD_NAMES
        or units in _LATITUDE_UNITS
        or str(name or "").lower() in _LATITUDE_DIMS
        or long_name == "latitude"
        or long_name.startswith("projection y")
    )


def row_order(
    values: np.ndarray | Sequence[float] | None,
    attrs: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> str | None:
    """Which way the rows of a grid run, read from its y coordinate ``values`` / ``attrs`` / ``name``.

    A ``row_order`` attribute wins; else a latitude or projection-y coordinate that is strictly
    monotonic gives ``"south_first"`` when it grows with the row index and ``"north_first"``
    when it shrinks. Anything else (row indices, a coordinate of unknown meaning) gives ``None``:
    a guess would silently turn correct maps upside down.
    """
    attrs = attrs or {}
    stated = attrs.get("row_order")
    if stated in ROW_ORDERS:
        return str(stated)
    if values is None or not _grows_northward(attrs, name):
        return None
    coordinate = np.asarray(values)
    if coordinate.ndim != 1 or coordinate.size < 2 or not np.issubdtype(coordinate.dtype, np.number):
        return None
    steps = np.diff(coordinate.astype(np.float64))
    if np.all(steps > 0):
        return "south_first"
    if np.all(steps < 0):
        return "north_first"
    return None


def contract_row_order(contract: Mapping[str, Any]) -> str | None:
    """The contract's ``row_order``; for ENSO contracts written before the key existed, the
    order of the ICAR-ENSO files (55°S first), so their forecasts still plot north up."""
    stated = contract.get("row_order")
    if stated in ROW_ORDERS:
        return str(stated)
    return _LEGACY_ROW_ORDERS.get(str(contract.get("dataset") or "").lower())


def variable_name(contract: Mapping[str, Any]) -> str:
    """NetCDF variable name from the contract's ``variable`` (``"forecast"`` when empty)."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", str(contract.get("variable") or "")).strip("_")
    return name or "forecast"


def channel_scales(contract: Mapping[str, Any]) -> list[tuple[str, str, float, float]] | None:
    """``(variable, units, factor, offset)`` per output channel, when the contract records
    per-variable statistics of several target variables (a normalised multi-variable store);
    ``physical = value × factor + offset`` channel by channel. ``None`` otherwise."""
    names = list(contract.get("target_variables") or [])
    stats = contract.get("normalization") or {}
    if len(names) < 2 or any(n not in stats for n in names):
        return None
    units = contract.get("variable_units") or {}
    return [(n, str(units.get(n) or ""), float(stats[n][1]), float(stats[n][0])) for n in names]


def _per_channel(contract: Mapping[str, Any], channels: int) -> list[tuple[str, str, float, float]] | None:
    scales = channel_scales(contract)
    return scales if scales is not None and len(scales) == channels else None


def _channel_coords(scales: list[tuple[str, str, float, float]]) -> dict[str, Any]:
    names, units, factors, offsets = (list(column) for column in zip(*scales))
    return {
        "channel_name": ("channel", np.array(names, dtype=object), {"long_name": "variable of the channel"}),
        "physical_units": ("channel", np.array([u or "1" for u in units], dtype=object)),
        "physical_scale_factor": ("channel", np.array(factors, dtype=np.float64)),
        "physical_add_offset": ("channel", np.array(offsets, dtype=np.float64)),
    }


def _variable_attrs(contract: Mapping[str, Any], name: str, channels: int = 1) -> dict[str, Any]:
    scales = _per_channel(contract, channels)
    if scales is not None:
        listing = ", ".join(f"{n} [{u or '1'}] = value × {f:g} + {o:g}" for n, u, f, o in scales)
        return {
            "long_name": name,
            "units": "1",
            "earthcast_scale": str(contract.get("scale")),
            "comment": "values normalised per channel; physical value = value × physical_scale_factor"
            f"(channel) + physical_add_offset(channel): {listing}",
        }
    units = str(contract.get("units") or "")
    long_name, standard_name = _VARIABLES.get(name.lower(), (name, None))
    if standard_name == "rainfall_rate" and cf_units(units) not in _RAIN_RATE_UNITS:
        standard_name = None  # only claim the CF name when the units fit it
    scale = contract.get("scale")
    attrs: dict[str, Any] = {"long_name": long_name}
    if scale in _UNSCALED:
        attrs["units"] = cf_units(units)
        if standard_name:
            attrs["standard_name"] = standard_name
        if units and units != attrs["units"]:
            attrs["units_description"] = units
        return attrs
    factor, offset = physical_scale(contract)
    attrs.update(
        units="1",  # normalised values; a standard_name would require the physical units
        physical_units=units or "1",
        physical_scale_factor=factor,
        physical_add_offset=offset,
        earthcast_scale=str(scale),
        comment=f"values in the model's scale '{scale}': physical value [{units or '1'}] = value × {factor:g}"
        + (f" + {offset:g}" if offset else ""),
    )
    return attrs


def _coords(
    n: int,
    t: int,
    interval: float | None,
    sample_index: Sequence[int] | None,
    reference_time: np.ndarray | None,
) -> dict[str, Any]:
    lead = np.arange(1, t + 1, dtype=np.int32)
    if interval is not None:
        lead_attrs = {
            "standard_name": "forecast_period",
            "long_name": "forecast lead time",
            "units": "minutes",
        }
        lead = (lead * interval).astype(np.float64 if float(interval) % 1 else np.int32)
    else:
        lead_attrs = {"long_name": "forecast lead time in frames (no fixed clock interval)", "units": "1"}
    index = np.arange(n) if sample_index is None else np.asarray(sample_index)
    coords: dict[str, Any] = {
        "sample": ("sample", index.astype(np.int64), {"long_name": "index of the sample in the input file"}),
        "lead_time": ("lead_time", lead, lead_attrs),
    }
    if reference_time is not None:
        reference = np.asarray(reference_time, dtype="datetime64[ns]")
        coords["time"] = (
            "sample",
            reference,
            {"standard_name": "forecast_reference_time", "long_name": "time of the last context frame"},
        )
        if interval is not None:
            valid = reference[:, None] + (lead[None, :] * 60e9).astype("timedelta64[ns]")
            coords["valid_time"] = (("sample", "lead_time"), valid, {"standard_name": "time"})
    return coords


def _spatial(name: str, size: int, given: tuple | None, grid: Sequence[float] | None = None) -> tuple:
    """``(dim, values, attrs)`` of ``y`` or ``x``: the input's coordinate, else the contract's
    ``grid`` latitudes/longitudes (so ``.npy`` inputs still get geographic coordinates), else
    pixel indices."""
    axis = "Y" if name == "y" else "X"
    if given is not None and len(given[0]) == size:
        return (name, np.asarray(given[0]), {**given[1], "axis": axis})
    if grid is not None and len(grid) == size:
        standard, units = ("latitude", "degrees_north") if name == "y" else ("longitude", "degrees_east")
        attrs = {"standard_name": standard, "long_name": standard, "units": units, "axis": axis}
        return (name, np.asarray(grid, dtype=np.float64), attrs)
    long_name = "grid row index" if name == "y" else "grid column index"
    return (name, np.arange(size, dtype=np.int32), {"long_name": long_name, "axis": axis})


def _y_coordinate(size: int, given: tuple | None, contract: Mapping[str, Any]) -> tuple:
    """The ``y`` coordinate with its ``row_order`` attribute when known (module docstring): the
    coordinate's own direction first, since it describes these very rows (``given`` may carry
    the input's dimension name third: a bare ``lat`` axis says latitude by its name alone), then
    the contract."""
    source_name = given[2] if given is not None and len(given) > 2 else None
    dim, values, attrs = _spatial("y", size, given, contract.get("grid_latitude"))
    order = row_order(values, attrs, source_name) or contract_row_order(contract)
    if order is not None:
        attrs = {**attrs, "row_order": order}
    return (dim, values, attrs)


def forecast_dataset(
    forecast: np.ndarray,
    contract: Mapping[str, Any],
    *,
    sample_index: Sequence[int] | None = None,
    reference_time: np.ndarray | None = None,
    y: tuple | None = None,
    x: tuple[np.ndarray, dict] | None = None,
    thresholds: Sequence[float] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build the CF dataset of a forecast (module docstring for the layout).

    Args:
        forecast: ``(N, T, H, W, C)`` or, for an ensemble, ``(N, S, T, H, W, C)``.
        contract: the checkpoint's data contract (``variable``, ``units``, ``scale``,
            ``frame_interval_minutes``, ``thresholds``, …).
        sample_index: ``(N,)`` index of each sample in the input file (default ``0 … N−1``).
        reference_time: ``(N,)`` datetime64 time of each sample's last context frame.
        y, x: ``(values, attrs)`` coordinates of the grid (default: the contract's
            ``grid_latitude``/``grid_longitude``, else pixel indices); ``y`` gets ``row_order``,
            read from its values with the input's dimension name when given third.
        thresholds: ``τ`` in physical units for ``P(x ≥ τ)`` (ensembles only).
        attrs: global attributes (``title``, ``history``, ``source``, ``institution``, …).

    Raises:
        ValueError: wrong number of dimensions, or thresholds for a deterministic forecast.
    """
    forecast = np.asarray(forecast, dtype=np.float32)
    if forecast.ndim not in (5, 6):
        raise ValueError(
            f"forecast must be (N, T, H, W, C) or an ensemble (N, S, T, H, W, C), got shape {forecast.shape}"
        )
    ensemble = forecast.ndim == 6
    if thresholds and not ensemble:
        raise ValueError(
            "exceedance probabilities need an ensemble forecast (N, S, T, H, W, C); this model gives "
            "one deterministic forecast, so drop the thresholds"
        )
    n, t, h, w, c = forecast.shape[0], *forecast.shape[-4:]
    name = variable_name(contract)
    interval = contract.get("frame_interval_minutes")
    coords = _coords(n, t, interval, sample_index, reference_time)
    coords["y"] = _y_coordinate(h, y, contract)
    coords["x"] = _spatial("x", w, x, contract.get("grid_longitude"))
    space = ("lead_time", "y", "x") + (("channel",) if c > 1 else ())
    values = forecast if c > 1 else forecast[..., 0]  # (n, [s,] t, h, w[, c])
    var_attrs = _variable_attrs(contract, name, c)
    data_vars: dict[str, Any] = {}
    if ensemble:
        coords["member"] = ("member", np.arange(forecast.shape[1], dtype=np.int32), _MEMBER_ATTRS)
        data_vars[name] = (("sample", "member", *space), values, var_attrs)
        mean_attrs = {
            **var_attrs,
            "long_name": f"ensemble mean of {var_attrs['long_name']}",
            "cell_methods": "member: mean",
        }
        data_vars[f"{name}_ensemble_mean"] = (("sample", *space), values.mean(axis=1), mean_attrs)
        if thresholds:
            data_vars.update(_probabilities(values, contract, thresholds, name, space, coords))
    else:
        data_vars[name] = (("sample", *space), values, var_attrs)
    if c > 1:
        coords["channel"] = ("channel", np.arange(c, dtype=np.int32), {"long_name": "channel index"})
        scales = _per_channel(contract, c)
        if scales is not None:
            coords.update(_channel_coords(scales))
    return xr.Dataset(data_vars, coords=coords, attrs=_global_attrs(contract, attrs))


def _probabilities(values, contract, thresholds, name, space, coords) -> dict[str, Any]:
    scales = _per_channel(contract, values.shape[-1]) if "channel" in space else None
    if scales is not None:  # (c,) factors broadcast over the trailing channel axis
        factor, offset = (np.array([row[i] for row in scales]) for i in (2, 3))
    else:
        factor, offset = physical_scale(contract)
    units = str(contract.get("units") or "")
    coords["threshold"] = (
        "threshold",
        np.asarray(thresholds, dtype=np.float64),
        {
            "long_name": f"exceedance threshold of {name}, in physical units",
            "units": cf_units(units),
            # the stored values are in the model's scale; say how τ meets them
            "comment": "P(value × physical_scale_factor + physical_add_offset ≥ threshold)"
            if scales is not None
            else f"P(value × {float(factor):g} + {float(offset):g} ≥ threshold): τ is on the physical scale, "
            "not the stored one",
        },
    )
    probability = exceedance_probability(values, thresholds, factor, offset)
    attrs = {
        "long_name": f"probability that {name} >= threshold (fraction of ensemble members)",
        "units": "1",
        "valid_range": np.array([0.0, 1.0], dtype=np.float32),
    }
    return {f"{name}_exceedance_probability": (("sample", "threshold", *space), probability, attrs)}


def _global_attrs(contract: Mapping[str, Any], attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = {
        "Conventions": "CF-1.8",
        "title": f"earthcast forecast of {variable_name(contract)}",
        "institution": "unknown (set with --institution)",
        "source": "earthcast",
        "history": "",
        "references": REFERENCES,
        "data_contract": json.dumps(dict(contract), default=_json_default, sort_keys=True),
    }
    merged.update({k: v for k, v in (attrs or {}).items() if v is not None})
    return merged


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


_TIME_UNITS = "minutes since 1970-01-01 00:00:00"
_EPOCH = np.datetime64("1970-01-01T00:00:00", "ns")


def _netcdf_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() not in (".nc", ".nc4"):
        raise ValueError(f"forecast output '{path}' must be a NetCDF file ending in .nc")
    return path


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """zlib and a fill value for float variables, one chunk per sample (and member); times in
    float minutes since 1970, so later batches can be appended exactly."""
    encoding: dict[str, dict[str, Any]] = {}
    for name, var in ds.data_vars.items():
        if np.issubdtype(var.dtype, np.floating):
            chunks = tuple(1 if d in ("sample", "member") else n for d, n in var.sizes.items())
            encoding[str(name)] = {
                "zlib": True,
                "complevel": 4,
                "_FillValue": FILL_VALUE,
                "chunksizes": chunks,
            }
    for name in ds.coords:
        if np.issubdtype(ds[name].dtype, np.datetime64):
            encoding[str(name)] = {"units": _TIME_UNITS, "calendar": "standard", "dtype": "float64"}
        elif name not in encoding:
            encoding[str(name)] = {"_FillValue": None}  # CF: coordinates carry no fill value
    return encoding


def write_forecast(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` as compressed NetCDF-4 through a temporary file + rename.

    Raises:
        ValueError: ``path`` does not end in ``.nc``.
    """
    path = _netcdf_path(path)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=_encoding(ds))
    return path


def write_forecast_batches(
    batches: Iterable[tuple[int, np.ndarray]],
    path: str | os.PathLike,
    contract: Mapping[str, Any],
    *,
    sample_index: Sequence[int],
    reference_time: np.ndarray | None = None,
    y: tuple | None = None,
    x: tuple[np.ndarray, dict] | None = None,
    thresholds: Sequence[float] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write forecasts that arrive in batches as one CF NetCDF, atomically.

    The file is the one ``write_forecast(forecast_dataset(all batches, ...))`` would write, with an
    unlimited ``sample`` dimension; only one batch is held in memory.

    Args:
        batches: ``(start, forecast)`` pairs in sample order, ``forecast`` ``(b, T, H, W, C)`` or
            ``(b, S, T, H, W, C)`` for samples ``start … start + b − 1`` (``iter_forecasts``).
        path: the ``.nc`` file to write; nothing is left there if writing fails midway.
        contract, y, x, thresholds, attrs: as for ``forecast_dataset``.
        sample_index: ``(N,)`` index of every sample in the input file; ``N`` is the number of
            samples the batches must add up to.
        reference_time: ``(N,)`` reference times, when known.

    Raises:
        ValueError: a bad path, batches out of order or not adding up to ``N``, or the errors of
            ``forecast_dataset``.
    """
    path = _netcdf_path(path)
    index = np.asarray(sample_index)
    written = 0
    with atomic_path(path) as tmp:
        file = None
        try:
            for start, forecast in batches:
                if start != written:
                    raise ValueError(f"forecast batches out of order: got sample {start}, expected {written}")
                rows = slice(start, start + len(forecast))
                ds = forecast_dataset(
                    forecast,
                    contract,
                    sample_index=index[rows],
                    reference_time=None if reference_time is None else np.asarray(reference_time)[rows],
                    y=y,
                    x=x,
                    thresholds=thresholds,
                    attrs=attrs,
                )
                if file is None:
                    encoding = _encoding(ds)
                    ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding, unlimited_dims=["sample"])
                    file = _open_for_append(tmp)
                else:
                    _append_samples(file, ds, rows)
                written = rows.stop
        finally:
            if file is not None:
                file.close()
        if written != len(index):
            raise ValueError(f"the forecast batches hold {written} samples, but {len(index)} were expected")
    return path


def _open_for_append(path: Path):
    import netCDF4

    file = netCDF4.Dataset(path, "a")
    file.set_auto_maskandscale(False)  # values are written as they are: nothing is packed or masked
    return file


def _append_samples(file, ds: xr.Dataset, rows: slice) -> None:
    """Write every sample-dimensioned variable of ``ds`` into rows ``rows`` of the open file."""
    for name, var in ds.variables.items():
        if not var.dims or var.dims[0] != "sample":
            continue
        values = var.values
        if np.issubdtype(values.dtype, np.datetime64):
            values = (values.astype("datetime64[ns]") - _EPOCH) / np.timedelta64(1, "m")  # _TIME_UNITS
        file.variables[str(name)][rows] = values
