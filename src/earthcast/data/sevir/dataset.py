"""Map-style dataset of SEVIR VIL windows: catalogue → reader → windows → (inputs, targets).

Axes: ``t`` time, ``h``/``w`` space, ``c`` channel (1 for VIL); ``p1``/``p2`` pooling block.

A sample is one window of one event. The index is flat over ``(event, window start)``, so
shuffling and worker sharding are left to the ``DataLoader``. Each item is::

    {"inputs":  float32 (in_len,  H, W, 1),
     "targets": float32 (out_len, H, W, 1),
     "meta":    {"event_id", "file_name", "file_index", "time_utc", "start", "window"}}

where ``start`` is the window's first frame in the event's native 5-min frame numbering.

Variants (SPEC §3.1, §3.2):

===========  ===========================  =====================  =====================
variant      frames used                  space                  default in/out/stride
===========  ===========================  =====================  =====================
``sevir``    all (5 min)                  native (384)           13 / 12 / 12
``sevirlr``  every 2nd (10 min)           3×3 max pool (→ 128)   7 / 6 / 6
===========  ===========================  =====================  =====================

Both give 3 windows per 49-frame event. SEVIR-LR is derived on the fly from full-resolution
files; files that are already downsampled on disk are read with ``variant="sevir"`` and explicit
``in_len=7, out_len=6, stride=6``. The frame count is read from the catalogue's
``minute_offsets`` (or given as ``frames=``), so stores with other event lengths work as well.

Scaling and missing pixels (code 255):

* ``scale="01"`` divides by 255 (the Earthformer/PreDiff convention); ``scale="raw"`` keeps 0–255.
* ``missing="nan"`` (default) turns code-255 pixels into NaN, so they can never be mistaken for
  the strongest storms; ``"zero"`` sets them to 0; ``"keep"`` leaves them as 255 (1.0 in "01").
  With the default ``complete_only=True`` the catalogue keeps only events with
  ``pct_missing == 0``, so missing pixels only appear when ``complete_only=False``.
  SEVIR-LR pools the raw codes, so a pooled pixel is missing when any pixel of its 3×3 block is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from einops import rearrange, reduce
from torch.utils.data import Dataset

from earthcast.data.sevir.catalog import SplitLike, frames_per_event, load_events
from earthcast.data.sevir.constants import (
    DATA_DIRNAME,
    FRAME_INTERVAL_MINUTES,
    IMG_TYPE,
    SEVIR_IN_LEN,
    SEVIR_OUT_LEN,
    SEVIR_STRIDE,
    SEVIRLR_IN_LEN,
    SEVIRLR_OUT_LEN,
    SEVIRLR_POOL,
    SEVIRLR_STRIDE,
    SEVIRLR_TIME_STRIDE,
    VIL_MISSING,
    VIL_SCALE,
    VIL_THRESHOLDS,
)
from earthcast.data.sevir.reader import SEVIRReader
from earthcast.data.windows import window_starts

__all__ = ["VARIANTS", "SEVIRDataset", "VariantSpec"]

Variant = Literal["sevir", "sevirlr"]
Scale = Literal["01", "raw"]
Missing = Literal["nan", "zero", "keep"]


@dataclass(frozen=True)
class VariantSpec:
    """Defaults of one SEVIR layout variant.

    Attributes:
        in_len, out_len, stride: window defaults, in frames of this variant.
        time_stride: keep every ``time_stride``-th native frame.
        pool: side of the spatial max-pooling block (1 = native resolution).
    """

    in_len: int
    out_len: int
    stride: int
    time_stride: int = 1
    pool: int = 1


VARIANTS: dict[str, VariantSpec] = {
    "sevir": VariantSpec(SEVIR_IN_LEN, SEVIR_OUT_LEN, SEVIR_STRIDE),
    "sevirlr": VariantSpec(
        SEVIRLR_IN_LEN, SEVIRLR_OUT_LEN, SEVIRLR_STRIDE, SEVIRLR_TIME_STRIDE, SEVIRLR_POOL
    ),
}


class SEVIRDataset(Dataset):
    """Windows of SEVIR VIL events as ``(T, H, W, 1)`` float32 tensors.

    Args:
        root: SEVIR root holding ``CATALOG.csv`` and ``data/vil/<year>/*.h5``.
        split: ``"train"``, ``"val"``, ``"test"`` (SPEC §3.1 dates) or a ``(start, end)`` pair of
            dates selecting ``start < time_utc <= end`` (``None`` = open side).
        variant: ``"sevir"`` or ``"sevirlr"`` (see the module docstring).
        in_len, out_len, stride: window shape in frames of the variant; ``None`` = variant default.
            ``seq_len = in_len + out_len``.
        scale: ``"01"`` (x / 255) or ``"raw"`` (0–255).
        missing: what code-255 pixels become: ``"nan"``, ``"zero"`` or ``"keep"``.
        complete_only: keep only catalogue events with ``pct_missing == 0`` (SPEC default).
        frames: native frames per event; ``None`` reads it from ``minute_offsets``.
        img_type: catalogue image type and HDF5 dataset name.

    No HDF5 file is opened here; each worker opens its own on first access.
    """

    def __init__(
        self,
        root: str | Path,
        split: SplitLike = "train",
        *,
        variant: Variant = "sevir",
        in_len: int | None = None,
        out_len: int | None = None,
        stride: int | None = None,
        scale: Scale = "01",
        missing: Missing = "nan",
        complete_only: bool = True,
        frames: int | None = None,
        img_type: str = IMG_TYPE,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown SEVIR variant '{variant}'. Valid names: {', '.join(VARIANTS)}")
        if scale not in ("01", "raw"):
            raise ValueError(f"scale must be '01' or 'raw', got {scale!r}")
        if missing not in ("nan", "zero", "keep"):
            raise ValueError(f"missing must be 'nan', 'zero' or 'keep', got {missing!r}")
        spec = VARIANTS[variant]
        self.root, self.split, self.variant = Path(root), split, variant
        self.in_len = spec.in_len if in_len is None else in_len
        self.out_len = spec.out_len if out_len is None else out_len
        self.stride = spec.stride if stride is None else stride
        if self.in_len < 1 or self.out_len < 1:
            raise ValueError(f"in_len and out_len must be >= 1, got {self.in_len} and {self.out_len}")
        self.seq_len = self.in_len + self.out_len
        self.time_stride, self.pool = spec.time_stride, spec.pool
        self.scale, self.missing = scale, missing

        self.events = load_events(root, split, img_type, complete_only)
        self.native_frames = frames if frames is not None else frames_per_event(self.events)
        self.frames = math.ceil(self.native_frames / self.time_stride)
        self.starts = window_starts(self.frames, self.seq_len, self.stride)
        if not self.starts:
            raise ValueError(
                f"a window of {self.seq_len} frames (in_len {self.in_len} + out_len {self.out_len}) does "
                f"not fit in the {self.frames} frames per event of variant '{variant}'"
            )
        self._check_files()
        self.reader = SEVIRReader(root, img_type)
        self._file_names = self.events["file_name"].astype(str).tolist()
        self._file_index = self.events["file_index"].astype(int).tolist()
        self._ids = self.events["id"].astype(str).tolist()
        self._times = [t.isoformat() for t in self.events["time_utc"]]

    @property
    def windows_per_event(self) -> int:
        return len(self.starts)

    @property
    def frame_interval_minutes(self) -> int:
        return FRAME_INTERVAL_MINUTES * self.time_stride

    @property
    def contract(self) -> dict[str, Any]:
        """What a model trained on this dataset assumes about its inputs (stored in checkpoints)."""
        return {
            "dataset": self.variant,
            "in_len": self.in_len,
            "out_len": self.out_len,
            "stride": self.stride,
            "frame_interval_minutes": self.frame_interval_minutes,
            "scale": self.scale,
            "scale_factor": VIL_SCALE if self.scale == "01" else 1.0,
            "missing": self.missing,
            "thresholds": VIL_THRESHOLDS,
        }

    def __len__(self) -> int:
        return len(self.events) * len(self.starts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} windows")
        event, window = divmod(index % len(self), len(self.starts))
        frames = self._read_window(event, self.starts[window])  # (seq_len, H', W', 1) float32
        tensor = torch.from_numpy(frames)
        meta = {
            "event_id": self._ids[event],
            "file_name": self._file_names[event],
            "file_index": self._file_index[event],
            "time_utc": self._times[event],
            "start": self.starts[window] * self.time_stride,
            "window": window,
        }
        return {"inputs": tensor[: self.in_len], "targets": tensor[self.in_len :], "meta": meta}

    def _read_window(self, event: int, start: int) -> np.ndarray:
        """Native frames → variant frames: (H, W, T) uint8 → (seq_len, H/pool, W/pool, 1) float32."""
        t0 = start * self.time_stride
        t1 = t0 + (self.seq_len - 1) * self.time_stride + 1
        raw = self.reader.read(self._file_names[event], self._file_index[event], t0, t1)
        raw = raw[:, :, :: self.time_stride]  # (H, W, seq_len)
        if raw.shape[-1] != self.seq_len:
            path = self.reader.path(self._file_names[event])
            raise ValueError(
                f"event {self._ids[event]} (index {self._file_index[event]}) in {path} has fewer than the "
                f"{self.native_frames} frames per event given by the catalogue (frames={self.native_frames})"
            )
        if self.pool > 1:
            raw = self._max_pool(raw)  # (H/pool, W/pool, seq_len)
        frames = rearrange(raw, "h w t -> t h w 1").astype(np.float32)
        is_missing = frames == VIL_MISSING
        if self.scale == "01":
            frames /= VIL_SCALE
        if self.missing != "keep" and is_missing.any():
            frames[is_missing] = np.nan if self.missing == "nan" else 0.0
        return frames

    def _max_pool(self, raw: np.ndarray) -> np.ndarray:
        height, width = raw.shape[:2]
        if height % self.pool or width % self.pool:
            raise ValueError(
                f"variant '{self.variant}' max-pools {self.pool}×{self.pool} blocks, but frames are "
                f"{height}×{width}; use a size divisible by {self.pool} (e.g. 96, 192, 384)"
            )
        return reduce(raw, "(h p1) (w p2) t -> h w t", "max", p1=self.pool, p2=self.pool)

    def _check_files(self) -> None:
        data_dir = self.root / DATA_DIRNAME
        missing = [
            f for f in sorted(set(self.events["file_name"].astype(str))) if not (data_dir / f).is_file()
        ]
        if missing:
            shown = ", ".join(str(data_dir / f) for f in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise FileNotFoundError(f"SEVIR files listed in the catalogue are missing: {shown}{more}")
