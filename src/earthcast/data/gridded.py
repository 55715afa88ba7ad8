"""Windows over any xarray-readable gridded store (NetCDF, Zarr, or an open ``xr.Dataset``).

Axes: ``t`` time, ``h``/``w`` the grid's y/x, ``c`` channel (one per variable).

``GriddedDataset`` reads the chosen variables of a ``(time, y, x)`` store, stacks them as
channels and serves sliding windows::

    {"inputs":  float32 (in_len,  H, W, len(variables)),
     "targets": float32 (out_len, H, W, len(target_variables)),
     "meta":    {"start": window start (index into the selected time range), "time": first frame}}

Contract:

* The store is opened lazily (``xr.open_dataset``, Zarr engine for directories; no dask, no
  cache); each item reads only its window. Stores given by path are reopened once per process, so
  ``DataLoader`` workers never share a file handle.
* Dimension names: ``time_dim`` (default ``"time"``); ``y_dim``/``x_dim`` are detected among
  ``y/x``, ``lat/lon`` and ``latitude/longitude`` unless given. Every variable must have exactly
  these three dimensions (select levels or members before, e.g. on an ``xr.Dataset``).
* ``time_slice=(start, end)`` selects by coordinate label, both ends included (``.sel``
  semantics), or by position (end excluded, like Python slicing) when the store has no time
  coordinate.
* Gaps: when the time coordinate is datetime-like and ``skip_gaps=True``, the usual spacing is
  the most common step, and windows that straddle a longer (or shorter) step are dropped.
* Normalisation ``(x - offset) / scale`` per variable: ``None`` (identity), ``"minmax"``
  (offset = min, scale = max − min), ``"standard"`` (mean, std), one ``(offset, scale)`` pair for
  all variables, or a mapping ``{variable: (offset, scale)}``. Statistics are computed over the
  selected time range (NaN ignored) and exposed as ``.stats``, so validation and test sets can
  reuse the training statistics: ``GriddedDataset(..., normalization=train.stats)``.
* NaN policy per item: ``"raise"`` (default; the error names the variable and time), ``"zero"``
  (NaN → 0 *after* normalisation, i.e. the minimum under ``"minmax"``, the mean under
  ``"standard"``) or ``"keep"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from einops import rearrange
from torch.utils.data import Dataset

from earthcast.data.time_steps import is_time_axis, regular_steps
from earthcast.data.windows import valid_window_starts, window_starts

__all__ = ["SPATIAL_DIM_PAIRS", "GriddedDataset", "open_store"]

NanPolicy = Literal["raise", "zero", "keep"]
Normalization = Literal["minmax", "standard"] | tuple[float, float] | Mapping[str, tuple[float, float]] | None
SPATIAL_DIM_PAIRS: tuple[tuple[str, str], ...] = (("y", "x"), ("lat", "lon"), ("latitude", "longitude"))
_STATS_BLOCK = 64  # frames per read when computing statistics


def open_store(source: str | Path, engine: str | None = None) -> xr.Dataset:
    """Open a Zarr directory (``*.zarr`` or any directory) or a NetCDF/HDF5 file lazily."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"gridded store not found: {path}")
    if engine is None and (path.is_dir() or path.suffix == ".zarr"):
        engine = "zarr"
    try:
        return xr.open_dataset(path, engine=engine, chunks=None, cache=False)
    except Exception as err:  # the engines raise ValueError, OSError, KeyError, … for damaged stores
        first = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"cannot read gridded store {path}: it is truncated, corrupt or not NetCDF/Zarr ({first}); "
            "re-create it (e.g. earthcast data import-radar)"
        ) from err


