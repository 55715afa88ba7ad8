"""ICAR-ENSO (SPEC 3.5): reader for the real NetCDF layout and a synthetic look-alike writer.

Axis letters: ``y`` year row, ``m`` month in a 36-month row, ``t`` continuous month, ``h w``
lat/lon cells, ``c`` channel.

File layout (Tianchi "AI Earth" 2021, ``enso_round1_train_20210201.zip``):

* ``CMIP_train.nc``: ``sst`` (and ``t300``, ``ua``, ``va``) anomalies, dims
  ``(year, month=36, lat=24, lon=72)`` on a 5° grid (lat −55…60, lon 0…355). Row ``y`` of a
  climate model is the 36-month window starting in January of its year ``y``; consecutive rows
  of one model overlap by 24 months. Rows: 15 CMIP6 models × 151 years, then 17 CMIP5 models ×
  140 years (4,645 rows).
* ``CMIP_label.nc``: ``nino (year, month=36)``, the Niño3.4 index of the same months: the box
  mean SST anomaly averaged with the next two months (3-month running mean).

Reader pipeline (``ENSODataset``):

1. Per model, stitch the overlapping rows into one monthly series of ``years·12 + 24`` months
   (``stitch_windows``); the same for ``nino``.
2. Keep longitudes 95°E…330°E (48 columns, by coordinate value, else indices 19:67) → 24×48.
3. Normalise ``(sst − SST_MIN) / (SST_MAX − SST_MIN)``.
4. Slide a window of ``in_len + out_len`` months (12 + 14) with step ``stride`` over each model
   separately. ``nino_target`` holds the labels of output months 1…``out_len − 2``; label ``k``
   is the running mean over output months ``k, k+1, k+2``, hence the two extra output months.
5. Splits by model: train = all CMIP6 + the first ``n_cmip5 − 2`` CMIP5 models, val = CMIP5
   model ``n_cmip5 − 1``, test = the last CMIP5 model (1-based; real data: #16 and #17).

Model counts come from the ``n_cmip6_models`` / ``years_cmip6`` / ``n_cmip5_models`` /
``years_cmip5`` attributes that ``write_synthetic_enso`` stores; the real file has none, so the
real counts are used.

The Niño3.4 box (5°S–5°N, 170°W–120°W) is rows 10–12 and columns 19–29 of the cropped grid
(``NINO34_ROWS``, ``NINO34_COLS``; reference indices, SPEC 3.5).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

# Global SST-anomaly extremes over CMIP5/6 used by the reference for min-max scaling (SPEC 3.5).
SST_MIN = -16.549121856689453
SST_MAX = 10.198975563049316

TRAIN_FILE, LABEL_FILE = "CMIP_train.nc", "CMIP_label.nc"
REAL_COUNTS = {"n_cmip6_models": 15, "years_cmip6": 151, "n_cmip5_models": 17, "years_cmip5": 140}
WINDOW_MONTHS, OVERLAP_MONTHS = 36, 24
LAT = np.arange(-55.0, 60.1, 5.0)  # 24 rows
LON = np.arange(0.0, 355.1, 5.0)  # 72 columns
LON_RANGE = (95.0, 330.0)  # 48 columns
LON_INDEX_FALLBACK = slice(19, 67)
NINO34_ROWS, NINO34_COLS = slice(10, 13), slice(19, 30)  # on the cropped 24×48 grid

_SOURCE_HINT = (
    "The ICAR-ENSO data are the Tianchi 'AI Earth' 2021 competition files "
    "(enso_round1_train_20210201.zip: CMIP_train.nc, CMIP_label.nc, SODA_*.nc); unzip them into "
    "this directory, or create a synthetic look-alike with "
    "earthcast.data.enso.write_synthetic_enso(root)."
)


def normalize_sst(x):
    """Min-max scale SST anomalies (K) with the reference's global extremes."""
    return (x - SST_MIN) / (SST_MAX - SST_MIN)


