"""Atomic file writing: nothing half-written is ever left at the destination path.

:func:`atomic_path` writes beside the destination under a hidden temporary name
(``.<name>.<8 random characters>.tmp``) and renames it into place when the writing succeeds:

* the result gets the mode a normally created file or folder would have (``0o666`` / ``0o777``
  less the umask), not the ``0600`` of ``tempfile.mkstemp``, so colleagues can read shared
  checkpoints, forecasts and data;
* a folder (Zarr store) that is replaced is first renamed aside (``.<name>.<random>.old.tmp``), the
  new one renamed in, and only then the old one deleted: a kill at any moment leaves either the
  old or the new store at the path, never a half-deleted one that readers would open;
* temporary files of the same destination left by killed writers are removed when it is written
  again: set-aside old stores at once, other temporaries once nothing in them has changed for
  :data:`STALE_TEMP_AGE_S` (an hour), so that a concurrent writer's are kept;
* errors name the destination, not the hidden temporary name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STALE_TEMP_AGE_S = 3600.0
"""A temporary sibling untouched for this long (newest modification time of anything in it) is a
killed writer's and removed; a live writer touches its output far more often than this."""

_TEMP_SUFFIX = ".tmp"
_ASIDE_SUFFIX = ".old.tmp"
_RANDOM = "[a-z0-9_]{8}"  # tempfile's random part: 8 of [a-z0-9_]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place, else delete it.

    ``directory=True`` is for outputs that are folders (Zarr stores): the temporary path is not
    created beforehand and an existing destination is replaced (set aside first, deleted last).
    A folder at ``path`` when a file is to be written is refused before any work
    (``IsADirectoryError``). See the module docstring for modes and left-over temporaries.
    """
    path = Path(path)
    if not directory and path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a directory (a file is to be written there)", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _make_temp(path)
    remove_stale_temps(path, keep=tmp_path)
    if directory:
        tmp_path.unlink()
    try:
        yield tmp_path
        _set_default_mode(tmp_path, directory)
        if directory:
            _replace_folder(tmp_path, path)
        else:
            os.replace(tmp_path, path)
    except OSError as err:
        _name_destination(err, tmp_path, path)
        raise
    finally:
        _remove(tmp_path)


def _make_temp(path: Path) -> Path:
    """A new empty temporary file beside ``path``; a failure names ``path`` (its folder is
    what cannot be written), not the random name nobody asked for."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMP_SUFFIX, dir=path.parent)
    except OSError as err:
        err.filename = str(path)
        raise
    os.close(fd)
    return Path(tmp)


def _replace_folder(new: Path, path: Path) -> None:
    """Put the folder ``new`` at ``path``: the old content is renamed aside before and deleted
    after, so ``path`` holds a complete store at every moment (or, for an instant, nothing)."""
    if not os.path.lexists(path):
        os.replace(new, path)
        return
    aside = new.with_name(new.name[: -len(_TEMP_SUFFIX)] + _ASIDE_SUFFIX)
    os.replace(path, aside)
    try:
        os.replace(new, path)
    except OSError:
        os.replace(aside, path)  # put the old store back rather than leave nothing
        raise
    _remove(aside, ignore_errors=True)  # a failure leaves a hidden sibling, removed next time


def _name_destination(err: OSError, tmp: Path, path: Path) -> None:
    """Replace the temporary name by the destination's in ``err``'s message and paths, in place
    (the same exception goes on, with its type and traceback)."""
    old, new = str(tmp), str(path)
    for attr in ("filename", "filename2", "strerror"):
        value = getattr(err, attr, None)
        if isinstance(value, str) and old in value:
            setattr(err, attr, value.replace(old, new))
    err.args = tuple(a.replace(old, new) if isinstance(a, str) else a for a in err.args)


# ------------------------------------------------------------------------------------ modes


def _set_default_mode(path: Path, directory: bool) -> None:
    """Give ``path`` the mode ``open``/``mkdir`` would have (``0o666``/``0o777`` less the umask).

    Best effort: a file system without modes (some network/FUSE mounts) refuses ``chmod``, which
    must not fail the writing itself.
    """
    mode = (0o777 if directory else 0o666) & ~current_umask()
    with contextlib.suppress(OSError):
        os.chmod(path, mode)


_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the system allows.

    ``os.umask`` can only be read by setting it, which would briefly give files created by other
    threads a wrong mode; Linux reports it in ``/proc/self/status``. Elsewhere it is set and
    restored under a lock (threads creating files at that instant could still be affected).
    """
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


# ----------------------------------------------------------------------- left-over temporaries


def remove_stale_temps(path: str | os.PathLike, keep: Path | None = None) -> list[Path]:
    """Remove the temporaries of ``path`` that killed writers left beside it; return them.

    Only names :func:`atomic_path` makes for this very ``path`` are considered
    (``.<name>.<random>.tmp`` and ``.<name>.<random>.old.tmp``, not those of ``<name>.zarr`` when
    ``path`` is ``<name>``). A set-aside old store is removed at once (it was being deleted);
    another temporary only once it has not changed for :data:`STALE_TEMP_AGE_S`, since it may be a
    concurrent writer's. Best effort: what cannot be removed stays.
    """
    path = Path(path)
    removed = []
    for candidate in _temps_of(path):
        if candidate == keep:
            continue
        if candidate.name.endswith(_ASIDE_SUFFIX) or _idle_for(candidate) > STALE_TEMP_AGE_S:
            _remove(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def _temps_of(path: Path) -> list[Path]:
    """The temporaries :func:`atomic_path` names for ``path`` that exist beside it."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{_RANDOM}(\.old)?\.tmp")
    try:
        with os.scandir(path.parent) as entries:
            return [path.parent / e.name for e in entries if pattern.fullmatch(e.name)]
    except OSError:
        return []


def _idle_for(path: Path) -> float:
    """Seconds since anything in ``path`` (a file, or a folder's whole tree) last changed; stops
    at the first recent entry, so a live writer's large store is not walked to the end."""
    now, newest = time.time(), 0.0
    with contextlib.suppress(OSError):
        newest = path.lstat().st_mtime
        if path.is_dir() and not path.is_symlink():
            for root, dirs, files in os.walk(path):
                for name in (*dirs, *files):
                    with contextlib.suppress(OSError):
                        newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
                if now - newest <= STALE_TEMP_AGE_S:
                    break
    return now - newest


def _remove(path: Path, ignore_errors: bool = False) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=ignore_errors)
        elif os.path.lexists(path):
            path.unlink()
    except OSError:
        if not ignore_errors:
            raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file + rename."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
