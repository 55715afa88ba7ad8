"""``earthcast score`` — score saved forecasts against targets and print the scores as JSON.

A thin shell over ``earthcast.metrics.score_arrays`` (its docstring defines every key). Both
files hold ``(N, T, H, W)`` or ``(N, T, H, W, C)`` in the same scale: ``.npy`` (memory-mapped, so
large files are streamed), NetCDF or Zarr (``--var``; default the first 4-D/5-D data variable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from earthcast.cli import UserError
from earthcast.utils.jsonsafe import dumps

# Restated from earthcast.metrics.score so that `earthcast --help` does not import torchmetrics;
# tests/cli/test_score.py checks that they agree.
KINDS = ("sevir", "enso", "continuous")
SCALES = ("01", "255")
MODES = ("0", "1", "2")
REDUCTIONS = ("pixel_mean", "frame_sum")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="score forecasts against targets (SEVIR CSI…, ENSO, MSE/MAE/SSIM) → JSON",
        description="Score forecasts against targets. sevir: csi/pod/sucr/bias/hss@τ for the SEVIR "
        "thresholds, csi_m, mse, mae (VIL in [0, 1], or bytes with --scale 255; 255 = missing). "
        "enso: c_nino34_m, c_nino34_wm, nino_rmse, mse (normalised SST, 24×48). continuous: mse, mae, ssim.",
    )
    p.add_argument("--pred", required=True, type=Path, help="forecasts: .npy, .nc or .zarr")
    p.add_argument("--target", required=True, type=Path, help="targets, same shape and scale as --pred")
    p.add_argument("--metrics", required=True, choices=KINDS, help="which family of scores")
    p.add_argument("--scale", default="01", choices=SCALES, help="value scale: 01 = [0, 1], 255 = bytes")
    p.add_argument(
        "--mode",
        default="0",
        choices=MODES,
        help="categorical aggregation: 0 pooled, 1 per lead time (lists), 2 per lead then averaged",
    )
    p.add_argument(
        "--reduction",
        default="pixel_mean",
        choices=REDUCTIONS,
        help="continuous: mse/mae per pixel (pixel_mean) or summed over each frame (frame_sum, the "
        "N-body / Moving MNIST convention of the papers and of `earthcast test` on those data)",
    )
    p.add_argument("--var", help="variable of a NetCDF/Zarr --pred (and --target unless --target-var)")
    p.add_argument(
        "--ensemble",
        action="store_true",
        help="--pred holds members on its second axis (N, S, T, H, W[, C]); automatic for a NetCDF/Zarr "
        "variable with a 'member' dimension. Adds crps, spread, rmse and spread_skill(_corrected)",
    )
    p.add_argument("--target-var", help="variable of a NetCDF/Zarr --target")
    p.add_argument("--out", type=Path, help="also write the JSON to this file (.json)")
    p.add_argument(
        "--plot",
        type=Path,
        help="ensembles: also draw the rank histogram and (sevir) the reliability diagram (.png/.pdf/.svg)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _open(path: Path, variable: str | None, what: str):
    """The samples of ``path`` (read chunk by chunk while scoring; close when done)."""
    from earthcast.io.arrays import read_samples

    samples = read_samples(path, variable, what=what)
    if what == "target" and "member" in samples.dims:
        samples.close()
        raise UserError(
            f"target '{path}' variable '{samples.variable}' has members {samples.dims}; the target must "
            "be the observations (N, T, H, W[, C]), e.g. pass the truth file, or pick it with --target-var"
        )
    return samples


def run(args: argparse.Namespace) -> int:
    from earthcast.metrics import score_arrays

    if args.out is not None and args.out.suffix.lower() != ".json":
        raise UserError(f"--out '{args.out}' must end in .json")
    if args.plot is not None:
        from earthcast.viz._figure import image_format

        image_format(args.plot)  # a bad extension fails before the scoring
    with (
        _open(args.pred, args.var, "pred") as pred,
        _open(args.target, args.target_var or args.var, "target") as target,
    ):
        if "member" in pred.dims and pred.dims[1] != "member":
            raise UserError(f"pred '{args.pred}' has dims {pred.dims}; members must be the second axis")
        ensemble = args.ensemble or "member" in pred.dims
        if args.plot is not None and not ensemble:
            raise UserError(
                "--plot draws ensemble verification (rank histogram, reliability); --pred is not an "
                "ensemble (no 'member' dimension; pass --ensemble for an (N, S, T, H, W[, C]) array)"
            )
        scores = score_arrays(
            pred.values,
            target.values,
            args.metrics,
            args.scale,
            args.mode,
            progress=not args.quiet,
            ensemble=ensemble,
            reduction=args.reduction,
        )
    if scores["missing_pixels"]:
        total = scores["missing_pixels"] + scores["scored_pixels"]
        coded = "NaN or VIL byte 255 (1.0 on scale 01)" if args.metrics == "sevir" else "NaN"
        print(
            f"note: {scores['missing_pixels']} of {total} target pixels "
            f"({100 * scores['missing_pixels'] / total:.2g} %) are {coded}, "
            "treated as missing and not scored",
            file=sys.stderr,
        )
    if args.plot is not None:
        from earthcast.viz.ensemble import plot_ensemble_verification

        plot_ensemble_verification(scores, args.plot, title=f"{args.pred.name} vs {args.target.name}")
    text = dumps(scores)
    if args.out is not None:
        from earthcast.utils.io import atomic_path

        with atomic_path(args.out) as tmp:
            tmp.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0
