"""A synthetic SEVIR VIL store in exactly the real on-disk layout, for tests and offline demos.

``write_synthetic_sevir`` writes ``CATALOG.csv`` (every real column, SPEC §3.1) and half-year files
``data/vil/<year>/SEVIR_VIL_STORMEVENTS_<YEAR>_<MMDD>_<MMDD>.h5`` holding ``id`` (bytes) and
``vil`` ``(N, size, size, frames)`` uint8, so the real loader reads it unchanged.

Each event holds a few storm cells: elliptical Gaussian envelopes (stratiform, encoded ~50–100)
with a narrower convective core that reaches past the 181 and 219 thresholds. Cells drift with
a shared advection velocity plus a small per-cell deviation, and grow and decay over a Gaussian
life cycle (their size follows their intensity). A little multiplicative noise roughens them.
Values are 0–254, 255 only in the missing-data wedge of the ``n_incomplete`` extra events
(``pct_missing > 0``, which the default catalogue filter drops).

Event times are spread evenly from June of the first year to September of the last one, so
with the default ``years=(2018, 2019)`` the train, val and test date splits are all non-empty.
The patch keeps its real 384 km extent whatever ``size`` is (coarser pixels when smaller).
Files are written to a temporary name and renamed, so an interrupted run leaves no partial file;
the catalogue is written last.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from earthcast.data.sevir.constants import (
    CATALOG_COLUMNS,
    CATALOG_NAME,
    DATA_DIRNAME,
    FRAME_INTERVAL_MINUTES,
    IMG_TYPE,
    SEVIR_PROJ,
    VIL_MAX_VALID,
    VIL_MISSING,
    VIL_SIZE,
)

__all__ = ["storm_event", "write_synthetic_sevir"]

_EVENT_TYPES = ("Thunderstorm Wind", "Hail", "Flash Flood", "Heavy Rain", "Tornado")
_PATCH_M = float(VIL_SIZE * 1000)  # real extent: 384 km


def storm_event(rng: np.random.Generator, size: int, frames: int) -> np.ndarray:
    """One synthetic VIL event in SEVIR storage order ``(H, W, T)``, uint8 codes 0–254."""
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size  # domain fractions
    t = np.arange(frames, dtype=np.float32)
    drift = rng.normal(0.0, 0.006, size=2)  # shared advection, domain fraction per frame
    field = np.zeros((frames, size, size), dtype=np.float32)
    for cell in range(int(rng.integers(2, 6))):
        centre = rng.uniform(0.25, 0.75, size=2) + np.outer(t - frames / 2, drift + rng.normal(0, 0.001, 2))
        life = np.exp(-(((t - rng.uniform(0.2, 0.8) * frames) / (rng.uniform(0.3, 0.6) * frames)) ** 2))
        sigma = rng.uniform(0.04, 0.08) * (0.6 + 0.6 * life)  # grows with intensity
        aspect, theta = rng.uniform(1.2, 2.5), rng.uniform(0.0, np.pi)
        dy = yy[None] - centre[:, 0, None, None]  # (t, h, w)
        dx = xx[None] - centre[:, 1, None, None]
        along = dx * np.cos(theta) + dy * np.sin(theta)
        across = -dx * np.sin(theta) + dy * np.cos(theta)
        d2 = (along**2 / aspect + across**2 * aspect) / sigma[:, None, None] ** 2
        stratiform = rng.uniform(50.0, 100.0)
        core = rng.uniform(170.0, 200.0) if cell == 0 else rng.uniform(60.0, 180.0)  # cell 0 passes 219
        field += life[:, None, None] * (stratiform * np.exp(-d2 / 2) + core * np.exp(-d2 / (2 * 0.3**2)))
    texture = 1.0 + 0.08 * rng.standard_normal(field.shape, dtype=np.float32)
    field = np.clip(np.rint(field * texture), 0, VIL_MAX_VALID).astype(np.uint8)
    return np.ascontiguousarray(field.transpose(1, 2, 0))  # (t, h, w) -> storage (h, w, t)


def _event_times(n: int, years: tuple[int, int], rng: np.random.Generator) -> list[pd.Timestamp]:
    """``n`` times spread evenly from June of ``years[0]`` to September of ``years[-1]``."""
    first, last = pd.Timestamp(years[0], 6, 1, 12), pd.Timestamp(years[-1], 9, 30, 12)
    if last <= first:
        raise ValueError(f"years must span at least one summer, got {years}")
    span = (last - first) / max(n - 1, 1)
    jitter = rng.integers(-180, 181, size=n) * pd.Timedelta(minutes=FRAME_INTERVAL_MINUTES)
    return [first + i * span + j for i, j in zip(range(n), jitter)]


def _file_name(time: pd.Timestamp) -> str:
    half = "0101_0630" if time.month <= 6 else "0701_1231"
    return f"{IMG_TYPE}/{time.year}/SEVIR_VIL_STORMEVENTS_{time.year}_{half}.h5"


def _catalog_row(
    event_id: str, file_name: str, index: int, time: pd.Timestamp, vil: np.ndarray, rng: np.random.Generator
) -> dict[str, object]:
    frames, size = vil.shape[-1], vil.shape[0]
    offsets = (np.arange(frames) - frames // 2) * FRAME_INTERVAL_MINUTES
    valid = vil[vil != VIL_MISSING]
    lat, lon = rng.uniform(30.0, 45.0), rng.uniform(-104.0, -82.0)
    half_lat = _PATCH_M / 2 / 111_000.0
    half_lon = half_lat / np.cos(np.deg2rad(lat))
    return {
        "id": event_id,
        "file_name": file_name,
        "file_index": index,
        "img_type": IMG_TYPE,
        "time_utc": time.strftime("%Y-%m-%d %H:%M:%S"),
        "minute_offsets": ":".join(str(int(m)) for m in offsets),
        "episode_id": float(rng.integers(100_000, 160_000)),
        "event_id": float(rng.integers(700_000, 900_000)),
        "event_type": str(rng.choice(_EVENT_TYPES)),
        "llcrnrlat": lat - half_lat,
        "llcrnrlon": lon - half_lon,
        "urcrnrlat": lat + half_lat,
        "urcrnrlon": lon + half_lon,
        "proj": SEVIR_PROJ,
        "size_x": size,
        "size_y": size,
        "height_m": _PATCH_M,
        "width_m": _PATCH_M,
        "data_min": int(valid.min()) if valid.size else 0,
        "data_max": int(valid.max()) if valid.size else 0,
        "pct_missing": 100.0 * float((vil == VIL_MISSING).mean()),
    }


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_synthetic_sevir(
    out_dir: str | Path,
    n_events: int = 24,
    size: int = 384,
    frames: int = 49,
    seed: int = 0,
    years: tuple[int, int] = (2018, 2019),
    n_incomplete: int = 1,
    progress: bool = True,
) -> Path:
    """Write a synthetic SEVIR VIL store and return its root (``out_dir``).

    Args:
        out_dir: root to create; receives ``CATALOG.csv`` and ``data/vil/<year>/*.h5``.
        n_events: complete events (``pct_missing == 0``), spread over time.
        size: pixels per side (real: 384; a multiple of 3 keeps the SEVIR-LR pooling exact).
        frames: frames per event (real: 49, 5 min apart).
        seed: seed of everything random; the same arguments give the same bytes of data.
        years: first and last year; times run from June of the first to September of the last.
        n_incomplete: extra events with a block of missing pixels (code 255, ``pct_missing > 0``).
        progress: show a tqdm bar.
    """
    if n_events < 1 or n_incomplete < 0 or size < 8 or frames < 2:
        raise ValueError("need n_events >= 1, n_incomplete >= 0, size >= 8 and frames >= 2")
    root = Path(out_dir)
    rng = np.random.default_rng(seed)
    total = n_events + n_incomplete
    times = _event_times(total, years, rng)
    incomplete = set(rng.choice(total, size=n_incomplete, replace=False).tolist()) if n_incomplete else set()
    event_seeds = np.random.SeedSequence(seed).spawn(total)
    order = sorted(range(total), key=lambda i: times[i])
    by_file: dict[str, list[int]] = {}
    for i in order:
        by_file.setdefault(_file_name(times[i]), []).append(i)

    rows: list[dict[str, object]] = []
    with tqdm(total=total, desc="synthetic SEVIR", unit="event", disable=not progress) as bar:
        for file_name, members in by_file.items():
            path = root / DATA_DIRNAME / file_name
            with _atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
                ids = [f"S{600_000 + i}" for i in members]
                h5.create_dataset("id", data=np.array(ids, dtype="S"))
                vil = h5.create_dataset(
                    IMG_TYPE,
                    shape=(len(members), size, size, frames),
                    dtype=np.uint8,
                    chunks=(1, size, size, frames),
                )
                for index, i in enumerate(members):
                    event_rng = np.random.default_rng(event_seeds[i])
                    data = storm_event(event_rng, size, frames)
                    if i in incomplete:
                        data[: size // 4, :, frames // 3 : frames // 2] = VIL_MISSING  # radar outage wedge
                    vil[index] = data
                    rows.append(_catalog_row(ids[index], file_name, index, times[i], data, event_rng))
                    bar.update()

    catalog = pd.DataFrame(rows, columns=list(CATALOG_COLUMNS)).sort_values("time_utc")
    with _atomic_path(root / CATALOG_NAME) as tmp:
        catalog.to_csv(tmp, index=False)
    return root
