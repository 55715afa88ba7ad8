"""What a benchmark folder remembers: the settings of its table, of each result and of each run.

A row may only be reused, resumed or tabulated under the settings it was made with; otherwise a
table could mix a 2-step model into a 6-step comparison. So the comparable settings are written
three times: ``settings.json`` (the folder's table), ``models/<model>.json`` (``"settings"``) and
``runs/<model>/benchmark.json`` (the run's settings and its planned steps). Results and runs of
other settings are not deleted (they may be wanted again) but moved aside, beside where they were:
``models/stale/<id>/<model>.json`` and ``runs/stale/<id>/<model>/``, ``<id>`` naming the settings
they were made with (``unrecorded`` for results from before settings were recorded).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SETTINGS_NAME = "settings.json"
RUN_RECORD_NAME = "benchmark.json"
STALE_DIR = "stale"
#: How a data root inside the results folder is written, so that ``--out results`` and
#: ``--out /abs/path/results`` (or another working directory) name the same settings.
FOLDER_MARK = "<folder>"


def portable_root(root: str | None, folder: Path) -> str | None:
    """``root`` as it is compared: inside ``folder`` as ``<folder>/…``, else an absolute path
    (URLs and unset roots as given)."""
    if not root or "://" in str(root):
        return root
    path = Path(root).expanduser().resolve()
    base = Path(folder).expanduser().resolve()
    if path == base or base in path.parents:
        return Path(FOLDER_MARK, path.relative_to(base)).as_posix()
    return str(path)


def plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples as lists, paths as strings), so that settings
    computed now compare equal to settings read from a file."""
    return json.loads(json.dumps(value, default=str))


def settings_id(settings: dict[str, Any] | None) -> str:
    """Short stable name of a settings dict (the folder that results of those settings go to)."""
    if not settings:
        return "unrecorded"
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def settings_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """``key old → new`` for every setting that differs (nested keys dotted), so a refusal says
    exactly what changed."""
    if old is None:
        return ["settings not recorded"]
    before, after = _flatten(old), _flatten(new)
    return [
        f"{key} {_show(before, key)} → {_show(after, key)}"
        for key in sorted(before.keys() | after.keys())
        if before.get(key, _ABSENT) != after.get(key, _ABSENT)
    ]


_ABSENT = object()


def _flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(flat: dict[str, Any], key: str) -> str:
    return json.dumps(flat[key]) if key in flat else "(unset)"


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``; ``None`` when there is none or it cannot be read (a record
    that cannot be read is treated like a missing one: nothing is reused from it)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def now() -> str:
    """UTC time stamp with microseconds: the order in which rows entered a table."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def set_aside(path: Path, settings: dict[str, Any] | None) -> Path:
    """Move ``path`` (a result file or a run folder) to ``<its folder>/stale/<id>/<name>``, never
    over an earlier copy, and return where it went."""
    path = Path(path)
    target = path.parent / STALE_DIR / settings_id(settings) / path.name
    candidate, n = target, 1
    while candidate.exists():
        candidate, n = target.with_name(f"{target.name}.{n}"), n + 1
    candidate.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), str(candidate))
    return candidate


def finished_results(models_dir: Path, settings: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The finished results in ``models_dir`` made under ``settings``, and the names of those made
    under other settings (left out of the table until they are trained again)."""
    matching, other = [], []
    for path in sorted(Path(models_dir).glob("*.json")):
        result = read_json(path)
        if result is None or result.get("status") != "ok":
            continue
        if result.get("settings") == settings:
            matching.append(result)
        else:
            other.append(path.stem)
    return matching, other


def table_order(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in the order they entered the table (``added``; ties and unstamped rows by name), so
    adding or retraining a model leaves the other rows where they were."""
    return sorted(results, key=lambda r: (r.get("added") or "~", str(r.get("model"))))