def denormalize_sst(x):
    """Inverse of ``normalize_sst``: scaled values back to SST anomalies in K."""
    return x * (SST_MAX - SST_MIN) + SST_MIN


def nino34_index(sst):
    """Niño3.4 index from de-normalised SST on the cropped grid.

    Args:
        sst: ``(..., T, 24, 48, 1)`` numpy array or torch tensor (K).

    Returns:
        ``(..., T − 2)``: box mean per month, then the 3-month running mean (current + next two).
    """
    box = sst[..., NINO34_ROWS, NINO34_COLS, 0].mean((-2, -1))  # (..., T)
    return (box[..., :-2] + box[..., 1:-1] + box[..., 2:]) / 3.0  # (..., T - 2)


def stitch_windows(windows: np.ndarray) -> np.ndarray:
    """Overlapping 36-month rows of one model ``(Y, 36, ...)`` → series ``(12·Y + 24, ...)``."""
    if windows.shape[1] != WINDOW_MONTHS:
        raise ValueError(f"expected {WINDOW_MONTHS} months per row, got shape {windows.shape}")
    tail = windows[1:, OVERLAP_MONTHS:].reshape(-1, *windows.shape[2:])  # ((Y-1)·12, ...)
    return np.concatenate([windows[0], tail])


def split_windows(series: np.ndarray, years: int) -> np.ndarray:
    """Inverse of ``stitch_windows``: row ``y`` = months ``12y … 12y + 35`` → ``(Y, 36, ...)``."""
    if len(series) < 12 * years + OVERLAP_MONTHS:
        raise ValueError(f"{len(series)} months are too few for {years} rows")
    return np.stack([series[12 * y : 12 * y + WINDOW_MONTHS] for y in range(years)])


# ---------------------------------------------------------------------------------- synthetic


def _ar_filter(rng: np.random.Generator, shape: tuple[int, ...], a: list[float]) -> np.ndarray:
    """Autoregressive noise along axis 0: ``lfilter([1], a, white)``."""
    from scipy.signal import lfilter

    return lfilter([1.0], a, rng.standard_normal(shape), axis=0)


def _synthetic_model(rng: np.random.Generator, months: int) -> tuple[np.ndarray, np.ndarray]:
    """SST and T300 anomalies ``(months, 24, 72)`` (K) of one synthetic climate model.

    ENSO mode: a noise-driven damped oscillator (AR(2), period U[3, 7] years) ``x``; SST is
    ``x`` on an eastern-Pacific pattern plus ``x`` lagged by a quarter period on a
    central-Pacific pattern, so anomalies travel eastward. T300 leads SST by a quarter period
    (recharge), on a broad equatorial Pacific pattern. Both add AR(1) red noise.
    """
    period = 12.0 * rng.uniform(3.0, 7.0)
    omega, damping, quarter = 2.0 * np.pi / period, 0.97, round(period / 4.0)
    spin_up = 240
    x = _ar_filter(rng, (spin_up + months + 2 * quarter,), [1.0, -2.0 * damping * np.cos(omega), damping**2])
    x = x[spin_up:] / x[spin_up:].std() * rng.uniform(0.8, 1.5)
    now, lagged, lead = x[quarter:-quarter], x[: -2 * quarter], x[2 * quarter :]  # (months,) each

    band = np.exp(-0.5 * (LAT / 8.0) ** 2)[:, None]  # (24, 1)
    pacific = ((LON >= 140.0) & (LON <= 285.0)).astype(float)
    east = band * np.exp(-0.5 * ((LON - 245.0) / 25.0) ** 2) * pacific  # (24, 72)
    central = band * np.exp(-0.5 * ((LON - 190.0) / 25.0) ** 2) * pacific
    broad = band * np.exp(-0.5 * ((LON - 215.0) / 45.0) ** 2) * pacific
    red = (months, LAT.size, LON.size)
    sst = now[:, None, None] * east + 0.6 * lagged[:, None, None] * central
    sst = sst + 0.3 * _ar_filter(rng, red, [1.0, -0.8]) * np.sqrt(1 - 0.8**2)
    t300 = 1.5 * lead[:, None, None] * broad + 0.4 * _ar_filter(rng, red, [1.0, -0.9]) * np.sqrt(1 - 0.9**2)
    return sst.astype(np.float32), t300.astype(np.float32)


