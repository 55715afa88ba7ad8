"""Atomic file writing: nothing half-written is ever left at the destination path."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place, else delete it.

    ``directory=True`` is for outputs that are folders (Zarr stores): the temporary path is not
    created beforehand and an existing destination is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    if directory:
        tmp_path.unlink()
    try:
        yield tmp_path
        if directory and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp_path, path)
    finally:
        _remove(tmp_path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file + rename."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
