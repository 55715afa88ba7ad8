"""A record of synthetic data written into a data root: was the writing finished, with what settings.

A synthetic data set is several files (splits, stores, a catalog), each written atomically, but
not the set: a writer killed half-way used to leave, say, ``nbody_train.h5`` without
``nbody_val.h5``. The data set's ``present`` check passed on it, so every later run failed on the
missing split, or trained on the stores that happened to be there. And data written with other
``data.synthetic`` settings were reused as if they were the ones asked for.

:func:`synthesizing` writes :data:`RECORD_NAME` before the first file (``complete: false``) and
marks it complete after the last. ``ForecastDataModule.prepare_data`` and ``earthcast data``
read it back (:func:`check_synthesis`): an interrupted writing is written again (or named, when
nothing may be written), and complete data of other settings are refused rather than reused.
Real data and data written before this record have none, and are taken as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from earthcast.utils.jsonsafe import write_json

RECORD_NAME = ".earthcast-synthetic.json"
"""File in a data root (beside it, for a single-store root) recording its synthetic data:
``{dataset, parameters, complete}`` (:func:`record_path`)."""


@contextmanager
def synthesizing(root: str | Path, dataset: str, parameters: dict[str, Any] | None) -> Iterator[Path]:
    """Record that synthetic ``dataset`` data are being written into ``root``; mark the record
    complete when the block ends without an error. ``parameters``: the settings the data are
    made with (``None`` when they are not comparable with ``data.synthetic``, e.g. CLI flags)."""
    path = record_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"dataset": dataset, "parameters": _plain(parameters), "complete": False}
    write_json(path, record)
    yield Path(root)
    write_json(path, {**record, "complete": True})


def record_path(root: str | Path) -> Path:
    """Where the record of ``root`` lives: inside a data folder, beside a single store
    (``radar.nc``, ``sst.zarr``: a gridded data set's root is the store itself)."""
    root = Path(root)
    return root.parent / f".{root.name}{RECORD_NAME}" if root.suffix else root / RECORD_NAME


def synthesis_record(root: str | Path) -> dict[str, Any] | None:
    """The record of ``root``, or ``None`` when it has none (real data, or older synthetic data)."""
    path = record_path(root)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def interrupted(record: dict[str, Any] | None) -> bool:
    """Whether a record says its writing never finished."""
    return record is not None and not record.get("complete", False)


def other_parameters(record: dict[str, Any] | None, parameters: dict[str, Any] | None) -> bool:
    """Whether complete data of ``record`` were made with other comparable settings."""
    if record is None or interrupted(record) or record.get("parameters") is None or parameters is None:
        return False
    return record["parameters"] != _plain(parameters)


def check_synthesis(root: str | Path, dataset: str, parameters: dict[str, Any] | None = None) -> None:
    """Refuse synthetic data at ``root`` whose writing was interrupted, or that were made with
    other ``parameters``, naming the fix."""
    record = synthesis_record(root)
    if interrupted(record):
        raise ValueError(
            f"the synthetic '{record.get('dataset', dataset)}' data at {root} were being written when "
            f"the writer was interrupted, so some files are missing; delete {root} and write them again "
            "(data.synthesize=true does it by itself)"
        )
    if other_parameters(record, parameters):
        raise ValueError(
            f"the synthetic '{dataset}' data at {root} were made with data.synthetic="
            f"{record['parameters']}, not {_plain(parameters)}; use another data.root, or delete "
            f"{root} to write them anew"
        )


def _plain(value: Any) -> Any:
    """JSON-comparable form (tuples → lists), as the record holds it after a round trip."""
    return json.loads(json.dumps(value, default=str)) if value is not None else None
