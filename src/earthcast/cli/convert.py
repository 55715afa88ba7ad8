"""``earthcast convert-checkpoint`` — reference Earthformer weights → earthcast weights."""

from __future__ import annotations

import argparse
from pathlib import Path

from earthcast.cli import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert-checkpoint",
        help="convert an official/reference Earthformer checkpoint (earthformer 0.2.1) to earthcast",
        description="Rename the keys of a reference CuboidTransformerModel state dict (e.g. the official "
        "earthformer_sevir.pt) so earthcast's Earthformer loads it strictly; the result is checked against "
        "the preset before it is written.",
    )
    p.add_argument(
        "--preset", required=True, help="earthcast preset the weights belong to, e.g. earthformer_sevir"
    )
    p.add_argument("input", type=Path, help="reference checkpoint (.pt state dict or Lightning .ckpt)")
    p.add_argument("output", type=Path, help="where to write the earthcast checkpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from earthcast.models.earthformer import convert_reference_state_dict, get_preset
    from earthcast.utils.io import atomic_torch_save

    if not args.input.is_file():
        raise UserError(f"checkpoint '{args.input}' does not exist")
    try:
        state = torch.load(args.input, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(
            f"cannot read '{args.input}' as a PyTorch checkpoint ({err}); is the file complete?"
        ) from err
    config = get_preset(args.preset)
    converted = convert_reference_state_dict(state, args.preset)
    atomic_torch_save(
        {
            "state_dict": converted,
            "model": args.preset,
            "config": config.to_dict(),
            "source": str(args.input),
        },
        args.output,
    )
    print(f"wrote {args.output} ({len(converted)} tensors, preset {args.preset})")
    return 0