def _synthetic_nino(sst_full: np.ndarray) -> np.ndarray:
    """3-month running Niño3.4 index of a full-grid series ``(T, 24, 72)`` → ``(T − 2,)``."""
    lon_cols = np.flatnonzero((LON >= LON_RANGE[0]) & (LON <= LON_RANGE[1]))
    cropped = sst_full[:, :, lon_cols, None].astype(np.float64)  # (T, 24, 48, 1)
    return nino34_index(cropped)


def write_synthetic_enso(
    out_dir: str | os.PathLike,
    n_cmip6_models: int = 2,
    years_cmip6: int = 6,
    n_cmip5_models: int = 3,
    years_cmip5: int = 5,
    seed: int = 0,
    include_t300: bool = True,
) -> dict[str, Path]:
    """Write synthetic ``CMIP_train.nc`` / ``CMIP_label.nc`` in the real ICAR-ENSO layout.

    Rows: the CMIP6 models (``years_cmip6`` rows each) first, then the CMIP5 models; row ``y`` of
    a model covers its months ``12y … 12y + 35``. Labels are computed from the written ``sst``
    (two hidden extra months per model complete the last running means). The counts are stored
    as global attributes of both files. Each file is written atomically (temp + rename).

    Returns:
        ``{"train": path, "label": path}``.
    """
    import xarray as xr

    if n_cmip5_models < 3 or n_cmip6_models < 0 or min(years_cmip6, years_cmip5) < 1:
        raise ValueError("need >= 3 CMIP5 models (train/val/test), >= 0 CMIP6 models and >= 1 year per model")
    seeds = np.random.SeedSequence(seed).spawn(n_cmip6_models + n_cmip5_models)
    years = [years_cmip6] * n_cmip6_models + [years_cmip5] * n_cmip5_models
    sst_rows, t300_rows, nino_rows = [], [], []
    for model_seed, n_years in zip(seeds, years):
        months = 12 * n_years + OVERLAP_MONTHS
        sst, t300 = _synthetic_model(np.random.default_rng(model_seed), months + 2)
        nino = _synthetic_nino(sst).astype(np.float32)  # (months,)
        sst_rows.append(split_windows(sst[:months], n_years))
        t300_rows.append(split_windows(t300[:months], n_years))
        nino_rows.append(split_windows(nino, n_years))
    n_rows = sum(years)
    attrs = {
        "n_cmip6_models": n_cmip6_models,
        "years_cmip6": years_cmip6,
        "n_cmip5_models": n_cmip5_models,
        "years_cmip5": years_cmip5,
        "synthetic": 1,
        "seed": seed,
        "title": "earthcast synthetic ICAR-ENSO look-alike (not real CMIP data)",
    }
    coords = {"year": np.arange(1, n_rows + 1, dtype=np.int32), "month": np.arange(1, 37, dtype=np.int32)}
    grid = {**coords, "lat": LAT, "lon": LON}
    dims = ("year", "month", "lat", "lon")
    data_vars = {"sst": (dims, np.concatenate(sst_rows))}
    if include_t300:
        data_vars["t300"] = (dims, np.concatenate(t300_rows))
    train = xr.Dataset(data_vars, coords=grid, attrs=attrs)
    label = xr.Dataset({"nino": (("year", "month"), np.concatenate(nino_rows))}, coords=coords, attrs=attrs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"train": out_dir / TRAIN_FILE, "label": out_dir / LABEL_FILE}
    for ds, path in ((train, paths["train"]), (label, paths["label"])):
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            ds.to_netcdf(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return paths


# ------------------------------------------------------------------------------------- reader


def model_layout(attrs: dict[str, Any], n_rows: int) -> list[tuple[str, int, int]]:
    """``(family, first_row, years)`` per model, CMIP6 first, from file attributes or real counts."""
    keys = REAL_COUNTS.keys()
    counts = {k: int(attrs[k]) for k in keys} if all(k in attrs for k in keys) else dict(REAL_COUNTS)
    expected = (
        counts["n_cmip6_models"] * counts["years_cmip6"] + counts["n_cmip5_models"] * counts["years_cmip5"]
    )
    if expected != n_rows:
        raise ValueError(
            f"{n_rows} rows do not match {counts['n_cmip6_models']}×{counts['years_cmip6']} CMIP6 + "
            f"{counts['n_cmip5_models']}×{counts['years_cmip5']} CMIP5 rows = {expected}"
        )
    layout, row = [], 0
    for family in ("cmip6", "cmip5"):
        for _ in range(counts[f"n_{family}_models"]):
            layout.append((family.upper(), row, counts[f"years_{family}"]))
            row += counts[f"years_{family}"]
    return layout


def split_models(layout: list[tuple[str, int, int]], split: str) -> list[int]:
    """Model indices (into ``layout``) of one split (module docstring, step 5)."""
    cmip5 = [i for i, (family, _, _) in enumerate(layout) if family == "CMIP5"]
    if len(cmip5) < 3:
        raise ValueError(f"need >= 3 CMIP5 models for train/val/test, found {len(cmip5)}")
    if split == "train":
        return [i for i in range(len(layout)) if i not in cmip5[-2:]]
    if split == "val":
        return [cmip5[-2]]
    if split == "test":
        return [cmip5[-1]]
    raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")


def _checked_var(ds: Any, name: str, dims: tuple[str, ...], sizes: dict[str, int], path: Path):
    if name not in ds.data_vars:
        raise KeyError(f"{path} has no '{name}' variable (found: {', '.join(map(str, ds.data_vars))})")
    var = ds[name]
    if set(var.dims) != set(dims):
        raise ValueError(f"{path}:{name} has dims {var.dims}, expected {dims}")
    var = var.transpose(*dims)
    wrong = {d: var.sizes[d] for d, n in sizes.items() if var.sizes[d] != n}
    if wrong:
        raise ValueError(f"{path}:{name} has sizes {dict(var.sizes)}, expected {sizes} (wrong: {wrong})")
    return var


def _open_netcdf(path: Path) -> Any:
    """``xr.open_dataset`` with a ValueError naming the file when it is damaged or not NetCDF."""
    import xarray as xr

    try:
        return xr.open_dataset(path, decode_times=False)
    except Exception as err:  # the engines raise ValueError, OSError, KeyError, … for damaged files
        first = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"cannot read {path}: it is truncated, corrupt or not NetCDF ({first}). {_SOURCE_HINT}"
        ) from err