class GriddedDataset(Dataset):
    """Sliding windows of ``(time, y, x)`` variables stacked as channels.

    Args:
        source: path of a Zarr directory or NetCDF file, or an ``xr.Dataset``.
        variables: input variables (channels of ``inputs``, in this order).
        in_len, out_len: frames of ``inputs`` and ``targets``.
        stride: frames between window starts.
        target_variables: channels of ``targets``; default ``variables``.
        time_dim, y_dim, x_dim: dimension names (y/x detected when ``None``).
        normalization: see the module docstring.
        time_slice: ``(start, end)`` labels (both included) or, without a time coordinate,
            positions (end excluded); ``None`` = everything.
        nan_policy: ``"raise"``, ``"zero"`` or ``"keep"``.
        skip_gaps: drop windows across irregular time steps (datetime coordinates only).
        engine: xarray backend; ``None`` picks Zarr for directories and the default otherwise.
    """

    def __init__(
        self,
        source: str | Path | xr.Dataset,
        variables: Sequence[str],
        in_len: int,
        out_len: int,
        *,
        stride: int = 1,
        target_variables: Sequence[str] | None = None,
        time_dim: str = "time",
        y_dim: str | None = None,
        x_dim: str | None = None,
        normalization: Normalization = None,
        time_slice: tuple[Any, Any] | None = None,
        nan_policy: NanPolicy = "raise",
        skip_gaps: bool = True,
        engine: str | None = None,
    ) -> None:
        if isinstance(variables, str):
            variables = [variables]
        if isinstance(target_variables, str):
            target_variables = [target_variables]
        if not variables:
            raise ValueError("variables must name at least one variable")
        if in_len < 1 or out_len < 1:
            raise ValueError(f"in_len and out_len must be >= 1, got {in_len} and {out_len}")
        if nan_policy not in ("raise", "zero", "keep"):
            raise ValueError(f"nan_policy must be 'raise', 'zero' or 'keep', got {nan_policy!r}")
        self.variables = list(variables)
        self.target_variables = list(target_variables) if target_variables is not None else self.variables
        self.in_len, self.out_len, self.stride = in_len, out_len, stride
        self.seq_len = in_len + out_len
        self.nan_policy = nan_policy
        self._path = None if isinstance(source, xr.Dataset) else Path(source)
        self._engine = engine
        self._pid: int | None = None

        ds = source if isinstance(source, xr.Dataset) else open_store(source, engine)
        try:
            self._used = list(dict.fromkeys(self.variables + self.target_variables))
            self._check_variables(ds)
            self.time_dim = time_dim
            self.y_dim, self.x_dim = self._spatial_dims(ds, time_dim, y_dim, x_dim)
            self._t0, self._t1 = self._time_range(ds, time_slice)
            self.times = self._time_values(ds)
            self.starts = self._window_starts(skip_gaps)
            self.stats = self._resolve_normalization(ds, normalization)
            self.shape = (ds.sizes[self.y_dim], ds.sizes[self.x_dim])
        finally:
            if self._path is not None:
                ds.close()
        self._ds = None if self._path is not None else ds

    # ------------------------------------------------------------------ construction helpers
    def _check_variables(self, ds: xr.Dataset) -> None:
        missing = [v for v in self._used if v not in ds.data_vars]
        if missing:
            raise ValueError(
                f"variable(s) {missing} not in the store; available: {sorted(map(str, ds.data_vars))} "
                "(set data.options.variables / target_variables to names from that list)"
            )

    def _spatial_dims(
        self, ds: xr.Dataset, time_dim: str, y_dim: str | None, x_dim: str | None
    ) -> tuple[str, str]:
        dims = ds[self._used[0]].dims
        if time_dim not in dims:
            raise ValueError(
                f"variable '{self._used[0]}' has no time dimension '{time_dim}' (dims: {dims}); name it "
                "with time_dim= (CLI: --set data.options.time_dim=<name>)"
            )
        if y_dim is None or x_dim is None:
            pairs = [p for p in SPATIAL_DIM_PAIRS if p[0] in dims and p[1] in dims]
            if not pairs:
                raise ValueError(
                    f"cannot find spatial dims of '{self._used[0]}' among {dims}; tried "
                    f"{list(SPATIAL_DIM_PAIRS)}; pass y_dim= and x_dim= (CLI: --set "
                    "data.options.y_dim=<name> --set data.options.x_dim=<name>)"
                )
            y_dim, x_dim = y_dim or pairs[0][0], x_dim or pairs[0][1]
        for var in self._used:
            if set(ds[var].dims) != {time_dim, y_dim, x_dim}:
                raise ValueError(
                    f"variable '{var}' has dims {ds[var].dims}; expected exactly "
                    f"({time_dim}, {y_dim}, {x_dim}) — select extra dimensions (levels, members) first"
                )
        return y_dim, x_dim

    def _time_range(self, ds: xr.Dataset, time_slice: tuple[Any, Any] | None) -> tuple[int, int]:
        length = ds.sizes[self.time_dim]
        if time_slice is None:
            return 0, length
        start, end = time_slice
        if self.time_dim in ds.indexes:
            index = ds.indexes[self.time_dim]
            if not index.is_monotonic_increasing:
                raise ValueError(f"time coordinate '{self.time_dim}' is not sorted; cannot slice it by label")
            bounds = index.slice_indexer(start, end)
            return int(bounds.start or 0), int(length if bounds.stop is None else bounds.stop)
        bounds = slice(start, end).indices(length)
        return bounds[0], max(bounds[0], bounds[1])

    def _time_values(self, ds: xr.Dataset) -> np.ndarray | None:
        if self.time_dim not in ds.coords:
            return None
        return ds[self.time_dim].values[self._t0 : self._t1]

    def _window_starts(self, skip_gaps: bool) -> list[int]:
        length = self._t1 - self._t0
        if length < self.seq_len:
            raise ValueError(
                f"a window of {self.seq_len} frames (in_len {self.in_len} + out_len {self.out_len}) is "
                f"longer than the {length} selected time steps"
            )
        self.time_step = None
        if skip_gaps and is_time_axis(self.times):
            steps = regular_steps(self.times)  # fixed durations or calendar months, any calendar
            self.time_step = steps.duration
            starts = valid_window_starts(steps.breaks, self.seq_len, self.stride)
            if not starts:
                raise ValueError(
                    f"every window of {self.seq_len} frames straddles a gap in '{self.time_dim}'"
                )
            return starts
        return window_starts(length, self.seq_len, self.stride)

    def _resolve_normalization(
        self, ds: xr.Dataset, normalization: Normalization
    ) -> dict[str, tuple[float, float]]:
        if normalization is None:
            return {v: (0.0, 1.0) for v in self._used}
        if isinstance(normalization, Mapping):
            missing = [v for v in self._used if v not in normalization]
            if missing:
                raise ValueError(f"normalization mapping lacks variable(s) {missing}")
            stats = {v: (float(normalization[v][0]), float(normalization[v][1])) for v in self._used}
        elif isinstance(normalization, tuple):
            offset, scale = normalization
            stats = {v: (float(offset), float(scale)) for v in self._used}
        elif normalization in ("minmax", "standard"):
            stats = {v: self._compute_stats(ds, v, normalization) for v in self._used}
        else:
            raise ValueError(
                f"normalization must be None, 'minmax', 'standard', (offset, scale) or a mapping, "
                f"got {normalization!r}"
            )
        zero = [v for v, (_, scale) in stats.items() if not scale]
        if zero:
            raise ValueError(f"normalization scale is 0 for {zero} (constant field?)")
        return stats

    def _compute_stats(self, ds: xr.Dataset, var: str, kind: str) -> tuple[float, float]:
        """(offset, scale) of ``var`` over the selected time range, read in blocks, NaN ignored."""
        count, total, total_sq, low, high = 0, 0.0, 0.0, np.inf, -np.inf
        for a in range(self._t0, self._t1, _STATS_BLOCK):
            block = ds[var].isel({self.time_dim: slice(a, min(a + _STATS_BLOCK, self._t1))}).values
            self._refuse_nan_early(var, block, a)
            finite = block[np.isfinite(block)].astype(np.float64)
            if finite.size:
                count += finite.size
                total, total_sq = total + finite.sum(), total_sq + np.square(finite).sum()
                low, high = min(low, finite.min()), max(high, finite.max())
        if count == 0:
            raise ValueError(f"variable '{var}' has no finite value in the selected time range")
        if kind == "minmax":
            return float(low), float(high - low) or 1.0
        mean = total / count
        return float(mean), float(np.sqrt(max(total_sq / count - mean**2, 0.0))) or 1.0

    def _refuse_nan_early(self, var: str, block: np.ndarray, first: int) -> None:
        """Under ``nan_policy="raise"`` the statistics pass, which reads the whole range anyway,
        reports NaN before training starts rather than when a batch first meets it."""
        if self.nan_policy != "raise":
            return
        nan = np.isnan(block)
        if nan.any():
            frame = first + int(np.argwhere(nan)[0][0]) - self._t0
            raise ValueError(
                f"NaN in variable '{var}' at time {self._label(frame)} ({int(nan.sum())} values in "
                f"that block); pass nan_policy='zero' or 'keep' (CLI: --set data.options.nan_policy=zero)"
            )

    # ------------------------------------------------------------------ access
    def _dataset(self) -> xr.Dataset:
        if self._path is None:
            return self._ds
        if self._pid != os.getpid() or self._ds is None:
            self._pid, self._ds = os.getpid(), open_store(self._path, self._engine)
        return self._ds

    def close(self) -> None:
        """Close the store opened by this process (it is reopened on the next access)."""
        if self._path is not None and self._ds is not None and self._pid == os.getpid():
            self._ds.close()
        if self._path is not None:
            self._ds = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._path is not None:
            state["_ds"], state["_pid"] = None, None
        return state

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        start = self.starts[index]
        first = self._t0 + start
        window = self._dataset().isel({self.time_dim: slice(first, first + self.seq_len)})
        frames = {v: self._read(window, v, start) for v in self._used}  # each (seq_len, H, W)
        inputs = rearrange([frames[v][: self.in_len] for v in self.variables], "c t h w -> t h w c")
        targets = rearrange([frames[v][self.in_len :] for v in self.target_variables], "c t h w -> t h w c")
        meta = {"start": start, "time": self._label(start)}
        return {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(targets), "meta": meta}

    def _read(self, window: xr.Dataset, var: str, start: int) -> np.ndarray:
        data = window[var].transpose(self.time_dim, self.y_dim, self.x_dim).values.astype(np.float32)
        offset, scale = self.stats[var]
        if (offset, scale) != (0.0, 1.0):
            data = (data - np.float32(offset)) / np.float32(scale)
        if self.nan_policy != "keep":
            nan = np.isnan(data)
            if nan.any():
                if self.nan_policy == "raise":
                    raise ValueError(
                        f"NaN in variable '{var}' in the window starting at {self._label(start)} "
                        f"({int(nan.sum())} values); pass nan_policy='zero' or 'keep' "
                        "(CLI: --set data.options.nan_policy=zero)"
                    )
                data[nan] = 0.0
        return data

    def _label(self, start: int) -> str | int:
        if self.times is None:
            return start
        value = self.times[start]
        if isinstance(value, np.datetime64):
            return str(np.datetime_as_string(value, unit="s"))
        return value.item() if isinstance(value, np.generic) else str(value)
