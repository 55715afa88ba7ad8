#!/usr/bin/env python
"""Real radar, leave one source out: pysteps extrapolation vs a small Earthformer, CSI per lead; prints JSON.

usage: python benchmarks/radar_nowcast.py [--radar ../shared/data/radar] [--work runs/radar_nowcast]
       [--folds fmi[,mch,knmi,bom]] [--models persistence,pysteps_extrapolation,earthformer_noglobal]
       [--size small|tiny] [--budget 8m|300steps] [--pixel-km 4] [--threads 2]
       [--out benchmarks/results/radar] [--rerun] [--set data.options.patch_size=32 ...]

1. The pysteps example composites under ``--radar`` are imported once into ``<work>/stores``
   (``earthcast.data.radar_sources.import_radar_sources``: one Zarr store per service, dBR, pooled
   to about ``--pixel-km``; existing stores are reused).
2. For each fold (a held-out source), the packaged experiment ``radar_sources`` (6 → 6 frames on
   32 × 32 tiles) runs through ``earthcast.benchmark.run_benchmark`` in ``<work>/fold-<source>``:
   the learned models train on the other sources under ``--budget`` (wall clock or steps) and every
   model is scored on the held-out source, CSI/POD/SUCR/BIAS at 1 and 5 mm/h per lead time
   (``earthcast.training.scoring``: keys ``csi@1mmh_lead01`` …). Finished models are not rerun.
3. ``--out`` receives ``csi_per_lead.md`` / ``.csv`` (one row per fold, model, threshold and lead),
   ``csi_per_lead.png`` (CSI against lead time, one line per model) and the full record
   ``radar_nowcast_<device>_t<threads>.json`` (also printed).

CSI uses ε = 1e-4 in its denominator, so a lead without any observed or forecast event scores 0;
the ``events`` column says how many observed event pixels each score rests on.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import machine_info

ROOT = Path(__file__).resolve().parents[1]
LABELS = {"1mmh": "1 mm/h", "5mmh": "5 mm/h"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--radar", type=Path, default=ROOT.parent / "shared" / "data" / "radar")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "radar_nowcast", help="stores and runs")
    p.add_argument("--folds", default="fmi", help="held-out sources, comma-separated (mch,knmi,fmi,bom)")
    p.add_argument("--models", default="persistence,pysteps_extrapolation,earthformer_noglobal")
    p.add_argument("--size", default="small", choices=("tiny", "small"), help="Earthformer preset size")
    p.add_argument("--budget", default="8m", help="training budget per model and fold: 8m, 90s, 300steps")
    p.add_argument("--pixel-km", type=float, default=4.0, help="pixel size the sources are pooled to")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "radar")
    p.add_argument("--rerun", action="store_true", help="train and score finished models again")
    p.add_argument("--set", nargs="*", default=[], help="experiment overrides key=value (YAML values)")
    return p.parse_args(argv)


def fold_config(stores: Path, fold: str, overrides: list[str]):
    from earthcast.training import load_config

    return load_config(
        "radar_sources",
        [
            f"data.root={stores}",
            f"data.options.test_source={fold}",
            "trainer.accelerator=cpu",
            "trainer.devices=1",
            "trainer.progress_bar=none",
            *overrides,
        ],
    )


def describe_fold(config) -> dict[str, Any]:
    """Sizes of the splits and the test source's frame interval (what the scores rest on)."""
    from earthcast.data.datamodule import ForecastDataModule
    from earthcast.data.radar_sources import describe_radar_sources

    data = ForecastDataModule(config.data)
    data.setup("fit")
    data.setup("test")
    test = data.test_dataset
    return {
        "train_sources": data.train_dataset.sources,
        "train_patches": len(data.train_dataset),
        "val_patches": len(data.val_dataset),
        "test_patches": len(test),
        "test_windows": len({(source, window) for source, window, *_ in test.index}),
        "frame_interval_minutes": describe_radar_sources(test)["frame_interval_minutes"],
        "patch_size": test.cfg.patch_size,
        "in_len": test.in_len,
        "out_len": test.out_len,
    }


def run_fold(args: argparse.Namespace, stores: Path, fold: str) -> dict[str, Any]:
    from earthcast.benchmark import BenchmarkConfig, parse_budget, run_benchmark

    config = fold_config(stores, fold, args.set)
    info = describe_fold(config)
    print(f"\n=== held out: {fold} — {info}", flush=True)
    start = time.perf_counter()
    bench = BenchmarkConfig(
        experiment=config,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        budget=parse_budget(args.budget),
        size=args.size,
        out_dir=args.work / f"fold-{fold}",
        rerun=args.rerun,
    )
    results = run_benchmark(bench)
    return {**info, "wall_s": time.perf_counter() - start, "results": results}


# ------------------------------------------------------------------------------------ tables


