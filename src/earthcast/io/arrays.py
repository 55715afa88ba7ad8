"""Read sample arrays ``(N, T, H, W[, C])`` from ``.npy``, NetCDF or Zarr.

Axis legend: ``n`` sample, ``t`` time, ``h``/``w`` space, ``c`` channel, ``s`` ensemble member.

``read_samples(path, variable, start=, count=)`` returns a ``SampleArray``: the values of the
selected samples plus what the file says about them. Contract:

* ``.npy`` files are memory-mapped (``allow_pickle=False``: object arrays are refused), so a
  selection reads only its samples. NetCDF (``.nc``, ``.nc4``, ``.cdf``) and Zarr (``.zarr``)
  are opened lazily with xarray and their values come as ``LazyRows``, which reads the rows a
  slice asks for: callers that work in chunks of samples (``predict``, ``score``) never hold
  the whole file in memory. ``variable`` picks the data variable, otherwise the first data
  variable with at least ``min_ndim`` dimensions is used. Close a ``SampleArray`` (or use it
  as a context manager) to release an xarray-backed file.
* The first axis is the sample axis. For NetCDF/Zarr, a datetime coordinate along it is taken
  as the forecast reference time of each sample (a ``(sample, time)`` coordinate gives the time
  of the last frame); an integer coordinate along it as the samples' indices; 1-D coordinates
  of the other axes are kept (e.g. ``y``/``x`` in metres).
* Values must be numeric (bool, integer or float). Everything else is a ``ValueError`` that
  names the file, the problem and a fix; a missing file is a ``FileNotFoundError``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ARRAY_SUFFIXES", "LazyRows", "SampleArray", "array_format", "read_samples"]

ARRAY_SUFFIXES: dict[str, str] = {
    ".npy": "npy",
    ".nc": "netcdf",
    ".nc4": "netcdf",
    ".cdf": "netcdf",
    ".netcdf": "netcdf",
    ".zarr": "zarr",
}


class LazyRows:
    """Rows ``start … stop − 1`` of a lazily opened xarray variable, read on demand.

    Supports the part of the NumPy interface that chunked readers use: ``shape``, ``ndim``,
    ``dtype``, ``len()``, ``x[i]`` and ``x[a:b]`` (rows, returned as ``np.ndarray``),
    ``x[..., np.newaxis]`` (a trailing axis, still lazy) and ``np.asarray(x)`` (everything).

    Args:
        variable: the lazily indexed ``xr.DataArray`` (its first axis is the sample axis).
        rows: the selected rows of ``variable``.
        name: how the data are called in read errors (``"variable 'vil' of input 'x.nc'"``).
    """

    def __init__(self, variable, rows: slice, name: str, trailing_axes: int = 0):
        self._variable, self._rows, self._name = variable, rows, name
        self._trailing_axes = trailing_axes
        count = len(range(*rows.indices(variable.shape[0])))
        self.shape = (count, *variable.shape[1:], *(1,) * trailing_axes)
        self.dtype = np.dtype(variable.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray | LazyRows:
        if isinstance(key, tuple) and key == (Ellipsis, None):
            return LazyRows(self._variable, self._rows, self._name, self._trailing_axes + 1)
        if isinstance(key, (int, np.integer)):
            return self[int(key) : int(key) + 1 or None][0]
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError(f"LazyRows reads rows x[i] or x[a:b] or adds an axis x[..., None]; got [{key!r}]")
        start, stop, _ = key.indices(len(self))
        first = self._rows.start or 0
        return self._read(slice(first + start, first + max(start, stop)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self[:]
        return values if dtype is None else values.astype(dtype, copy=False)

    def _read(self, rows: slice) -> np.ndarray:
        try:
            values = np.asarray(self._variable[rows].values)
        except Exception as err:  # engines raise many types (OSError, RuntimeError, KeyError, …)
            raise ValueError(f"cannot read the values of {self._name}: {err}") from err
        return values.reshape(*values.shape, *(1,) * self._trailing_axes)


@dataclass
class SampleArray:
    """Selected samples of one array file.

    Attributes:
        path: the file.
        values: ``(n, ...)`` rows, read on demand: a read-only memory map for ``.npy``,
            ``LazyRows`` for NetCDF/Zarr.
        variable: data-variable name (None for ``.npy``).
        dims: dimension names (``dim_0`` … for ``.npy``).
        attrs: the variable's attributes.
        global_attrs: the file's global attributes.
        index: ``(n,)`` index of each selected sample (its coordinate in the file, else position).
        reference_time: ``(n,)`` datetime64 reference times, when the file has them.
        coords: ``{dim: (values, attrs)}`` 1-D coordinates of the non-sample axes.
        total: number of samples in the file.
    """

    path: Path
    values: np.ndarray
    variable: str | None
    dims: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    global_attrs: dict[str, Any] = field(default_factory=dict)
    index: np.ndarray | None = None
    reference_time: np.ndarray | None = None
    coords: dict[str, tuple[np.ndarray, dict[str, Any]]] = field(default_factory=dict)
    total: int = 0
    dataset: Any = field(default=None, repr=False)

    def close(self) -> None:
        """Release the underlying file (xarray datasets; memory maps close with their last use)."""
        if self.dataset is not None:
            self.dataset.close()
            self.dataset = None

    def __enter__(self) -> SampleArray:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def array_format(path: str | os.PathLike, what: str = "input") -> str:
    """``"npy"``, ``"netcdf"`` or ``"zarr"`` from the extension (ValueError for anything else)."""
    suffix = Path(path).suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise ValueError(
            f"{what} '{path}' has the extension '{suffix or '(none)'}', which earthcast cannot read; "
            "save it as .npy (np.save), NetCDF (.nc) or Zarr (.zarr)"
        )
    return ARRAY_SUFFIXES[suffix]


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{what} file '{path}' not found; check the path")


def _check_numeric(dtype: np.dtype, path: Path, what: str) -> None:
    if dtype.kind not in "biuf":
        raise ValueError(
            f"{what} '{path}' holds {dtype} values ({'strings' if dtype.kind in 'SU' else 'not numbers'}); "
            "arrays must be numeric, e.g. np.save(path, array.astype(np.float32))"
        )


def _selection(total: int, start: int, count: int | None, path: Path, what: str, hint: str) -> slice:
    if total == 0:
        raise ValueError(f"{what} '{path}' holds no samples (its first axis has length 0)")
    if count is not None and count < 1:
        raise ValueError(f"asked for {count} samples of {what} '{path}'; the count must be >= 1")
    stop = total if count is None else start + count
    if start < 0 or start >= total or (count is not None and count < 1) or stop > total:
        asked = f"samples {start}…{stop - 1}" if count is not None and count > 1 else f"sample {start}"
        raise ValueError(f"{what} '{path}' has {total} samples (0…{total - 1}); {asked} asked for. {hint}")
    return slice(start, stop)


def _read_npy(path: Path, start: int, count: int | None, what: str, hint: str) -> SampleArray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(
            f"cannot read {what} '{path}' as a .npy array ({err}); object and pickled arrays are "
            "refused and the file may be truncated. Re-save a numeric array with "
            "np.save(path, array.astype(np.float32))"
        ) from err
    _check_numeric(array.dtype, path, what)
    if array.ndim == 0:
        raise ValueError(f"{what} '{path}' holds a single number, not an array of samples")
    rows = _selection(array.shape[0], start, count, path, what, hint)
    dims = tuple(f"dim_{i}" for i in range(array.ndim))
    index = np.arange(array.shape[0])[rows]
    return SampleArray(path, array[rows], None, dims, index=index, total=array.shape[0])


def _open_dataset(path: Path, fmt: str, what: str):
    import xarray as xr

    try:
        if fmt == "zarr":
            return xr.open_dataset(path, engine="zarr", chunks=None)
        return xr.open_dataset(path, chunks=None, cache=False)
    except Exception as err:  # engines raise many types (OSError, ValueError, KeyError, …)
        kind = "Zarr store" if fmt == "zarr" else "NetCDF file"
        message = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"cannot read {what} '{path}' as a {kind} ({message}); the file is corrupt, truncated or "
            "not in that format. Re-create it (e.g. xarray Dataset.to_netcdf) or pass a .npy array"
        ) from err


def _pick_variable(ds, variable: str | None, min_ndim: int, path: Path, what: str) -> str:
    names = [str(n) for n in ds.data_vars]
    listing = ", ".join(f"{n}{tuple(ds[n].dims)}" for n in names) or "none"
    if variable is not None:
        if variable not in ds.data_vars:
            raise ValueError(
                f"{what} '{path}' has no variable '{variable}'; its data variables are: {listing}"
            )
        return variable
    for name in names:
        if ds[name].ndim >= min_ndim:
            return name
    raise ValueError(
        f"{what} '{path}' has no data variable with at least {min_ndim} dimensions "
        f"(sample, time, y, x); found: {listing}. Cut a (time, y, x) series into windows "
        "(N, T, H, W) first, or pick a variable with --var"
    )


def _sample_metadata(da, rows: slice) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Reference times and integer indices of the selected samples, when the file has them."""
    sample_dim = da.dims[0]
    reference, index = None, None
    for coord in da.coords.values():
        values = coord.values
        if coord.dims and coord.dims[0] == sample_dim and np.issubdtype(values.dtype, np.datetime64):
            if coord.ndim == 1:
                reference = values[rows]
            elif coord.ndim == 2:
                reference = values[rows, -1]  # time of the last context frame
        elif coord.dims == (sample_dim,) and np.issubdtype(values.dtype, np.integer):
            index = values[rows]
    return reference, index


