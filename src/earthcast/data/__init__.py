"""Data sets and the data-module registry: ``create_datamodule(name, **kwargs)`` / ``list_datasets()``.

Built-in names: ``nbody``, ``moving_mnist``, ``sevir``, ``sevirlr``, ``enso``, ``radar`` (stores
written by ``earthcast.data.radar.import_radar``) and ``gridded`` (any ``(time, y, x)`` store).
Each entry of ``DATASETS`` is a zero-argument factory returning a
:class:`~earthcast.data.specs.DatasetSpec`; third-party packages add data sets through the
``earthcast.datasets`` entry-point group. Every data set yields items
``{"inputs": (T_in, H, W, C_in), "targets": (T_out, H, W, C_out), "meta": {...}}`` (float32).

Lightning is imported only when a data module is created.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from earthcast._registry import Registry
from earthcast.data.config import DataConfig as DataConfig
from earthcast.data.specs import BUILTIN_SPECS, DatasetSpec

if TYPE_CHECKING:
    from earthcast.data.datamodule import ForecastDataModule

DATASETS: Registry[DatasetSpec] = Registry("dataset", "earthcast.datasets")
for _name, _factory in BUILTIN_SPECS.items():
    DATASETS.add(_name, _factory)


def create_datamodule(name: str, *, seed: int = 0, **kwargs: Any) -> ForecastDataModule:
    """A :class:`ForecastDataModule` for registered data set ``name``.

    Args:
        name: data set name (case-insensitive); unknown names raise ``ValueError`` listing them.
        seed: seed of the per-epoch shuffling.
        **kwargs: fields of :class:`DataConfig` (``root``, ``in_len``, ``batch_size``, ``synthesize``…).
    """
    from earthcast.data.datamodule import ForecastDataModule

    DATASETS.get(name)
    valid = [f.name for f in dataclasses.fields(DataConfig) if f.name != "name"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"unknown data setting(s) {unknown}; valid settings: {', '.join(valid)}")
    return ForecastDataModule(DataConfig(name=name.lower(), **kwargs), seed=seed)


def list_datasets() -> list[str]:
    """Registered data set names, sorted."""
    return DATASETS.names()


def __getattr__(name: str) -> Any:
    if name == "ForecastDataModule":
        from earthcast.data.datamodule import ForecastDataModule

        return ForecastDataModule
    raise AttributeError(f"module 'earthcast.data' has no attribute '{name}'")
