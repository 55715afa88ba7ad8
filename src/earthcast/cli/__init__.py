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
    except (UserError, ValueError, FileNotFoundError) as err:
        print(f"earthcast {args.command}: error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)