def lead_rows(folds: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per fold, model, threshold and lead (scores from the test metrics)."""
    rows = []
    for fold, record in folds.items():
        step = record["frame_interval_minutes"]
        for result in record["results"]:
            metrics = result.get("metrics") or {}
            for label in LABELS:
                for lead in range(1, record["out_len"] + 1):
                    key = f"{label}_lead{lead:02d}"
                    rows.append(
                        {
                            "fold": fold,
                            "model": result["model"],
                            "network": result.get("network"),
                            "threshold_mmh": float(label.removesuffix("mmh")),
                            "lead": lead,
                            "lead_minutes": lead * step if step else None,
                            **{s: metrics.get(f"{s}@{key}") for s in ("csi", "pod", "sucr", "bias")},
                            "events": metrics.get(f"events@{label}"),
                            "train_steps": result.get("steps"),
                            "status": result.get("status"),
                        }
                    )
    return rows


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(folds: dict[str, dict[str, Any]], command: str, budget: str) -> str:
    """Per fold: models × thresholds, CSI at every lead and its lead mean."""
    lines = ["# Real radar, leave one source out: CSI per lead time", "", f"`{command}`", ""]
    for fold, record in folds.items():
        step, leads = record["frame_interval_minutes"], range(1, record["out_len"] + 1)
        learned = any(r.get("steps") for r in record["results"])
        lines += [
            f"## held out: {fold} (trained on {', '.join(record['train_sources'])})",
            "",
            f"{record['test_patches']} test patches of {record['patch_size']}² px from "
            f"{record['test_windows']} windows ({record['in_len']} → {record['out_len']} frames of "
            f"{step} min)" + (f"; budget {budget} per learned model." if learned else "."),
            "",
            "| model | threshold | "
            + " | ".join(f"+{k * step} min" for k in leads)
            + " | mean | events | steps |",
            "|---|---|" + "---|" * (len(leads) + 3),
        ]
        for result in record["results"]:
            metrics = result.get("metrics") or {}
            for label, name in LABELS.items():
                cells = [_fmt(metrics.get(f"csi@{label}_lead{k:02d}")) for k in leads]
                events = metrics.get(f"events@{label}")
                lines.append(
                    f"| {result['model']} | {name} | "
                    + " | ".join(cells)
                    + f" | {_fmt(metrics.get(f'csi@{label}'))}"
                    f" | {'–' if events is None else int(events)} | {result.get('steps', '–')} |"
                )
        lines.append("")
    return "\n".join(lines)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """CSI against lead time at 1 and 5 mm/h, one line per model, one row of panels per fold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folds = list(dict.fromkeys(r["fold"] for r in rows))
    fig, axes = plt.subplots(len(folds), 2, figsize=(9, 3.2 * len(folds)), squeeze=False)
    for axes_row, fold in zip(axes, folds):
        for ax, threshold in zip(axes_row, (1.0, 5.0)):
            picked = [r for r in rows if r["fold"] == fold and r["threshold_mmh"] == threshold]
            for model in dict.fromkeys(r["model"] for r in picked):
                line = [r for r in picked if r["model"] == model and r["csi"] is not None]
                ax.plot(
                    [r["lead_minutes"] or r["lead"] for r in line],
                    [r["csi"] for r in line],
                    "o-",
                    label=model,
                )
            ax.set_title(f"held out {fold}: CSI ≥ {threshold:g} mm/h", fontsize=10)
            ax.set_xlabel("lead time (min)")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
        axes_row[0].set_ylabel("CSI")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from earthcast.data.radar_sources import import_radar_sources

    start = time.perf_counter()
    stores = args.work / "stores"
    import_radar_sources(args.radar, stores, pixel_km=args.pixel_km, progress=False)
    import_s = time.perf_counter() - start
    folds = {
        fold: run_fold(args, stores, fold) for fold in (f.strip().lower() for f in args.folds.split(","))
    }
    command = "python benchmarks/radar_nowcast.py " + " ".join(argv if argv is not None else sys.argv[1:])
    record = {
        "benchmark": "radar_nowcast",
        "command": command.strip(),
        "machine": machine_info(args.threads),
        "budget": args.budget,
        "size": args.size,
        "pixel_km": args.pixel_km,
        "overrides": args.set,
        "import_s": import_s,
        "total_s": time.perf_counter() - start,
        "folds": folds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    rows = lead_rows(folds)
    (args.out / "csi_per_lead.md").write_text(markdown(folds, record["command"], args.budget))
    write_csv(rows, args.out / "csi_per_lead.csv")
    plot(rows, args.out / "csi_per_lead.png")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    (args.out / f"radar_nowcast_{device}_t{args.threads}.json").write_text(
        json.dumps(record, indent=2, default=str)
    )
    print(json.dumps(record, indent=2, default=str))
    return record


if __name__ == "__main__":
    main()
