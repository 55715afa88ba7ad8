"""The regular step of a time coordinate, and where it breaks (gaps), for any calendar.

Frames are regular when consecutive times differ by one fixed duration (5-minute radar, daily
fields) or by a fixed number of calendar months (monthly SST: 28 to 31 days apart, yet without
gaps). ``regular_steps`` tries both and keeps the reading with fewer breaks, for NumPy
``datetime64`` and for ``cftime`` objects (non-standard model calendars) alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr


@dataclass(frozen=True)
class TimeSteps:
    """``breaks[i]``: frame ``i`` does not follow frame ``i − 1`` by the regular step (``breaks[0]``
    is False); ``duration``: the step as ``timedelta64`` when it is a fixed duration, ``None`` for
    calendar months."""

    breaks: list[bool]
    duration: np.timedelta64 | None


def is_time_axis(times: np.ndarray | None) -> bool:
    """``datetime64`` values, or objects that subtract to durations (``cftime`` dates)."""
    if times is None or len(times) < 2:
        return False
    if np.issubdtype(times.dtype, np.datetime64):
        return True
    return times.dtype == object and hasattr(times[0], "year") and hasattr(times[0], "month")


def regular_steps(times: np.ndarray) -> TimeSteps:
    """The regular step of ``times`` (see the module docstring) and the frames that break it."""
    if times.dtype == object:  # cftime dates subtract to datetime.timedelta
        steps = np.array([np.timedelta64(d, "us") for d in np.diff(times)])
    else:
        steps = np.diff(times)
    duration = _mode(steps)
    fixed = steps != duration
    if fixed.any() and duration >= _SHORTEST_MONTH:
        by_month = _month_breaks(times)
        if by_month.sum() < fixed.sum():
            return TimeSteps([False, *by_month.tolist()], None)
    return TimeSteps([False, *fixed.tolist()], np.timedelta64(duration))


_SHORTEST_MONTH = np.timedelta64(28, "D")
_DAY_SLACK = 3  # mid-month stamps (15th, 16th 12:00) wander by a day or two


def _mode(values: np.ndarray):
    unique, counts = np.unique(values, return_counts=True)
    return unique[np.argmax(counts)]


def _month_breaks(times: np.ndarray) -> np.ndarray:
    """Breaks of a series read as a fixed number of calendar months per step."""
    index = pd.DatetimeIndex(times) if np.issubdtype(times.dtype, np.datetime64) else xr.CFTimeIndex(times)
    months = np.diff(np.asarray(index.year) * 12 + np.asarray(index.month))
    days = np.abs(np.diff(np.asarray(index.day)))
    return (months != _mode(months)) | (days > _DAY_SLACK)
