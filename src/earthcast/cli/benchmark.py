"""``earthcast benchmark`` — train a list of models under one budget and tabulate their test scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from earthcast.cli import UserError

DEFAULT_MODELS = (
    "persistence,unet,convlstm,predrnn,phydnet,e3d_lstm,rainformer,earthformer_noglobal,earthformer"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "benchmark",
        help="rerun the papers' comparison table on a data set: train each model under one budget",
        description="Train every model under the same budget (wall clock or steps), score all on the "
        "same test split with the data set's metrics and write <out>/<data>/table.md, table.csv and "
        "plot.png (params, GFLOPs per sample, training time, metrics). Finished models are not "
        "retrained (use --rerun) and the table keeps the folder's earlier rows of the same settings; "
        "results of other settings are moved aside, never reused; a failing model is reported in "
        "the table.",
        epilog="Example: earthcast benchmark --data nbody --models earthformer,unet,convlstm,persistence "
        "--budget 15m",
    )
    p.add_argument(
        "--data",
        required=True,
        help="data set / experiment: a packaged config name (nbody, sevir, enso, radar, …; "
        "'<data>_<size>' is preferred when packaged, e.g. nbody_small) or a YAML experiment file",
    )
    p.add_argument(
        "--models", default=DEFAULT_MODELS, help=f"comma-separated models (default: {DEFAULT_MODELS})"
    )
    p.add_argument(
        "--budget", default="15m", help="per-model training budget: 15m, 90s, 1h or 500steps (default 15m)"
    )
    p.add_argument(
        "--size",
        choices=("tiny", "small", "paper"),
        default="small",
        help="model sizes short names resolve to (default small; paper = the tables' sizes)",
    )
    p.add_argument("--out", default="results", help="results root (default: results)")
    p.add_argument(
        "--rerun",
        action="store_true",
        help="train the named models again from scratch; with changed settings, make them the "
        "folder's (rows of the old settings leave the table)",
    )
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a setting"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from earthcast.benchmark import BenchmarkConfig, parse_budget, run_benchmark

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    if not models:
        raise UserError("--models is empty; give e.g. --models earthformer,unet,persistence")
    config = BenchmarkConfig(
        experiment=_experiment(args.data, args.size, args.overrides),
        models=models,
        budget=parse_budget(args.budget),
        size=args.size,
        out_dir=Path(args.out),
        rerun=args.rerun,
    )
    results = run_benchmark(config)
    failed = [r["model"] for r in results if r.get("status") != "ok"]
    print(f"\nwrote {config.folder / 'table.md'}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    print((config.folder / "table.md").read_text())
    return 1 if len(failed) == len(results) else 0


def _experiment(data: str, size: str, overrides: list[str]):
    from earthcast.training.config import list_configs, load_config

    packaged = set(list_configs())
    # tiny runs (tests, smoke checks) shrink the small config further with --set
    candidates = [f"{data}_{size}", f"{data}_small"] if size == "tiny" else [f"{data}_{size}"]
    name = next((c for c in candidates if c in packaged), data)
    return load_config(name, overrides)