def _coordinate(ds: Any, name: str, default: np.ndarray) -> np.ndarray:
    """The file's 1-D coordinate ``name`` when it has the documented size, else ``default``."""
    if name in ds.coords and ds[name].ndim == 1 and ds[name].size == default.size:
        return np.asarray(ds[name].values, dtype=np.float64)
    return default


def _lon_columns(ds: Any) -> Any:
    if "lon" in ds.coords:
        lon = np.asarray(ds["lon"].values, dtype=np.float64)
        cols = np.flatnonzero((lon >= LON_RANGE[0]) & (lon <= LON_RANGE[1]))
        if cols.size == 48:
            return cols
        warnings.warn(
            f"lon coordinate does not give 48 columns in {LON_RANGE}; using indices 19:67", stacklevel=3
        )
    return np.arange(72)[LON_INDEX_FALLBACK]


class ENSODataset(Dataset):
    """Map-style ICAR-ENSO SST dataset (module docstring for the pipeline).

    Args:
        root: directory holding ``CMIP_train.nc`` and ``CMIP_label.nc``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        in_len, out_len: input / output months (reference 12 → 14; ``out_len >= 3``).
        stride: step between window starts (reference 1).

    Sample: ``inputs`` float32 ``(in_len, 24, 48, 1)`` and ``targets`` float32
    ``(out_len, 24, 48, 1)`` normalised SST, ``nino_target`` float32 ``(out_len − 2,)`` the
    provided Niño3.4 labels of output months ``1 … out_len − 2`` (K), and ``meta``
    ``{"model": int, "family": "CMIP6"|"CMIP5", "start_month": int}``.

    Rows keep the file's order (55°S first in the real files); ``latitude`` / ``longitude`` hold
    the coordinates of the served rows and columns, so the data contract can record which way the
    rows run (plots must draw row 0 at the bottom to put north up).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: Literal["train", "val", "test"] = "train",
        in_len: int = 12,
        out_len: int = 14,
        stride: int = 1,
    ) -> None:
        if in_len < 1 or out_len < 3 or stride < 1:
            raise ValueError(
                f"need in_len >= 1, out_len >= 3, stride >= 1; got {in_len}, {out_len}, {stride}"
            )
        root = Path(root)
        paths = {name: root / name for name in (TRAIN_FILE, LABEL_FILE)}
        for name, path in paths.items():
            if not path.is_file():
                raise FileNotFoundError(f"ICAR-ENSO file {name} not found in {root}. {_SOURCE_HINT}")
        grid = {"month": WINDOW_MONTHS, "lat": 24, "lon": 72}
        with _open_netcdf(paths[TRAIN_FILE]) as ds:
            sst = _checked_var(ds, "sst", ("year", "month", "lat", "lon"), grid, paths[TRAIN_FILE])
            self.layout = model_layout(ds.attrs, sst.sizes["year"])
            self.models = split_models(self.layout, split)
            cols = _lon_columns(ds)
            self.latitude = _coordinate(ds, "lat", LAT)  # (24,) degrees north, row order of the data
            self.longitude = _coordinate(ds, "lon", LON)[cols]  # (48,) degrees east
            series = []
            for m in self.models:
                _, first, years = self.layout[m]
                rows = sst.isel(year=slice(first, first + years), lon=cols).values  # (Y, 36, 24, 48)
                series.append(normalize_sst(stitch_windows(rows).astype(np.float32)))  # (T, 24, 48)
        with _open_netcdf(paths[LABEL_FILE]) as ds:
            nino = _checked_var(ds, "nino", ("year", "month"), {"month": WINDOW_MONTHS}, paths[LABEL_FILE])
            if nino.sizes["year"] != sum(y for _, _, y in self.layout):
                raise ValueError(
                    f"{paths[LABEL_FILE]} has {nino.sizes['year']} rows, {TRAIN_FILE} has more/fewer"
                )
            labels = [
                stitch_windows(nino.isel(year=slice(first, first + years)).values.astype(np.float32))
                for first, years in ((self.layout[m][1], self.layout[m][2]) for m in self.models)
            ]
        self._series, self._labels = series, labels
        self.in_len, self.out_len, self.stride = in_len, out_len, stride
        window = in_len + out_len
        self._index = [(i, s) for i, x in enumerate(series) for s in range(0, len(x) - window + 1, stride)]

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        local, start = self._index[index]
        months = self._series[local][start : start + self.in_len + self.out_len]  # (T, 24, 48)
        window = torch.from_numpy(months.copy())[..., None]  # (T, 24, 48, 1)
        nino = self._labels[local][start + self.in_len : start + self.in_len + self.out_len - 2]
        model = self.models[local]
        return {
            "inputs": window[: self.in_len],  # (in_len, 24, 48, 1)
            "targets": window[self.in_len :],  # (out_len, 24, 48, 1)
            "nino_target": torch.from_numpy(nino.copy()),  # (out_len - 2,)
            "meta": {"model": model, "family": self.layout[model][0], "start_month": start},
        }
