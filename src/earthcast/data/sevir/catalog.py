"""``CATALOG.csv`` → event table, and date splits.

The SEVIR catalogue has one row per (event, image type). Event selection follows SPEC §3.1:

1. keep the rows of the requested ``img_type`` (``"vil"``);
2. drop every id that appears more than once (all copies);
3. by default keep only complete events (``pct_missing == 0``);
4. keep the events whose ``time_utc`` lies in the split interval ``(start, end]``; ``None`` leaves a
   side open. Named splits: train ``t ≤ 2019-01-01``, val ``2019-01-01 < t ≤ 2019-06-01``, test
   ``t > 2019-06-01``.

Each step is a small function; ``load_events`` chains them and, when nothing survives, says
how many rows each step removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from earthcast.data.sevir.constants import CATALOG_COLUMNS, CATALOG_NAME, IMG_TYPE, SPLITS

__all__ = [
    "DateLike",
    "SplitLike",
    "frames_per_event",
    "load_events",
    "read_catalog",
    "resolve_split",
    "select_events",
    "split_by_date",
]

DateLike = str | pd.Timestamp | None
SplitLike = str | tuple[DateLike, DateLike]


def read_catalog(root: str | Path) -> pd.DataFrame:
    """Read and validate ``CATALOG.csv``.

    Args:
        root: the SEVIR root directory (holding ``CATALOG.csv`` and ``data/``) or the CSV itself.

    Returns:
        The whole catalogue with ``time_utc`` parsed to (naive, UTC) timestamps.

    Raises:
        FileNotFoundError: no catalogue at that place.
        ValueError: columns are missing or ``time_utc`` cannot be parsed.
    """
    path = Path(root)
    if path.is_dir():
        path = path / CATALOG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"SEVIR catalogue not found: {path}. Expected <root>/{CATALOG_NAME} next to <root>/data/ "
            "(download with `aws s3 cp --no-sign-request s3://sevir/CATALOG.csv <root>/` or write a "
            "synthetic copy with earthcast.data.sevir.synth.write_synthetic_sevir)."
        )
    catalog = pd.read_csv(path, low_memory=False)
    missing = [c for c in CATALOG_COLUMNS if c not in catalog.columns]
    if missing:
        raise ValueError(
            f"{path} lacks the column(s) {missing}; a SEVIR catalogue has {list(CATALOG_COLUMNS)} "
            f"(found {list(catalog.columns)})"
        )
    try:
        times = pd.to_datetime(catalog["time_utc"], utc=True, format="ISO8601")
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: column 'time_utc' holds values that are not dates: {err}") from err
    catalog["time_utc"] = times.dt.tz_localize(None)
    return catalog


def select_events(
    catalog: pd.DataFrame, img_type: str = IMG_TYPE, complete_only: bool = True
) -> pd.DataFrame:
    """Steps 1–3: rows of ``img_type``, no duplicated ids, optionally ``pct_missing == 0`` only."""
    events = catalog[catalog["img_type"] == img_type]
    events = events[~events["id"].duplicated(keep=False)]
    if complete_only:
        events = events[events["pct_missing"] == 0]
    return events


def resolve_split(split: SplitLike) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """Turn a split name (``"train"``, ``"val"``, ``"test"``) or a ``(start, end)`` pair into timestamps."""
    if isinstance(split, str):
        if split.lower() not in SPLITS:
            raise ValueError(f"unknown SEVIR split '{split}'. Valid names: {', '.join(SPLITS)}")
        start, end = SPLITS[split.lower()]
    elif isinstance(split, Sequence) and len(split) == 2:
        start, end = split
    else:
        raise ValueError(f"split must be a name in {list(SPLITS)} or a (start, end) pair, got {split!r}")
    bounds = tuple(None if d is None else pd.Timestamp(d) for d in (start, end))
    if bounds[0] is not None and bounds[1] is not None and bounds[0] >= bounds[1]:
        raise ValueError(f"split start {bounds[0]} must come before its end {bounds[1]}")
    return bounds[0], bounds[1]


def split_by_date(events: pd.DataFrame, start: DateLike = None, end: DateLike = None) -> pd.DataFrame:
    """Step 4: events with ``start < time_utc <= end`` (``None`` = unbounded)."""
    keep = pd.Series(True, index=events.index)
    if start is not None:
        keep &= events["time_utc"] > pd.Timestamp(start)
    if end is not None:
        keep &= events["time_utc"] <= pd.Timestamp(end)
    return events[keep]


def load_events(
    root: str | Path,
    split: SplitLike = "train",
    img_type: str = IMG_TYPE,
    complete_only: bool = True,
) -> pd.DataFrame:
    """Catalogue → the events of one split, sorted by time, with a fresh ``RangeIndex``.

    Raises:
        ValueError: no event survives the filters (the message counts what each step removed).
    """
    catalog = read_catalog(root)
    start, end = resolve_split(split)
    of_type = catalog[catalog["img_type"] == img_type]
    selected = select_events(catalog, img_type, complete_only)
    events = split_by_date(selected, start, end)
    if events.empty:
        raise ValueError(
            f"no SEVIR event left for split {split!r} (time_utc in ({start}, {end}]): catalogue rows "
            f"{len(catalog)}, img_type={img_type!r}: {len(of_type)}, after dropping duplicated ids"
            f"{' and pct_missing > 0' if complete_only else ''}: {len(selected)}, in the date range: 0"
        )
    return events.sort_values(["time_utc", "id"]).reset_index(drop=True)


def frames_per_event(events: pd.DataFrame) -> int:
    """Frames per event, read from ``minute_offsets`` (colon-separated, one entry per frame).

    Raises:
        ValueError: the events do not all have the same number of frames.
    """
    counts = events["minute_offsets"].astype(str).str.count(":") + 1
    unique = sorted(set(counts.tolist()))
    if len(unique) != 1:
        raise ValueError(f"events differ in frame count ({unique}); pass frames= explicitly")
    return int(unique[0])
