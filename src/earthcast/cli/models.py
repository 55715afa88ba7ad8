"""``earthcast models`` — list registered models and cuboid patterns; plot a pattern."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list models and cuboid-attention patterns")
    p.add_argument("--patterns", action="store_true", help="list cuboid self/cross patterns instead")
    p.add_argument("--params", action="store_true", help="also build each model and count its parameters")
    p.add_argument("--plot-pattern", metavar="NAME", help="save a picture of a self pattern's decomposition")
    p.add_argument("--shape", default="6,8,8", help="T,H,W used by --plot-pattern (default 6,8,8)")
    p.add_argument("--out", default="pattern.png", help="output file of --plot-pattern")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.plot_pattern:
        from earthcast.viz.cuboids import plot_decomposition

        shape = tuple(int(v) for v in args.shape.split(","))
        plot_decomposition(args.plot_pattern, shape, args.out)
        print(f"wrote {args.out}")
        return 0
    if args.patterns:
        from earthcast.nn.cuboid import list_patterns

        print("self:  " + " ".join(list_patterns("self")))
        print("cross: " + " ".join(list_patterns("cross")))
        return 0
    from earthcast import create_model, list_models

    for name in list_models():
        if args.params:
            n = sum(p.numel() for p in create_model(name).parameters())
            print(f"{name:36s} {n:>12,d}")
        else:
            print(name)
    return 0
