"""``earthcast`` command-line interface: a thin shell over the library's functions.

Each sub-command lives in its own module exposing ``register(subparsers)``; errors that users can
fix (bad arguments, missing files, wrong shapes, and disk-level ones: no permission, a read-only
or full disk, a file where a folder is needed) are reported as one line, not a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from earthcast import __version__

_COMMAND_MODULES = (
    "demo",
    "fit",
    "test",
    "predict",
    "score",
    "plot",
    "data",
    "models",
    "convert",
    "export",
    "benchmark",
)


class UserError(Exception):
    """A problem the user can fix; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="earthcast",
        description="Deep-learning Earth system forecasting: train, evaluate and run Earthformer-family "
        "models on radar, satellite and reanalysis data.",
    )
    parser.add_argument("--version", action="version", version=f"earthcast {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(f"earthcast.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except _user_error_types() as err:
        print(f"earthcast {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        message = disk_error(err)
        if message is None:  # not one the user can fix by choosing another path: a traceback
            raise
        print(f"earthcast {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(result or 0)


_LIGHTNING_EXCEPTION_MODULES = (
    "lightning.fabric.utilities.exceptions",
    "lightning.pytorch.utilities.exceptions",
)


def _lightning_errors() -> tuple[type[Exception], ...]:
    """Lightning's ``MisconfigurationException``: a trainer setting this machine cannot honour
    (``trainer.accelerator=gpu`` without a GPU, ``devices=0``), which the user fixes with ``--set``.

    Looked up only if Lightning is already imported (it cannot have raised otherwise), so that
    ``earthcast --help`` and the light commands never load it.
    """
    modules = (sys.modules.get(name) for name in _LIGHTNING_EXCEPTION_MODULES)
    return tuple({m.MisconfigurationException for m in modules if hasattr(m, "MisconfigurationException")})


def _user_error_types() -> tuple[type[Exception], ...]:
    """The exceptions reported as one line instead of a traceback."""
    return (UserError, ValueError, FileNotFoundError, *_lightning_errors())


def _one_line(err: Exception) -> str:
    """The message of ``err``; Lightning's, which speak of ``Trainer(...)`` arguments, on one line
    and with a pointer to the ``trainer.*`` settings that set those arguments."""
    if not isinstance(err, _lightning_errors()):
        return str(err)
    return (
        " ".join(str(err).split()) + " (raised by Lightning: its Trainer arguments are the trainer.* "
        "settings; change them with --set trainer.KEY=VALUE, e.g. trainer.accelerator=cpu)"
    )


# ------------------------------------------------------------------------------- disk errors

_NO_ACCESS = (errno.EACCES, errno.EPERM)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def disk_error(err: OSError) -> str | None:
    """One line naming the path and the fix for an ``OSError`` that the user fixes by choosing
    another path or freeing space (no permission, read-only or full disk, a file where a folder
    is needed or the reverse); ``None`` for the others, which stay tracebacks."""
    code = err.errno
    where = err.filename2 if code in (errno.EISDIR, errno.EEXIST) and err.filename2 else err.filename
    path = os.fsdecode(where) if where is not None else None
    named = f"'{path}'" if path is not None else "a path"
    if code in _NO_ACCESS:
        return f"permission denied: {named}; use a location you may write to (or read, for an input)"
    if code == errno.EROFS:
        return f"{named} is on a read-only file system; write somewhere else"
    if code in _NO_SPACE:
        return f"no space left for {named} ({err.strerror}); free some space or write somewhere else"
    if code == errno.ENOTDIR:
        return f"{_file_in_the_way(path) if path else named} is a file, not a folder; choose another path"
    if code == errno.EISDIR:
        return f"{named} is a folder where a file is to be written; remove it or choose another name"
    if code == errno.EEXIST:
        kind = "a file where a folder is needed" if path and Path(path).is_file() else "in the way"
        return f"{named} is {kind}; remove it or choose another path"
    return None


def _file_in_the_way(path: str) -> str:
    """The first component of ``path`` that is a regular file (what ``ENOTDIR`` means), quoted."""
    for parent in reversed(Path(path).parents):
        if parent.is_file():
            return f"'{parent}' (in '{path}')"
    return f"a part of '{path}'"


def check_output(flag: str, path: Path, overwrite: bool, store: bool = False) -> None:
    """Refuse, before any work is done, an output ``path`` (given as ``flag``) that would
    replace something without ``--overwrite``, that is a folder where a file is written (which
    ``--overwrite`` cannot fix, so it is not suggested), or whose folder cannot be written.

    ``store=True``: the output is itself a folder (a Zarr store), replaced as a whole.
    """
    if path.is_dir() and not store:
        raise UserError(
            f"{flag} '{path}' is a folder; a file is written there: remove it or choose another name"
        )
    if os.path.lexists(path) and not overwrite:
        raise UserError(f"{flag} '{path}' exists; pass --overwrite to replace it")
    check_writable(flag, path.parent)


def check_writable(flag: str, folder: Path) -> None:
    """Refuse a ``folder`` (for ``flag``; created when missing) that cannot be written: the
    nearest existing ancestor must be a folder the user may write in. Checked up front, so
    that a long computation does not end in a permission error."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag}: '{existing}' is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"{flag}: cannot write in '{existing}' (permission denied or a read-only file system); "
            "choose a folder you may write to"
        )
