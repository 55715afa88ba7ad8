"""Strict JSON for the CLI's reports: non-finite numbers become ``null``.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which is not JSON: ``jq``, browsers
and most other readers reject the whole document. They show up in real reports (a diverged run's
loss, a score without events, an empty reliability bin), so the reports of ``earthcast fit``,
``test`` and ``score``, and the files the demo and the benchmark write, go through :func:`dumps`
here instead of ``json.dumps``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def strict_json(value: Any) -> Any:
    """``value`` with every NaN/±inf float (at any depth of dicts, lists, tuples) replaced by ``None``.

    ``±inf`` is nulled too: ``allow_nan=False`` refuses it as well, and failing on it after a
    whole training run would lose the report.
    """
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, indent: int | None = 2) -> str:
    """``json.dumps`` of :func:`strict_json` ``(value)``; never emits ``NaN`` or ``Infinity``;
    other objects (paths, dates) are written as their ``str``."""
    return json.dumps(strict_json(value), indent=indent, allow_nan=False, default=str)


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Write :func:`dumps` ``(value)`` to ``path`` atomically (a reader never sees half a file)."""
    from earthcast.utils.io import atomic_path

    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_text(dumps(value) + "\n")
