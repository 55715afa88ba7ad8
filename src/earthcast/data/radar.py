"""Import real radar composites (pysteps importers) into a ``(time, y, x)`` Zarr/NetCDF store.

Axes: ``t`` time, ``h``/``w`` grid rows/columns, ``p1``/``p2`` pooling block.

``import_radar(source, path, out)`` finds every frame of one weather service under ``path``
(recursively, by the service's file-name convention, the same as pysteps' data sources), reads
each with the pysteps importer, converts it to rain rate R in mm/h with
``pysteps.utils.conversion.to_rainrate`` (the service's own Z–R relation for reflectivity
products), optionally crops and mean-pools it, applies a transform and writes one variable
``precip`` with dims ``(time, y, x)``:

==============  =====================================================  ==================
transform       value                                                  units
==============  =====================================================  ==================
``rainrate``    R, with R < threshold set to 0                         ``mm/h``
``dbr``         10·log10(R) for R ≥ threshold, else the floor          ``dBR``
                10·log10(threshold) − 5 (−15 dBR for 0.1 mm/h, the
                pysteps convention)
``log1p``       log(1 + R), with R < threshold set to 0                ``log(1 + mm/h)``
==============  =====================================================  ==================

Pixels outside the radar domain (or without data) stay **NaN** in the store; a pooled pixel is
NaN when any pixel of its block is. Pooling averages rain rates before the transform. Attributes
record units, transform, threshold, floor (``zerovalue``), source, time step and the pysteps
geo-metadata (projection, x1/y1/x2/y2, pixel sizes, ``yorigin``) updated for crop and pooling;
coordinates ``x``/``y`` are pixel centres in the projection's units.

Training on the result (NaN → 0 after min-max scaling, i.e. the no-rain floor)::

    from earthcast.data.gridded import GriddedDataset as RadarDataset

    import_radar("fmi", "shared/data/radar/fmi", "fmi.zarr", transform="dbr", downsample=4)
    train = RadarDataset("fmi.zarr", ["precip"], in_len=6, out_len=6, stride=3,
                         normalization="minmax", nan_policy="zero")

Frames are held in memory before writing (frames × rows × columns × 4 bytes after pooling).
Samples: the pysteps example data under ``shared/data/radar/`` (licences in its README-source.md).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from einops import reduce
from tqdm.auto import tqdm

from earthcast.utils.io import atomic_path

__all__ = ["RADAR_SOURCES", "RadarSource", "find_radar_files", "import_radar", "rain_transform", "read_radar"]

Transform = Literal["dbr", "log1p", "rainrate"]
UNITS = {"rainrate": "mm/h", "dbr": "dBR", "log1p": "log(1 + mm/h)"}


@dataclass(frozen=True)
class RadarSource:
    """How one service names and stores its composites (after pysteps' ``pystepsrc`` data sources).

    Attributes:
        importer: pysteps importer name (``pysteps.io.get_method(importer, "importer")``).
        pattern: regular expression of a file name; group 1 is the time stamp.
        time_format: ``strptime`` format of the time stamp.
        timestep: minutes between frames.
        importer_kwargs: keyword arguments of the importer.
    """

    importer: str
    pattern: str
    time_format: str
    timestep: int
    importer_kwargs: dict[str, Any] = field(default_factory=dict)


RADAR_SOURCES: dict[str, RadarSource] = {
    # MeteoSwiss AQC 5-min accumulation GIFs; the letter after the time stamp is the product version
    "mch": RadarSource(
        importer="mch_gif",
        pattern=r"^AQC(\d{9})[A-Z0-9]_00005\.801\.gif$",
        time_format="%y%j%H%M",
        timestep=5,
        importer_kwargs={"product": "AQC", "unit": "mm", "accutime": 5},
    ),
    # KNMI 5-min accumulations (ACRR), 1 km grid
    "knmi": RadarSource(
        importer="knmi_hdf5",
        pattern=r"^RAD_NL25_RAP_5min_(\d{12})\.h5$",
        time_format="%Y%m%d%H%M",
        timestep=5,
        importer_kwargs={"accutime": 5, "qty": "ACRR", "pixelsize": 1000.0},
    ),
    # FMI lowest-elevation dBZ composite; Z = 223 R^1.53 comes with the importer's metadata
    "fmi": RadarSource(
        importer="fmi_pgm",
        pattern=r"^(\d{12})_fmi\.radar\.composite\.lowest_FIN_SUOMI1\.pgm\.gz$",
        time_format="%Y%m%d%H%M",
        timestep=5,
        importer_kwargs={"gzipped": True},
    ),
    # Bureau of Meteorology Rainfields3 6-min accumulations (NetCDF)
    "bom": RadarSource(
        importer="bom_rf3",
        pattern=r"^2_(\d{8}_\d{6})\.prcp-cscn\.nc$",
        time_format="%Y%m%d_%H%M%S",
        timestep=6,
    ),
}


def _source(name: str) -> RadarSource:
    if name.lower() not in RADAR_SOURCES:
        raise ValueError(f"unknown radar source '{name}'. Valid names: {', '.join(RADAR_SOURCES)}")
    return RADAR_SOURCES[name.lower()]


def find_radar_files(
    source: str, path: str | Path, start: str | datetime | None = None, end: str | datetime | None = None
) -> list[tuple[datetime, Path]]:
    """Every ``(time, file)`` of ``source`` under ``path``, sorted by time, one file per time.

    ``start``/``end`` (inclusive, ISO strings or datetimes) narrow the range.
    """
    spec, root = _source(source), Path(path)
    if not root.exists():
        raise FileNotFoundError(f"radar path not found: {root}")
    regex = re.compile(spec.pattern)
    found: dict[datetime, Path] = {}
    for file in sorted(root.rglob("*") if root.is_dir() else [root]):
        match = regex.match(file.name)
        if match and file.is_file():
            found.setdefault(datetime.strptime(match.group(1), spec.time_format), file)
    lo = datetime.fromisoformat(start) if isinstance(start, str) else start
    hi = datetime.fromisoformat(end) if isinstance(end, str) else end
    frames = [(t, f) for t, f in sorted(found.items()) if (lo is None or t >= lo) and (hi is None or t <= hi)]
    if not frames:
        raise FileNotFoundError(
            f"no '{source}' radar file under {root} in [{lo}, {hi}] (file names must match {spec.pattern})"
        )
    return frames


def rain_transform(rate: np.ndarray, transform: Transform, threshold: float) -> tuple[np.ndarray, float]:
    """Rain rate (mm/h) → transformed values (NaN kept); returns ``(values, zerovalue)``."""
    nan = np.isnan(rate)
    safe = np.where(nan, 0.0, rate)
    dry = safe < threshold
    if transform == "rainrate":
        values, zerovalue = np.where(dry, 0.0, safe), 0.0
    elif transform == "dbr":
        zerovalue = 10.0 * np.log10(threshold) - 5.0
        values = np.where(dry, zerovalue, 10.0 * np.log10(np.maximum(safe, threshold)))
    elif transform == "log1p":
        values, zerovalue = np.where(dry, 0.0, np.log1p(safe)), 0.0
    else:
        raise ValueError(f"unknown transform '{transform}'. Valid names: {', '.join(UNITS)}")
    values = values.astype(np.float32)
    values[nan] = np.nan
    return values, float(zerovalue)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pysteps prints its configuration path on import; keep library output clean."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _pysteps() -> tuple[Any, Any]:
    try:
        with _quiet():
            import pysteps.io
            from pysteps.utils import conversion
    except ImportError as err:
        raise ImportError('radar import needs pysteps: pip install "earthcast[pysteps]"') from err
    return pysteps.io, conversion


def _read_frame(reader: Any, conversion: Any, spec: RadarSource, file: Path) -> tuple[np.ndarray, dict]:
    """One file → (rain rate in mm/h with NaN outside the domain, pysteps metadata)."""
    try:
        precip, _, meta = reader(str(file), **spec.importer_kwargs)
    except Exception as err:
        raise OSError(f"pysteps importer '{spec.importer}' failed on {file}: {err}") from err
    precip = np.ma.filled(np.ma.asarray(precip, dtype=np.float64), np.nan)
    rate, converted = conversion.to_rainrate(precip, meta)
    return rate, {**converted, "native_unit": meta.get("unit")}


def _crop_pool(frame: np.ndarray, crop: tuple[int, int, int, int] | None, k: int) -> np.ndarray:
    """(H, W) → crop → (H'/k, W'/k) mean pool; trailing rows/cols that do not fill a block are dropped."""
    if crop is not None:
        frame = frame[crop[0] : crop[1], crop[2] : crop[3]]
    rows, cols = (frame.shape[0] // k) * k, (frame.shape[1] // k) * k
    if rows == 0 or cols == 0:
        raise ValueError(f"downsample {k} leaves no pixel of a {frame.shape} frame")
    return reduce(frame[:rows, :cols], "(h p1) (w p2) -> h w", "mean", p1=k, p2=k)


def _grid(
    meta: dict, shape: tuple[int, int], crop: tuple[int, int, int, int] | None, k: int
) -> dict[str, Any]:
    """Pixel-centre coordinates and geo attributes of the cropped, pooled grid."""
    ny, nx = shape
    xpix, ypix = float(meta["xpixelsize"]), float(meta["ypixelsize"])
    x = float(meta["x1"]) + (np.arange(nx) + 0.5) * xpix
    upper = meta.get("yorigin", "upper") == "upper"
    y = (
        float(meta["y2"]) - (np.arange(ny) + 0.5) * ypix
        if upper
        else float(meta["y1"]) + (np.arange(ny) + 0.5) * ypix
    )
    if crop is not None:
        y, x = y[crop[0] : crop[1]], x[crop[2] : crop[3]]
    y, x = y[: (len(y) // k) * k], x[: (len(x) // k) * k]
    y, x = reduce(y, "(n p) -> n", "mean", p=k), reduce(x, "(n p) -> n", "mean", p=k)
    half_x, half_y = xpix * k / 2, ypix * k / 2
    return {
        "x": x,
        "y": y,
        "attrs": {
            "x1": float(x[0] - half_x),
            "x2": float(x[-1] + half_x),
            "y1": float(min(y[0], y[-1]) - half_y),
            "y2": float(max(y[0], y[-1]) + half_y),
            "xpixelsize": xpix * k,
            "ypixelsize": ypix * k,
        },
    }


def read_radar(
    source: str,
    path: str | Path,
    *,
    transform: Transform = "dbr",
    threshold: float = 0.1,
    downsample: int = 1,
    crop: tuple[int, int, int, int] | None = None,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    max_frames: int | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """Read, convert and transform the frames of ``source`` under ``path`` into memory.

    Args:
        source: ``"mch"``, ``"knmi"``, ``"fmi"`` or ``"bom"``.
        path: a directory searched recursively (or one file).
        transform: ``"dbr"``, ``"log1p"`` or ``"rainrate"`` (module docstring).
        threshold: rain rate in mm/h below which a pixel counts as dry.
        downsample: mean-pooling factor ``k`` over y and x (1 = native grid).
        crop: ``(row0, row1, col0, col1)`` of the native grid, applied before pooling.
        start, end: inclusive time range; ``max_frames`` keeps only the first frames.
        progress: show a tqdm bar.

    Returns:
        Dataset with ``precip`` ``(time, y, x)`` float32 and its attributes.
    """
    if transform not in UNITS:
        raise ValueError(f"unknown transform '{transform}'. Valid names: {', '.join(UNITS)}")
    if downsample < 1 or threshold <= 0:
        raise ValueError(f"need downsample >= 1 and threshold > 0, got {downsample} and {threshold}")
    spec = _source(source)
    files = find_radar_files(source, path, start, end)[:max_frames]
    pio, conversion = _pysteps()
    reader = pio.get_method(spec.importer, "importer")
    frames, meta, native = [], {}, None
    for _, file in tqdm(files, desc=f"import {source}", unit="frame", disable=not progress):
        rate, meta = _read_frame(reader, conversion, spec, file)
        if native is not None and rate.shape != native:
            raise ValueError(f"{file} has a {rate.shape} grid, unlike the {native} of the earlier frames")
        native = rate.shape
        frames.append(_crop_pool(rate, crop, downsample))
    rates = np.stack(frames)  # (t, h, w)
    values, zerovalue = rain_transform(rates, transform, threshold)
    grid = _grid(meta, native, crop, downsample)
    unit = str(meta.get("cartesian_unit", "m"))
    var_attrs = {
        "long_name": "precipitation",
        "units": UNITS[transform],
        "transform": transform,
        "threshold": float(threshold),
        "threshold_units": "mm/h",
        "zerovalue": zerovalue,
        "missing": "NaN outside the radar domain or where the service reports no data",
    }
    times = np.array([t for t, _ in files], dtype="datetime64[ns]")
    return xr.Dataset(
        {"precip": (("time", "y", "x"), values, var_attrs)},
        coords={
            "time": ("time", times, {"long_name": "time (UTC)"}),
            "y": ("y", grid["y"], {"long_name": "projection y of pixel centres", "units": unit}),
            "x": ("x", grid["x"], {"long_name": "projection x of pixel centres", "units": unit}),
        },
        attrs=_store_attrs(source, spec, meta, grid["attrs"], native, crop, downsample),
    )


def _store_attrs(
    source: str,
    spec: RadarSource,
    meta: dict,
    grid_attrs: dict[str, float],
    native: tuple[int, int],
    crop: tuple[int, int, int, int] | None,
    downsample: int,
) -> dict[str, Any]:
    """Dataset attributes: provenance, time step and pysteps geo-metadata of the stored grid."""
    attrs = {
        "source": source.lower(),
        "institution": str(meta.get("institution", "")),
        "importer": f"pysteps.io.importers.import_{spec.importer}",
        "timestep": spec.timestep,
        "timestep_units": "minutes",
        "accutime": float(meta.get("accutime", spec.timestep)),
        "projection": str(meta.get("projection", "")),
        "cartesian_unit": str(meta.get("cartesian_unit", "m")),
        "yorigin": str(meta.get("yorigin", "upper")),
        **grid_attrs,
        "downsample": downsample,
        "native_shape": list(native),
        "crop": list(crop) if crop is not None else [],
        "native_unit": str(meta.get("native_unit")),
    }
    if meta.get("native_unit") == "dBZ":  # the Z-R relation used by to_rainrate
        attrs.update(zr_a=float(meta["zr_a"]), zr_b=float(meta["zr_b"]))
    return attrs


def import_radar(
    source: str,
    path: str | Path,
    out: str | Path,
    transform: Transform = "dbr",
    threshold: float = 0.1,
    *,
    downsample: int = 1,
    crop: tuple[int, int, int, int] | None = None,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    max_frames: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Import ``source`` frames under ``path`` into ``out`` (Zarr, or NetCDF when ``out`` ends in .nc).

    The arguments are those of :func:`read_radar`, plus ``out`` and ``overwrite``. The store is
    written under a temporary name and renamed, so an interrupted import leaves nothing behind.

    Returns:
        ``out`` as a ``Path``.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    ds = read_radar(
        source,
        path,
        transform=transform,
        threshold=threshold,
        downsample=downsample,
        crop=crop,
        start=start,
        end=end,
        max_frames=max_frames,
        progress=progress,
    )
    frame = (1, ds.sizes["y"], ds.sizes["x"])
    with atomic_path(out, directory=out.suffix != ".nc") as tmp:
        if out.suffix == ".nc":
            ds.to_netcdf(tmp, encoding={"precip": {"zlib": True, "complevel": 4, "chunksizes": frame}})
        else:
            ds.to_zarr(
                tmp, mode="w", zarr_format=2, consolidated=True, encoding={"precip": {"chunks": frame}}
            )
    return out
