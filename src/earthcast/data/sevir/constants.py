"""SEVIR VIL constants: encoding, geometry, default windows, splits and benchmark thresholds.

Every number cites its source in SPEC.md (§3.1 SEVIR, §3.2 SEVIR-LR, §4.1 metrics), which in
turn cites the SEVIR tutorial notebook (MIT-AI-Accelerator/eie-sevir) and the reference loaders.
"""

from __future__ import annotations

import numpy as np

# --- encoding (SPEC §3.1 "VIL encoding") -------------------------------------------------------
VIL_MISSING: int = 255
"""Encoded value marking a missing pixel."""
VIL_MAX_VALID: int = 254
"""Largest encoded value of a valid pixel (valid pixels are 0–254)."""
VIL_SCALE: float = 255.0
"""Divisor of the "01" scaling ``x / 255`` (no offset; metrics map back with ×255)."""

# --- geometry and timing (SPEC §3.1) -----------------------------------------------------------
FRAME_INTERVAL_MINUTES: int = 5
"""Minutes between two SEVIR frames."""
FRAMES_PER_EVENT: int = 49
"""Frames per 4-hour event."""
VIL_SIZE: int = 384
"""Pixels per side of a VIL patch (1 km pixels, 384 km × 384 km)."""
IMG_TYPE: str = "vil"
EVENT_TYPES: tuple[str, ...] = ("STORMEVENTS", "RANDOMEVENTS", "ALLEVENTS")
"""The ``<EVENTTYPE>`` part of the HDF5 file names."""

CATALOG_NAME: str = "CATALOG.csv"
DATA_DIRNAME: str = "data"
"""``file_name`` in the catalogue is relative to ``<root>/data``."""
CATALOG_COLUMNS: tuple[str, ...] = (
    "id",
    "file_name",
    "file_index",
    "img_type",
    "time_utc",
    "minute_offsets",
    "episode_id",
    "event_id",
    "event_type",
    "llcrnrlat",
    "llcrnrlon",
    "urcrnrlat",
    "urcrnrlon",
    "proj",
    "size_x",
    "size_y",
    "height_m",
    "width_m",
    "data_min",
    "data_max",
    "pct_missing",
)
"""Columns of ``CATALOG.csv``, in file order (SPEC §3.1)."""
SEVIR_PROJ: str = "+proj=laea +lat_0=38 +lon_0=-98 +units=m +a=6370997.0 +ellps=sphere"
"""Lambert azimuthal equal-area projection centred at (38°N, 98°W) (SPEC §3.1)."""

# --- windows (SPEC §3.1 "Sample construction", §3.2) -------------------------------------------
SEVIR_IN_LEN, SEVIR_OUT_LEN, SEVIR_STRIDE = 13, 12, 12
"""Earthformer SEVIR: 13 input frames (65 min) → 12 target frames (60 min), 3 windows per event."""
SEVIRLR_IN_LEN, SEVIRLR_OUT_LEN, SEVIRLR_STRIDE = 7, 6, 6
"""PreDiff SEVIR-LR: 7 → 6 frames at 10 min, 3 windows per event."""
SEVIRLR_TIME_STRIDE: int = 2
"""SEVIR-LR keeps every 2nd frame (49 → 25 frames, 10-min spacing)."""
SEVIRLR_POOL: int = 3
"""SEVIR-LR spatial 3×3 max pooling (384 → 128)."""

# --- date splits (SPEC §3.1 "Splits"); intervals are (start, end], None = open -----------------
TRAIN_END: str = "2019-01-01"
VAL_END: str = "2019-06-01"
SPLITS: dict[str, tuple[str | None, str | None]] = {
    "train": (None, TRAIN_END),
    "val": (TRAIN_END, VAL_END),
    "test": (VAL_END, None),
}

# --- benchmark thresholds (SPEC §3.1, §4.1) ----------------------------------------------------
VIL_THRESHOLDS: tuple[int, ...] = (16, 74, 133, 160, 181, 219)
"""CSI/POD/SUCR thresholds in encoded units (≈ 0.15, 0.78, 3.53, 7.07, 12.14, 32.23 kg/m²)."""


def vil_to_kg_m2(encoded: np.ndarray) -> np.ndarray:
    """Decode VIL pixels (0–254; 255 → NaN) to kg/m² with the SEVIR piecewise formula.

    ``0`` if X ≤ 5; ``(X − 2) / 90.66`` if 5 < X ≤ 18; ``exp((X − 83.9) / 38.9)`` if X > 18.
    Accepts integer codes or "raw"-scale floats (0–255).
    """
    x = np.asarray(encoded, dtype=np.float64)
    with np.errstate(over="ignore"):
        out = np.where(x <= 5, 0.0, np.where(x <= 18, (x - 2.0) / 90.66, np.exp((x - 83.9) / 38.9)))
    return np.where(x == VIL_MISSING, np.nan, out)
