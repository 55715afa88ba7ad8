"""Lazy, per-process access to SEVIR HDF5 files.

HDF5 handles must not cross a ``fork``: a handle opened in the main process and then used in a
``DataLoader`` worker can return garbage or crash. ``SEVIRReader`` therefore opens nothing at
construction; files are opened on first access and cached per process id, so every worker opens
its own handles, and pickling (``spawn`` workers) drops them.

Storage order: ``<root>/data/<file_name>`` holds ``id`` (N,) bytes and ``<img_type>`` of shape
``(N, H, W, T)`` uint8 — time is the last axis (SPEC §3.1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from earthcast.data.sevir.constants import DATA_DIRNAME, IMG_TYPE

__all__ = ["SEVIRReader"]


class SEVIRReader:
    """Reads ``<img_type>[file_index, :, :, t0:t1]`` from the HDF5 files of a SEVIR root.

    Args:
        root: SEVIR root directory; ``file_name`` entries are relative to ``root / "data"``.
        img_type: dataset name inside the files (``"vil"``).
    """

    def __init__(self, root: str | Path, img_type: str = IMG_TYPE) -> None:
        self.data_dir = Path(root) / DATA_DIRNAME
        self.img_type = img_type
        self._pid: int | None = None
        self._handles: dict[str, h5py.File] = {}

    def path(self, file_name: str) -> Path:
        return self.data_dir / file_name

    def read(self, file_name: str, file_index: int, t0: int = 0, t1: int | None = None) -> np.ndarray:
        """One event's frames ``t0:t1`` in storage order ``(H, W, T)``, uint8.

        Raises:
            FileNotFoundError / OSError / KeyError / IndexError: with the file path in the message.
        """
        handle = self._handle(file_name)
        path = self.path(file_name)
        if self.img_type not in handle:
            raise KeyError(f"{path} has no dataset '{self.img_type}' (found {sorted(handle.keys())})")
        data = handle[self.img_type]
        if not 0 <= file_index < data.shape[0]:
            raise IndexError(f"file_index {file_index} out of range for {path} ({data.shape[0]} events)")
        try:
            return np.asarray(data[file_index, :, :, t0:t1])
        except (OSError, ValueError, RuntimeError) as err:
            raise OSError(f"cannot read event {file_index} from SEVIR file {path}: {err}") from err

    def close(self) -> None:
        """Close the handles opened by this process."""
        if self._pid == os.getpid():
            for handle in self._handles.values():
                handle.close()
        self._handles = {}

    def _handle(self, file_name: str) -> h5py.File:
        if self._pid != os.getpid():
            # Handles inherited through fork belong to the parent: forget them without closing.
            self._pid, self._handles = os.getpid(), {}
        if file_name not in self._handles:
            path = self.path(file_name)
            if not path.is_file():
                raise FileNotFoundError(f"SEVIR file listed in the catalogue is missing: {path}")
            try:
                self._handles[file_name] = h5py.File(path, "r")
            except OSError as err:
                raise OSError(
                    f"cannot open SEVIR file {path}: it is truncated, corrupt or not HDF5 ({err}). "
                    "Download it again (aws s3 cp --no-sign-request s3://sevir/data/<file_name>) or "
                    "regenerate the store"
                ) from err
        return self._handles[file_name]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pid"], state["_handles"] = None, {}
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: h5py may already be gone
            pass
