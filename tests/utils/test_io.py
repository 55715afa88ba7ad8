"""atomic_path: no partial output at the path at any moment, the umask's modes, killed writers'
temporaries cleaned up (but not a live writer's), errors that name the destination."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from earthcast.utils import io
from earthcast.utils.io import STALE_TEMP_AGE_S, atomic_path, current_umask, remove_stale_temps


def _store(path: Path, name: str, files: int = 3) -> None:
    """A folder of ``files`` files whose content is ``name``."""
    path.mkdir()
    for i in range(files):
        (path / f"chunk{i}").write_text(name)


def _contents(path: Path) -> set[str]:
    return {f.read_text() for f in path.iterdir()}


def test_replacing_a_store_deletes_the_old_one_only_once_the_new_one_is_in_place(tmp_path, monkeypatch):
    """Deleting the old store first left it half-deleted at the path when the writer was killed
    meanwhile, and readers opened it without error (deleted chunks read as NaN)."""
    store = tmp_path / "radar.zarr"
    _store(store, "old")
    seen_at_deletion = []
    real_rmtree = shutil.rmtree

    def killed_while_deleting(path, *args, **kwargs):
        seen_at_deletion.append(_contents(store))
        next(Path(path).iterdir()).unlink()  # one file of the old store gone, then the kill
        raise KeyboardInterrupt

    monkeypatch.setattr(io.shutil, "rmtree", killed_while_deleting)
    with pytest.raises(KeyboardInterrupt), atomic_path(store, directory=True) as tmp:
        _store(tmp, "new")
    assert seen_at_deletion == [{"new"}]  # the old store was deleted after the new one was in place
    assert _contents(store) == {"new"} and len(list(store.iterdir())) == 3
    monkeypatch.setattr(io.shutil, "rmtree", real_rmtree)
    with atomic_path(store, directory=True) as tmp:  # the next writing removes the set-aside remains
        _store(tmp, "newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["radar.zarr"] and _contents(store) == {"newer"}


def test_a_failed_writing_keeps_the_old_store(tmp_path):
    store = tmp_path / "radar.zarr"
    _store(store, "old")
    with pytest.raises(RuntimeError), atomic_path(store, directory=True) as tmp:
        _store(tmp, "new")
        raise RuntimeError("disk full")
    assert _contents(store) == {"old"} and [p.name for p in tmp_path.iterdir()] == ["radar.zarr"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002], ids=["022", "027", "002"])
def test_outputs_get_the_umask_modes_not_mkstemps_0600(tmp_path, umask):
    """mkstemp's 0600 made shared checkpoints, forecasts and data unreadable for colleagues."""
    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        with atomic_path(tmp_path / "forecast.nc") as tmp:
            tmp.write_text("x")
        with atomic_path(tmp_path / "store.zarr", directory=True) as tmp:
            tmp.mkdir(mode=0o700)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "forecast.nc").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "store.zarr").stat().st_mode) == 0o777 & ~umask


def test_current_umask_leaves_the_umask_unchanged():
    before = os.umask(0o022)
    os.umask(before)
    assert current_umask() == before
    after = os.umask(before)
    assert after == before


def _age(path: Path, seconds: float) -> None:
    """Set the modification time of ``path`` and everything in it ``seconds`` back."""
    stamp = time.time() - seconds
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        os.utime(p, (stamp, stamp))


def test_killed_writers_temporaries_are_removed_but_not_a_live_writers(tmp_path):
    old = STALE_TEMP_AGE_S + 60
    stale_file = tmp_path / ".out.nc.abcd1234.tmp"
    stale_file.write_text("killed writer")
    _age(stale_file, old)
    stale_store = tmp_path / ".out.nc.efgh5678.tmp"
    _store(stale_store, "killed writer")
    _age(stale_store, old)
    live_file = tmp_path / ".out.nc.live0001.tmp"  # a concurrent writer's, written just now
    live_file.write_text("live writer")
    live_store = tmp_path / ".out.nc.live0002.tmp"  # old folders, but a chunk written just now
    _store(live_store, "live writer")
    _age(live_store, old)
    (live_store / "chunk9").write_text("live writer")
    aside = tmp_path / ".out.nc.ijkl9012.old.tmp"  # an old store being deleted when killed
    _store(aside, "replaced")
    other = tmp_path / ".out.nc.zarr.abcd1234.tmp"  # another destination's (out.nc.zarr)
    other.write_text("other")
    _age(other, old)
    user = tmp_path / ".out.nc.notes.tmp"  # not a name atomic_path makes
    user.write_text("user")
    _age(user, old)

    with atomic_path(tmp_path / "out.nc") as tmp:
        tmp.write_text("new")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"out.nc", live_file.name, live_store.name, other.name, user.name}
    assert remove_stale_temps(tmp_path / "out.nc") == []


def test_errors_name_the_destination_not_the_temporary(tmp_path, monkeypatch):
    out = tmp_path / "forecast.nc"
    with pytest.raises(OSError) as caught, atomic_path(out) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert caught.value.filename == str(out) and ".tmp" not in str(caught.value)
    with pytest.raises(OSError) as caught, atomic_path(out) as tmp:
        raise OSError(f"Unable to write file (name = '{tmp}', errno = 28)")  # h5py's style
    assert str(out) in str(caught.value) and ".tmp" not in str(caught.value)

    def unwritable(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}x1y2z3w4{suffix}")

    monkeypatch.setattr(io.tempfile, "mkstemp", unwritable)
    with pytest.raises(PermissionError) as caught, atomic_path(out):
        pass
    assert caught.value.filename == str(out)


def test_a_folder_where_a_file_is_to_be_written_is_refused_before_the_work(tmp_path):
    (tmp_path / "forecast.nc").mkdir()
    with pytest.raises(IsADirectoryError, match=r"forecast\.nc"), atomic_path(tmp_path / "forecast.nc"):
        pytest.fail("the block ran")
    assert [p.name for p in tmp_path.iterdir()] == ["forecast.nc"]
