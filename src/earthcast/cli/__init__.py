"""``earthcast`` command-line interface: a thin shell over the library's functions.

Each sub-command lives in its own module exposing ``register(subparsers)``; errors that users can
fix (bad arguments, missing files, wrong shapes) are reported as one line, not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