def _read_xarray(
    path: Path,
    fmt: str,
    variable: str | None,
    selection: tuple[int, int | None],
    min_ndim: int,
    what: str,
    hint: str,
) -> SampleArray:
    ds = _open_dataset(path, fmt, what)
    try:
        name = _pick_variable(ds, variable, min_ndim, path, what)
        da = ds[name]
        _check_numeric(da.dtype, path, f"{what} variable '{name}' of")
        rows = _selection(da.shape[0], *selection, path, what, hint)
        reference, index = _sample_metadata(da, rows)
        coords = {
            str(d): (np.asarray(ds[d].values), dict(ds[d].attrs))
            for d in da.dims[1:]
            if d in ds.coords and ds[d].ndim == 1
        }
    except BaseException:
        ds.close()
        raise
    return SampleArray(
        path,
        LazyRows(da, rows, f"variable '{name}' of {what} '{path}'"),
        name,
        tuple(str(d) for d in da.dims),
        attrs=dict(da.attrs),
        global_attrs=dict(ds.attrs),
        index=np.arange(da.shape[0])[rows] if index is None else index,
        reference_time=reference,
        coords=coords,
        total=da.shape[0],
        dataset=ds,
    )


def read_samples(
    path: str | os.PathLike,
    variable: str | None = None,
    *,
    start: int = 0,
    count: int | None = None,
    min_ndim: int = 4,
    what: str = "input",
    hint: str = "Select samples within that range (--start/--index, --count >= 1)",
) -> SampleArray:
    """Read samples ``start … start + count − 1`` (all when ``count`` is None) of an array file.

    Args:
        path: ``.npy``, NetCDF or Zarr.
        variable: data variable of a NetCDF/Zarr file (default: the first with ``min_ndim`` dims).
        start, count: sample selection along the first axis.
        min_ndim: smallest number of dimensions a data variable needs to be picked by default.
        what: how the file is called in error messages (``"input"``, ``"target"``, …).
        hint: the fix suggested when the selection lies outside the file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown extension, unreadable or corrupt file, unknown variable, non-numeric
            values or a selection outside the file.
    """
    path = Path(path)
    fmt = array_format(path, what)
    _check_exists(path, what)
    if fmt == "npy":
        return _read_npy(path, start, count, what, hint)
    return _read_xarray(path, fmt, variable, (start, count), min_ndim, what, hint)
