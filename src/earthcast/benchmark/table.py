"""The benchmark table: columns of the seed's tables per data set, Markdown + CSV, and a plot.

==========================  =====================================================
data set                    metric columns (test split)
==========================  =====================================================
``sevir``, ``sevirlr``      CSI-M, CSI-219, CSI-181 (↑), MSE ×1e-3 (↓)
``enso``                    C-Nino3.4-M, C-Nino3.4-WM (↑), MSE ×1e-4 (↓)
``nbody``, ``moving_mnist`` MSE, MAE (per-frame sums, ↓), SSIM (↑)
anything else               MSE, MAE (pixel means, ↓)
==========================  =====================================================

Every table also lists parameters (M), forward GFLOPs per sample, training time and steps, and
the status (``ok`` or the failure message), so one failing model shows as a row, not a crash.
A model that the wall-clock limit (Lightning's ``max_time``) stopped before its planned steps has
its steps marked ``†`` and a footnote under the Markdown table; the CSV has ``planned_steps`` and
``stopped_by_max_time`` columns.
When an ensemble model (e.g. ``pysteps_steps``) is in the table, a CRPS column (↓, eCDF form, in
the data's normalised units) follows the data set's columns; the others are scores of the mean.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earthcast.utils.io import atomic_path


@dataclass(frozen=True)
class MetricColumn:
    """One metric column: logged key, header, multiplier for display, and which direction is better."""

    key: str
    header: str
    factor: float = 1.0
    higher_is_better: bool = False


_SEVIR = (
    MetricColumn("csi_m", "CSI-M", higher_is_better=True),
    MetricColumn("csi@219", "CSI-219", higher_is_better=True),
    MetricColumn("csi@181", "CSI-181", higher_is_better=True),
    MetricColumn("mse", "MSE (×1e-3)", factor=1e3),
)
_ENSO = (
    MetricColumn("c_nino34_m", "C-Nino3.4-M", higher_is_better=True),
    MetricColumn("c_nino34_wm", "C-Nino3.4-WM", higher_is_better=True),
    MetricColumn("mse", "MSE (×1e-4)", factor=1e4),
)
_DIGITS = (
    MetricColumn("mse", "MSE"),
    MetricColumn("mae", "MAE"),
    MetricColumn("ssim", "SSIM", higher_is_better=True),
)
_GENERIC = (MetricColumn("mse", "MSE"), MetricColumn("mae", "MAE"))

COLUMNS: dict[str, tuple[MetricColumn, ...]] = {
    "sevir": _SEVIR,
    "sevirlr": _SEVIR,
    "enso": _ENSO,
    "nbody": _DIGITS,
    "moving_mnist": _DIGITS,
}


CRPS_COLUMN = MetricColumn("crps", "CRPS")
#: marks the steps of a model the wall-clock limit stopped before its planned steps
EARLY_STOP_MARK = "†"
PLAN_COLUMNS = ("planned_steps", "stopped_by_max_time")


def metric_columns(dataset: str, results: Sequence[dict[str, Any]] = ()) -> tuple[MetricColumn, ...]:
    """The data set's columns, plus CRPS when any of ``results`` scored an ensemble."""
    columns = COLUMNS.get(dataset, _GENERIC)
    if any(CRPS_COLUMN.key in (r.get("metrics") or {}) for r in results):
        columns = (*columns, CRPS_COLUMN)
    return columns


def _metric(metrics: dict[str, Any], key: str) -> float:
    """A score of a result, NaN when absent or stored as ``null`` (a diverged run: results are
    strict JSON, ``utils/jsonsafe.py``)."""
    value = metrics.get(key)
    return math.nan if value is None else float(value)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def table_rows(results: Sequence[dict[str, Any]], dataset: str) -> tuple[list[str], list[list[str]]]:
    """Header and display rows (results in the order given)."""
    columns = metric_columns(dataset, results)
    header = ["model", "network", "params (M)", "GFLOPs", "train time (s)", "steps"]
    header += [c.header for c in columns] + ["status"]
    rows = []
    for r in results:
        metrics = r.get("metrics") or {}
        row = [r["model"], r.get("network", "–"), _fmt(r.get("params_m"), 3), _fmt(r.get("gflops"), 3)]
        row += [
            _fmt(r.get("train_time_s"), 4),
            _fmt(r.get("steps")) + (f" {EARLY_STOP_MARK}" if r.get("stopped_by_max_time") else ""),
        ]
        row += [_fmt(_metric(metrics, c.key) * c.factor) for c in columns]
        row.append(r.get("status", "–"))
        rows.append(row)
    return header, rows


def footnotes(results: Sequence[dict[str, Any]]) -> list[str]:
    """Notes under the Markdown table: which models the wall-clock limit stopped early."""
    early = [r for r in results if r.get("stopped_by_max_time")]
    if not early:
        return []
    listed = ", ".join(
        f"{r['model']} {_fmt(r.get('steps'))} of {_fmt(r.get('planned_steps'))}" for r in early
    )
    return [
        f"{EARLY_STOP_MARK} stopped by the wall-clock limit (max_time) before its planned steps, so its "
        f"learning-rate schedule did not finish: {listed}."
    ]


def write_tables(results: Sequence[dict[str, Any]], dataset: str, out: Path, title: str) -> tuple[Path, Path]:
    """``table.md`` (Markdown with a title line) and ``table.csv`` (raw numbers) in ``out``, each
    written to a temporary name and renamed, so a reader never sees a half-written table."""
    header, rows = table_rows(results, dataset)
    md = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    notes = footnotes(results)
    md += ["", *notes] if notes else []
    md_path = out / "table.md"
    with atomic_path(md_path) as tmp:  # a killed run leaves the previous table, not half of one
        tmp.write_text("\n".join(md) + "\n")
    csv_path = out / "table.csv"
    columns = metric_columns(dataset, results)
    with atomic_path(csv_path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["model", "network", "params_m", "gflops", "train_time_s", "steps", *PLAN_COLUMNS]
            + [c.key for c in columns]
            + ["status"]
        )
        for r in results:
            metrics = r.get("metrics") or {}
            base = [
                r["model"],
                r.get("network"),
                r.get("params_m"),
                r.get("gflops"),
                r.get("train_time_s"),
                r.get("steps"),
                *(r.get(key) for key in PLAN_COLUMNS),
            ]
            writer.writerow(base + [metrics.get(c.key) for c in columns] + [r.get("status")])
    return md_path, csv_path


def plot_results(results: Sequence[dict[str, Any]], dataset: str, path: Path) -> Path | None:
    """Bar chart per metric column (best bar highlighted); ``None`` when no model finished."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in results if r.get("status") == "ok" and r.get("metrics")]
    columns = [c for c in metric_columns(dataset, done) if any(c.key in r["metrics"] for r in done)]
    if not done or not columns:
        return None
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns) + 1, 3.6), squeeze=False)
    names = [r["model"] for r in done]
    for ax, column in zip(axes[0], columns, strict=True):
        values = [_metric(r["metrics"], column.key) * column.factor for r in done]
        finite = [v for v in values if not math.isnan(v)]
        best = (max if column.higher_is_better else min)(finite) if finite else None
        colours = ["tab:orange" if v == best else "tab:blue" for v in values]
        ax.bar(range(len(values)), values, color=colours)
        ax.set_xticks(range(len(values)), names, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"{column.header} {'↑' if column.higher_is_better else '↓'}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"earthcast benchmark — {dataset} (test split)")
    fig.tight_layout()
    with atomic_path(path) as tmp:  # the temporary name has no image suffix: name the format
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
