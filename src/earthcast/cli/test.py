"""``earthcast test`` — score a checkpoint (or an untrained baseline) on the test or validation split."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from earthcast.cli import UserError
from earthcast.utils.jsonsafe import dumps

if TYPE_CHECKING:
    from earthcast.training.config import ExperimentConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "test",
        help="score a checkpoint or a baseline on a data set and print the metrics as JSON",
        description="Run the data set's metrics (SEVIR: CSI per threshold, CSI-M, MSE/MAE; N-body and "
        "Moving MNIST: per-frame MSE/MAE, SSIM; ENSO: C-Nino3.4-M/WM, MSE) on the test split of the "
        "config's data. Give --ckpt for a trained model or --model for an untrained registered model "
        "such as 'persistence'. Without a CONFIG, a checkpoint is scored with the experiment it records, "
        "except that the hardware (trainer.accelerator, devices, strategy, num_nodes) and the batch "
        "limits (trainer.limit_*_batches) are reset to their defaults: this machine, the whole split. "
        "--set trainer.KEY=VALUE sets them (e.g. devices=4 strategy=ddp for distributed evaluation). "
        "The JSON's 'weights' says what was scored: 'ema', 'raw' (--no-ema, or no EMA in the "
        "checkpoint) or 'untrained' (--model). NaN scores are written as null.",
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

    use_ema = not args.no_ema
    experiment, weights = _read_ckpt(args.ckpt, use_ema) if args.ckpt else (None, "untrained")
    config = _config(args, experiment)
    target = args.ckpt or args.model
    metrics = evaluate(target, config, split=args.split, use_ema=use_ema)
    report = {"config": args.config or "<from checkpoint>", "split": args.split}
    report["checkpoint" if args.ckpt else "model"] = target
    report["weights"] = weights
    if _is_rank_zero():  # under DDP every process returns here; one report is enough
        print(dumps({**report, "metrics": metrics}))  # a diverged model's NaN scores are written as null
    return 0


def _read_ckpt(path: str, use_ema: bool) -> tuple[dict[str, Any] | None, str]:
    """The experiment a checkpoint records and which of its weights ``evaluate`` will score.

    Read once here and dropped before scoring (``evaluate`` reads the file itself), so the report
    can say whether the EMA or the raw weights produced its numbers: they differ, and ``--no-ema``
    output would otherwise look the same.
    """
    from earthcast.training.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(path)
    experiment = (checkpoint.get("hyper_parameters") or {}).get("experiment")
    return experiment, _scored_weights(checkpoint, path, use_ema)


def _scored_weights(checkpoint: dict[str, Any], path: str, use_ema: bool) -> str:
    """``"ema"`` or ``"raw"``: which weights ``checkpoint.network_from_checkpoint`` loads."""
    from earthcast.training.checkpoint import EMA_PREFIX, checkpoint_info, weights_prefix

    prefix = weights_prefix(checkpoint, checkpoint_info(checkpoint, path)["prefix"], use_ema)
    return "ema" if prefix == EMA_PREFIX else "raw"


def _config(args: argparse.Namespace, experiment: dict[str, Any] | None) -> ExperimentConfig:
    """The experiment to score: the given CONFIG, else the checkpoint's, made to run on this machine."""
    from earthcast.training.config import apply_overrides, config_from_dict, load_config

    if args.config is not None:
        return load_config(args.config, args.overrides)
    if not args.ckpt:
        raise UserError("give a CONFIG (with --model, the data to score it on must come from a config)")
    if not experiment:
        raise UserError(f"checkpoint '{args.ckpt}' records no experiment; give a CONFIG")
    return config_from_dict(apply_overrides(_for_this_machine(experiment), args.overrides))


EVALUATION_RESETS = (
    "accelerator",
    "devices",
    "strategy",
    "num_nodes",
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
)
"""Trainer settings of a recorded experiment that describe the training machine and run, not the
model: scoring a checkpoint without a CONFIG sets them back to ``TrainerConfig``'s defaults."""


def _for_this_machine(experiment: dict[str, Any]) -> dict[str, Any]:
    """``experiment`` with :data:`EVALUATION_RESETS` at their defaults.

    A checkpoint trained with ``accelerator=gpu, devices=4, strategy=ddp`` (or on a few batches
    for a smoke test) must still be scored on a CPU-only laptop, and on the whole split; the
    defaults (``auto`` hardware, all batches) do both. ``--set trainer.…`` still wins.
    """
    from earthcast.training.config import TrainerConfig

    defaults = TrainerConfig()
    recorded = experiment.get("trainer")
    trainer = dict(recorded) if isinstance(recorded, dict) else {}
    trainer.update({name: getattr(defaults, name) for name in EVALUATION_RESETS})
    return {**experiment, "trainer": trainer}
