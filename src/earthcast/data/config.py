"""``DataConfig``: which data set a run reads and how it is batched (the single source of defaults)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DataConfig:
    """Data set, windows and loader settings of an experiment.

    Attributes:
        name: registered data set (``earthcast.data.list_datasets()``).
        root: where the data live: a directory, or for ``radar``/``gridded`` the store itself
            (Zarr directory or NetCDF file). ``None``: ``<run dir>/data/<name>`` when training.
        in_len, out_len, stride: window shape in frames; ``None`` keeps the data set's default.
        batch_size: training micro-batch per device.
        eval_batch_size: validation/test micro-batch per device; ``None`` = ``batch_size``.
        num_workers: DataLoader worker processes per device (0 = load in the main process).
        synthesize: if the data are missing at ``root``, write a synthetic look-alike there
            (``prepare_data``) instead of failing. For demos and tests, never for paper numbers.
        synthetic: keyword arguments of the synthetic writer, e.g. ``{size: 16, n_train: 64}``.
        options: keyword arguments of the data set class, e.g. ``{rescale: "255"}`` (N-body at
            the paper's scale) or ``{variables: [precip]}`` (gridded stores).
    """

    name: str
    root: str | None = None
    in_len: int | None = None
    out_len: int | None = None
    stride: int | None = None
    batch_size: int = 2
    eval_batch_size: int | None = None
    num_workers: int = 4
    synthesize: bool = False
    synthetic: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        for key in ("in_len", "out_len", "stride", "eval_batch_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                problems.append(f"data.{key}={value} must be >= 1")
        if self.batch_size < 1:
            problems.append(f"data.batch_size={self.batch_size} must be >= 1")
        if self.num_workers < 0:
            problems.append(f"data.num_workers={self.num_workers} must be >= 0")
        if problems:
            raise ValueError("invalid data config: " + "; ".join(problems))

    def replace(self, **changes: Any) -> DataConfig:
        return dataclasses.replace(self, **changes)
