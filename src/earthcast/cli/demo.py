"""``earthcast demo`` — train a small Earthformer on built-in synthetic data and report vs persistence."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the main job end to end on built-in synthetic data (a few minutes on a CPU)",
        description="Generate a small N-body MNIST data set, train a small Earthformer with PyTorch "
        "Lightning, score it and persistence on the test split, and write metrics.json, report.md, "
        "forecast.png and forecast.gif to the output folder.",
    )
    p.add_argument(
        "--out",
        default=None,
        help="run directory (default runs/demo, with --quick runs/demo-quick: a run resumes only "
        "with the settings it was started with)",
    )
    p.add_argument("--quick", action="store_true", help="a shortened run (seconds) of the same path")
    p.add_argument("--no-prediff", action="store_true", help="skip the PreDiff (latent diffusion) part")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a demo config key"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from earthcast.demo import run_demo

    out = args.out or ("runs/demo-quick" if args.quick else "runs/demo")
    result = run_demo(out, quick=args.quick, overrides=tuple(args.set), prediff=not args.no_prediff)
    ef, pe = result.metrics["earthformer"], result.metrics["persistence"]
    print(f"earthformer MSE {ef['mse']:.3f} vs persistence {pe['mse']:.3f} (lower is better)")
    print(f"report: {result.out_dir / 'report.md'}")
    return 0 if result.beats_persistence else 1
