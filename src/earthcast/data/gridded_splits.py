"""Train/val/test splits of one gridded ``(time, y, x)`` store, by time.

A store holds a single time series, so the splits are consecutive time ranges: either explicit
``time_slices`` (``{split: [start, end]}``, labels, both ends included) or ``split_fractions``
(default 0.8 / 0.1 / 0.1 of the frames, in time order, no overlap). Normalisation statistics are
computed on the training range only and reused for validation and test, so no information leaks
from the evaluation periods. Options not listed here go to ``GriddedDataset`` unchanged.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from earthcast.data.config import DataConfig

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
_SPLITS = ("train", "val", "test")


def gridded_present(root: Path) -> bool:
    """A store is a NetCDF file or a (Zarr) directory."""
    return root.is_file() or (root.is_dir() and any(root.iterdir()))


def fraction_slices(
    root: Path, fractions: tuple[float, float, float], time_dim: str = "time", engine: str | None = None
) -> dict[str, tuple[Any, Any]]:
    """``time_slice`` per split from fractions of the store's frames (labels if it has a time coordinate)."""
    from earthcast.data.gridded import open_store

    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) > 1 + 1e-9:
        raise ValueError(
            f"split_fractions must be three non-negative numbers summing to <= 1, got {fractions}"
        )
    with open_store(root, engine) as ds:
        if time_dim not in ds.dims:
            raise ValueError(
                f"store {root} has no time dimension '{time_dim}' (dims: {dict(ds.sizes)}); name it with "
                "--set data.options.time_dim=<name>"
            )
        n = ds.sizes[time_dim]
        labels = ds[time_dim].values if time_dim in ds.coords else None
    bounds = np.round(np.cumsum([0.0, *fractions]) * n).astype(int)
    slices = {}
    for split, a, b in zip(_SPLITS, bounds[:-1], bounds[1:]):
        if labels is None:
            slices[split] = (int(a), int(b))  # positions, end excluded
        elif b > a:
            slices[split] = (labels[a], labels[b - 1])  # labels, both ends included
        else:
            slices[split] = None
    return slices


def build_gridded(
    root: Path, splits: tuple[str, ...], config: DataConfig, defaults: dict[str, Any]
) -> dict[str, Dataset]:
    """Datasets of the requested splits; the training statistics normalise every split."""
    from earthcast.data.gridded import GriddedDataset
    from earthcast.data.specs import call_with

    options = {**defaults, **_windows(config), **config.options}
    fractions = tuple(options.pop("split_fractions", DEFAULT_FRACTIONS))
    slices = options.pop("time_slices", None)
    if "variables" not in options:
        raise ValueError(f"data set '{config.name}' needs data.options.variables (the variables to read)")
    unset = [k for k in ("in_len", "out_len") if k not in options]
    if unset:
        raise ValueError(
            f"data set '{config.name}' needs {' and '.join(f'data.{k}' for k in unset)} (context and "
            "forecast frames per sample), e.g. --set data.in_len=4 --set data.out_len=4"
        )
    if slices is None:
        slices = fraction_slices(root, fractions, options.get("time_dim", "time"), options.get("engine"))
    missing = [s for s in _SPLITS if not slices.get(s)]
    if missing:
        raise ValueError(
            f"no time range for split(s) {missing}; set data.options.time_slices or split_fractions"
        )
    make = functools.partial(call_with, GriddedDataset, "GriddedDataset", root)
    train = _split_dataset(make, "train", slices["train"], options)
    stats = train.stats if options.get("normalization") else None
    out: dict[str, Dataset] = {}
    for split in splits:
        out[split] = (
            train
            if split == "train"
            else _split_dataset(make, split, slices[split], {**options, "normalization": stats})
        )
    return out


def _split_dataset(make: Any, split: str, time_slice: Any, options: dict[str, Any]) -> Dataset:
    try:
        return make(time_slice=tuple(time_slice), **options)
    except ValueError as err:
        hint = ""
        if "longer than the" in str(err):
            hint = (
                "; give this split more time steps (data.options.split_fractions or time_slices) "
                "or shorter windows"
            )
        raise ValueError(f"split '{split}' (time range {list(time_slice)}): {err}{hint}") from err


def _windows(config: DataConfig) -> dict[str, int]:
    return {k: getattr(config, k) for k in ("in_len", "out_len", "stride") if getattr(config, k) is not None}


def describe_gridded(dataset: Any) -> dict[str, Any]:
    """Scale, units and time step of the data, per variable.

    ``scale_factor``/``scale_offset``/``units`` describe the first target variable (what the
    scores and a one-variable forecast file use); ``normalization`` and ``variable_units`` hold
    every variable's ``(offset, scale)`` and units, ``input_variables``/``target_variables`` the
    channel order, so a checkpoint can be evaluated, resumed or de-normalised channel by channel.
    """
    from earthcast.data.gridded import open_store

    target = dataset.target_variables[0]
    offset, scale = dataset.stats[target]
    used = list(dict.fromkeys(dataset.variables + dataset.target_variables))
    units, step = {v: "" for v in used}, None
    if dataset._path is not None:
        with open_store(dataset._path, dataset._engine) as ds:
            units = {v: str(ds[v].attrs.get("units", "")) for v in used}
            if ds.attrs.get("timestep_units", "minutes") == "minutes" and "timestep" in ds.attrs:
                step = int(ds.attrs["timestep"])
    if step is None and dataset.time_step is not None:
        step = int(np.asarray(dataset.time_step).astype("timedelta64[m]").astype(np.int64))
    return {
        "variable": ",".join(dataset.target_variables),
        "units": units[target],
        "scale": "none" if all(dataset.stats[v] == (0.0, 1.0) for v in used) else "affine",
        "scale_factor": float(scale),
        "scale_offset": float(offset),
        "input_variables": list(dataset.variables),
        "target_variables": list(dataset.target_variables),
        "normalization": {v: [float(o), float(s)] for v, (o, s) in dataset.stats.items() if v in used},
        "variable_units": units,
        "frame_interval_minutes": step,
    }


def reuse_training_statistics(config: DataConfig, contract: dict[str, Any] | None) -> DataConfig:
    """``config`` normalised with the statistics a checkpoint was trained with.

    Scoring or resuming a model on another store (or a longer one) must feed it the numbers it
    learnt from, not statistics recomputed from the new data. Data sets without per-variable
    statistics in their contract (everything but gridded stores) are returned unchanged; a
    different variable order is refused, since the channels would silently mean other things.
    """
    if not contract or not contract.get("normalization") or "variables" not in config.options:
        return config
    options = dict(config.options)
    wanted = _as_list(options["variables"])
    targets = _as_list(options.get("target_variables") or wanted)
    trained = (contract.get("input_variables"), contract.get("target_variables"))
    if trained != (wanted, targets):
        raise ValueError(
            f"the data's variables (inputs {wanted}, targets {targets}) differ from the checkpoint's "
            f"(inputs {trained[0]}, targets {trained[1]}); set data.options.variables (and "
            "target_variables) to the checkpoint's, in that order"
        )
    if isinstance(options.get("normalization"), str):
        options["normalization"] = {v: list(stats) for v, stats in contract["normalization"].items()}
    return config.replace(options=options)


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
