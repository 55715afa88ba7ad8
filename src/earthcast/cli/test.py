"""``earthcast test`` — score a checkpoint (or an untrained baseline) on the test or validation split."""

from __future__ import annotations

import argparse
import json

from earthcast.cli import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "test",
        help="score a checkpoint or a baseline on a data set and print the metrics as JSON",
        description="Run the data set's metrics (SEVIR: CSI per threshold, CSI-M, MSE/MAE; N-body and "
        "Moving MNIST: per-frame MSE/MAE, SSIM; ENSO: C-Nino3.4-M/WM, MSE) on the test split of the "
        "config's data. Give --ckpt for a trained model or --model for an untrained registered model "
        "such as 'persistence'. Distributed evaluation uses the same trainer flags as fit.",
        epilog="Example: earthcast test sevir --ckpt runs/sevir/checkpoints/last.ckpt "
        "--set data.root=/data/sevir",
    )
    p.add_argument(
        "config",
        nargs="?",
        help="packaged config name or path of a YAML experiment file (default with --ckpt: the "
        "experiment recorded in the checkpoint)",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--ckpt", metavar="PATH", help="earthcast checkpoint to score")
    which.add_argument(
        "--model", metavar="NAME", help="registered model to score without training, e.g. persistence"
    )
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a setting"
    )
    p.add_argument("--split", choices=("test", "val"), default="test", help="split to score (default: test)")
    p.add_argument(
        "--no-ema", action="store_true", help="score the raw weights even if the checkpoint has an EMA"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from earthcast.cli.fit import _is_rank_zero
    from earthcast.training.runner import evaluate

    config = _config(args)
    target = args.ckpt or args.model
    metrics = evaluate(target, config, split=args.split, use_ema=not args.no_ema)
    report = {"config": args.config or "<from checkpoint>", "split": args.split}
    report["checkpoint" if args.ckpt else "model"] = target
    if _is_rank_zero():  # under DDP every process returns here; one report is enough
        print(json.dumps({**report, "metrics": metrics}, indent=2))
    return 0


def _config(args: argparse.Namespace):
    from earthcast.training.config import apply_overrides, config_from_dict, load_config

    if args.config is not None:
        return load_config(args.config, args.overrides)
    if not args.ckpt:
        raise UserError("give a CONFIG (with --model, the data to score it on must come from a config)")
    from earthcast.training.checkpoint import read_checkpoint

    experiment = (read_checkpoint(args.ckpt).get("hyper_parameters") or {}).get("experiment")
    if not experiment:
        raise UserError(f"checkpoint '{args.ckpt}' records no experiment; give a CONFIG")
    return config_from_dict(apply_overrides(experiment, args.overrides))
