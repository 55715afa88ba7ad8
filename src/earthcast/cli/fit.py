"""``earthcast fit`` — train a model from an experiment config (packaged name or YAML file)."""

from __future__ import annotations

import argparse

from earthcast.cli import UserError
from earthcast.utils.jsonsafe import dumps


def _packaged() -> str:
    from earthcast.training.config import list_configs

    return ", ".join(list_configs())


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fit",
        help="train a model from an experiment config",
        description="Train the config's model on its data set with PyTorch Lightning. Checkpoints and logs "
        "go to the run directory (--out, default runs/<name>): checkpoints/last.ckpt, "
        "checkpoints/best-*.ckpt, logs/ (CSV) and tb/ (TensorBoard). Multi-GPU and multi-node runs are "
        "trainer flags, e.g. --set trainer.strategy=ddp --set trainer.devices=4.",
        epilog=f"packaged configs: {_packaged()}. Example: earthcast fit demo --out runs/demo",
    )
    p.add_argument("config", help="packaged config name or path of a YAML experiment file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set optim.lr=1e-4 --set data.root=/data/sevir (repeatable; "
        "values are YAML)",
    )
    p.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="continue a run: 'auto' resumes from <out>/checkpoints/last.ckpt if it exists; or a checkpoint",
    )
    p.add_argument(
        "--init-from",
        metavar="CKPT",
        help="start a new run from the trained network of this checkpoint (fresh optimiser and "
        "schedule: fine-tuning, or training longer than a finished run planned)",
    )
    p.add_argument("--out", metavar="DIR", help="run directory (default: trainer.out_dir, else runs/<name>)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from earthcast.training.config import load_config, to_yaml

    config = load_config(args.config, args.overrides)
    if args.print_config:
        print(to_yaml(config), end="")
        return 0
    from earthcast.training.runner import fit

    try:
        result = fit(config, resume=args.resume, out_dir=args.out, init_from=args.init_from)
    except FileExistsError as err:
        raise UserError(str(err)) from err
    summary = {
        "out_dir": str(result.out_dir),
        "best_ckpt": str(result.best_ckpt) if result.best_ckpt else None,
        "last_ckpt": str(result.last_ckpt) if result.last_ckpt else None,
        "metrics": result.metrics,
    }
    if result.already_finished:
        summary["note"] = (
            "the run had already finished (trainer.max_steps / max_epochs reached): nothing was "
            "trained; metrics are the last logged ones. Its learning-rate schedule has ended: to "
            "train longer, start a new run from its weights (--init-from CKPT --out NEW_DIR)."
        )
    if _is_rank_zero():  # under DDP every process returns here; one report is enough
        print(dumps(summary))  # a diverged run's NaN loss is written as null
    return 0


def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0
