"""``earthcast export`` — a trained checkpoint → a ``torch.export`` program that needs only PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from earthcast.cli import UserError, check_output


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint as a torch.export program (.pt2) that runs with PyTorch alone",
        description="Capture the trained network of an `earthcast fit` checkpoint with torch.export (dynamic "
        "batch size, the data contract's time, grid and channels), check it against the network at two "
        "batch sizes and write it as a .pt2 archive with the data contract inside. Load it with "
        "torch.export.load(PATH).module(); no earthcast needed.",
    )
    p.add_argument("--ckpt", required=True, type=Path, help="earthcast checkpoint (earthcast fit)")
    p.add_argument("--out", required=True, type=Path, help="program to write (.pt2)")
    p.add_argument(
        "--max-batch", type=int, default=1024, help="largest batch the program accepts (default 1024)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from earthcast import __version__
    from earthcast.export import export_forecaster
    from earthcast.training.checkpoint import network_from_checkpoint, read_checkpoint

    if not args.ckpt.is_file():
        raise UserError(f"checkpoint '{args.ckpt}' not found; pass the .ckpt written by `earthcast fit`")
    if args.out.suffix != ".pt2":
        raise UserError(f"--out '{args.out}' must end in .pt2 (a torch.export archive)")
    check_output("--out", args.out, args.overwrite)  # a folder there, or one not writable
    checkpoint = read_checkpoint(args.ckpt)
    hparams = checkpoint.get("hyper_parameters") or {}
    if hparams.get("task") == "diffusion":
        raise UserError(
            "PreDiff checkpoints sample with a reverse-diffusion loop that torch.export cannot capture; "
            "use `earthcast predict` for ensembles"
        )
    model, info = network_from_checkpoint(checkpoint, args.ckpt)
    metadata = {
        "model_name": info["model_name"],
        "trained_with": hparams.get("earthcast_version"),
        "exported_with": __version__,
        "torch": torch.__version__,
        "source_checkpoint": str(args.ckpt),
    }
    report = export_forecaster(
        model, info["data_contract"], args.out, max_batch=args.max_batch, metadata=metadata
    )
    print(
        f"wrote {args.out}: batch 1…{report['max_batch']}, checked at batches {report['checked_batches']} "
        f"(largest difference {report['max_abs_difference']:.2g}); run it with "
        f"torch.export.load('{args.out}').module()(contexts)"
    )
    return 0
