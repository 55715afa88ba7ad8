"""``earthcast predict`` — run a checkpoint on saved contexts and write a CF-1.8 NetCDF forecast.

The input holds contexts ``(N, T_in, H, W[, C])`` **in the model's scale** (the units/scale of the
checkpoint's data contract, e.g. SEVIR VIL code / 255 in [0, 1]); see ``earthcast.inference``.
The output layout is documented in ``earthcast.io.forecast``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import re
import shlex
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torch import nn

from earthcast.cli import UserError, check_output


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="forecast from saved contexts with a checkpoint → CF NetCDF",
        description="Run a trained checkpoint on contexts (N, T_in, H, W[, C]) stored as .npy, NetCDF or "
        "Zarr, in the model's scale (the checkpoint's data contract; e.g. SEVIR VIL code / 255 in [0, 1]), "
        "and write a CF-1.8 NetCDF forecast with dims (sample, lead_time, y, x[, channel]).",
    )
    p.add_argument(
        "--ckpt",
        required=True,
        type=Path,
        help="earthcast checkpoint (earthcast fit), or a program written by `earthcast export` (.pt2)",
    )
    p.add_argument("--input", required=True, type=Path, help="contexts: .npy, .nc or .zarr")
    p.add_argument("--output", required=True, type=Path, help="forecast NetCDF to write (.nc)")
    p.add_argument("--var", help="variable of a NetCDF/Zarr input (default: the first 4-D/5-D one)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, help="forecast only this sample")
    which.add_argument("--start", type=int, default=0, help="first sample to forecast (default 0)")
    p.add_argument("--count", type=int, help="number of samples from --start (default: all)")
    p.add_argument("--batch-size", type=int, default=4, help="samples per forward pass (default 4)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        help="ensemble models: write P(x >= τ) for these thresholds, in physical units (e.g. SEVIR "
        "VIL codes 16 74 133); default for ensembles: the checkpoint's thresholds",
    )
    ens = p.add_argument_group("ensemble models (PreDiff checkpoints)")
    ens.add_argument("--num-samples", type=int, help="ensemble members S (default: the checkpoint's, 8)")
    ens.add_argument("--sampler", choices=("ddim", "ddpm"), help="reverse-diffusion sampler (default ddim)")
    ens.add_argument("--steps", type=int, help="denoising steps (default 50 for DDIM; DDPM uses all 1000)")
    ens.add_argument("--eta", type=float, help="DDIM stochasticity in [0, 1] (default 1)")
    ens.add_argument("--seed", type=int, default=0, help="seed of the ensemble noise (default 0)")
    ens.add_argument(
        "--alignment", type=Path, metavar="CKPT", help="knowledge control: a trained alignment checkpoint"
    )
    ens.add_argument(
        "--anticipate",
        metavar="±Nsigma",
        help="mean_intensity constraint: steer to F0 = mu + N sigma of the context-conditioned future "
        "intensity, e.g. --anticipate=+2sigma (write it with '=' for negative values)",
    )
    ens.add_argument(
        "--guide-by",
        choices=("alignment", "decoded"),
        default=None,
        help="knowledge control differentiates the alignment network's reading of z_t (PreDiff, default) "
        "or the constraint's statistic of the frames decoded from the predicted clean latent (no U_phi; "
        "lands on the request far more exactly, ~1.6x the sampling time; needs its own --guidance-scale, "
        "e.g. 1000 where U_phi needed 2000)",
    )
    ens.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="knowledge-control strength lambda (default 50, the reference's); it depends on the model "
        "and the step count: tune it on validation data (benchmarks/knowledge_control.py does)",
    )
    p.add_argument("--title", help="global 'title' attribute")
    p.add_argument("--institution", help="global 'institution' attribute")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import xarray as xr

    from earthcast.io.forecast import variable_name

    _check_paths(args)
    model, contract, info = load_checkpoint(args.ckpt, args.device)
    configure_sampling(model, args, contract)
    start, count = (args.index, 1) if args.index is not None else (args.start, args.count)
    predict_file(
        model,
        contract,
        args.input,
        args.output,
        variable=args.var,
        start=start,
        count=count,
        batch_size=args.batch_size,
        device=args.device,
        thresholds=args.thresholds,
        attrs={**provenance(args, info), **sampling_record(model, args)},
        progress=not args.quiet,
    )
    name = variable_name(contract)
    with xr.open_dataset(args.output) as ds:
        sizes = ", ".join(f"{d} {n}" for d, n in ds[name].sizes.items())
        attrs = dict(ds[name].attrs)
    meaning = attrs.get("comment") or f"units '{attrs.get('units')}'"
    print(f"wrote {args.output}: {name} ({sizes}); {meaning}")
    return 0


def _check_paths(args: argparse.Namespace) -> None:
    if args.output.suffix.lower() != ".nc":
        raise UserError(f"--output '{args.output}' must end in .nc (a NetCDF forecast is written)")
    if args.output.resolve() == args.input.resolve():
        raise UserError("--output must differ from --input")
    check_output("--output", args.output, args.overwrite)  # a folder there, or one not writable
    if not args.ckpt.is_file():
        raise UserError(f"checkpoint '{args.ckpt}' not found; pass the .ckpt written by `earthcast fit`")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    _check_device(args.device)
    if args.index is not None and args.count is not None:
        raise UserError("--index selects one sample; use --start with --count for a range")


def _check_device(device: str) -> None:
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as err:
        raise UserError(f"--device '{device}' is not a torch device; use cpu, cuda or cuda:N") from err
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is available here; use --device cpu")


def load_checkpoint(path: Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """``(model, data_contract, info)`` of a checkpoint; ``info`` has ``model_name`` and versions.

    The file is read once (``read_checkpoint`` + ``network_from_checkpoint``, the two halves of
    ``load_forecaster``), so the provenance in ``hyper_parameters`` comes without a second load.
    A ``.pt2`` file is a program written by ``earthcast export`` (contract and provenance inside);
    it is placed on ``device`` here, because its graph holds device-specific constants.
    """
    if path.suffix == ".pt2":
        from earthcast.export import load_exported

        model, contract = load_exported(path, device)
        provenance = {
            "model_name": f"{model.metadata.get('model_name') or 'model'} (exported program)",
            "trained_with": model.metadata.get("trained_with"),
            "sha256": _sha256(path),
        }
        return model, contract, provenance
    try:
        from earthcast.training.checkpoint import network_from_checkpoint, read_checkpoint

        checkpoint = read_checkpoint(path)
        if (checkpoint.get("hyper_parameters") or {}).get("task") == "diffusion":
            from earthcast.training.diffusion_module import load_prediff

            model, contract = load_prediff(str(path))
            info = {"model_name": "prediff", "data_contract": contract}
        else:
            model, info = network_from_checkpoint(checkpoint, path)
    except ImportError as err:
        raise UserError(f"cannot load '{path}': a package it needs failed to import ({err})") from err
    hparams = checkpoint.get("hyper_parameters") or {}
    provenance = {
        "model_name": info["model_name"],
        "trained_with": hparams.get("earthcast_version"),
        "sha256": _sha256(path),
    }
    return model.eval(), dict(info["data_contract"]), provenance


DEFAULT_GUIDANCE_SCALE = 50.0
"""The reference's knowledge-control strength λ."""


def configure_sampling(
    model: nn.Module, args: argparse.Namespace, contract: dict[str, Any] | None = None
) -> None:
    """Apply ``--num-samples/--sampler/--steps/--eta/--seed`` to a PreDiff model (refused for others)."""
    import torch

    from earthcast.models.prediff.prediff import PreDiff

    given = {
        "num_samples": args.num_samples,
        "sampler": args.sampler,
        "num_inference_steps": args.steps,
        "eta": args.eta,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if not isinstance(model, PreDiff):
        control = ("alignment", "anticipate", "guide_by", "guidance_scale")
        given.update({k: True for k in control if getattr(args, k, None) is not None})
        if given:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in given).replace(
                "num-inference-steps", "steps"
            )
            raise UserError(f"{flags}: only ensemble (PreDiff) checkpoints take sampling options")
        return
    if given.get("sampler") == "ddpm" and "eta" in given:
        raise UserError("--eta applies to the DDIM sampler; DDPM's step noise is fixed by the schedule")
    if given.get("sampler") == "ddpm" and "num_inference_steps" not in given:
        given["num_inference_steps"] = model.schedule.num_train_timesteps  # the exact ancestral chain
    try:
        model.sampling = dataclasses.replace(model.sampling, **given)
    except ValueError as err:  # the config names its fields; the user typed flags
        message = str(err)
        for field, flag in (
            ("num_inference_steps", "--steps"),
            ("num_samples", "--num-samples"),
            ("eta", "--eta"),
        ):
            message = re.sub(rf"\b{field}\b", flag, message)
        raise UserError(message) from err
    torch.manual_seed(args.seed)
    model.seed_ensembles(args.seed)  # each sample's members from (seed, sample index): batching-proof
    model.guidance = _knowledge_control(args, model, contract)


def _knowledge_control(args: argparse.Namespace, model: nn.Module, contract: dict[str, Any] | None):
    """``--alignment/--anticipate/--guide-by/--guidance-scale`` → a guidance factory for the
    ``PreDiff`` ``model`` (or ``None``)."""
    if args.alignment is None:
        ignored = [
            f
            for f, v in (("--guide-by", args.guide_by), ("--guidance-scale", args.guidance_scale))
            if v is not None
        ]
        if ignored:
            raise UserError(f"{', '.join(ignored)}: knowledge control needs --alignment CKPT")
        if args.anticipate is not None:
            raise UserError(
                "--anticipate needs --alignment CKPT (a trained alignment run: its fitted constraint sets "
                "the target, also with --guide-by decoded)"
            )
        return None
    from earthcast.models.prediff.knowledge import make_decoded_guidance, make_guidance
    from earthcast.models.prediff.knowledge.intensity import parse_anticipate
    from earthcast.training.alignment_module import check_alignment_pairing, load_alignment

    if not args.alignment.is_file():
        raise UserError(f"--alignment '{args.alignment}' not found")
    args.guide_by = args.guide_by or "alignment"
    args.guidance_scale = DEFAULT_GUIDANCE_SCALE if args.guidance_scale is None else args.guidance_scale
    loaded = load_alignment(args.alignment)
    check_alignment_pairing(loaded, model, contract, args.alignment)  # ValueError → a one-line error
    options = {}
    if args.anticipate is not None:
        if loaded.constraint.name != "mean_intensity":
            raise UserError(
                f"--anticipate applies to the mean_intensity constraint, not {loaded.constraint.name}"
            )
        options["n_sigma"] = parse_anticipate(args.anticipate)  # ValueError names the accepted form
    members = model.sampling.num_samples

    def guidance(context):  # context: (B·S, T_in, H, W, C), members fastest
        if args.guide_by == "decoded":  # the alignment checkpoint supplies the fitted constraint only
            return make_decoded_guidance(
                model, loaded.constraint, context, args.guidance_scale, num_samples=members, **options
            )
        return make_guidance(
            loaded.network,
            loaded.constraint,
            context[::members],
            args.guidance_scale,
            num_samples=members,
            **options,
        )

    return guidance


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sampling_record(model: nn.Module, args: argparse.Namespace) -> dict[str, Any]:
    """For ensembles, the global attribute ``sampling``: the effective sampler settings, seed and
    knowledge control as JSON, so a guided (+2σ) file cannot pass for an unguided one."""
    sampling = getattr(model, "sampling", None)
    if sampling is None or not dataclasses.is_dataclass(sampling):
        return {}
    record: dict[str, Any] = {**dataclasses.asdict(sampling), "seed": args.seed}
    if args.alignment is not None:
        record["knowledge_control"] = {
            "alignment": str(args.alignment),
            "anticipate": args.anticipate,
            "guide_by": args.guide_by,
            "guidance_scale": args.guidance_scale,
        }
    return {"sampling": json.dumps(record, sort_keys=True)}


def provenance(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    """Global attributes ``title``, ``history``, ``source``, ``model``, ``checkpoint``, …"""
    from earthcast import __version__

    command = ["earthcast", "predict", "--ckpt", str(args.ckpt), "--input", str(args.input)]
    command += ["--output", str(args.output)]
    flags = ("var", "index", "count", "thresholds", "num_samples", "sampler", "steps", "eta", "alignment")
    for flag in flags:
        value = getattr(args, flag)
        if value is not None:
            option = f"--{flag.replace('_', '-')}"
            command += [option, *(map(str, value) if isinstance(value, list) else [str(value)])]
    if args.index is None and args.start:
        command += ["--start", str(args.start)]
    if args.alignment is not None:
        command += [f"--anticipate={args.anticipate}"] if args.anticipate is not None else []
        command += ["--guide-by", args.guide_by, "--guidance-scale", str(args.guidance_scale)]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "title": args.title,
        "institution": args.institution,
        "history": f"{now}: {shlex.join(command)}",
        "source": f"earthcast {__version__} {info['model_name']}",
        "model": info["model_name"],
        "checkpoint": str(args.ckpt),
        "checkpoint_sha256": info.get("sha256"),
        "model_trained_with": f"earthcast {info['trained_with']}" if info.get("trained_with") else None,
        "earthcast_version": __version__,
    }


def predict_file(
    model: nn.Module,
    contract: dict[str, Any],
    input_path: Path,
    output_path: Path,
    *,
    variable: str | None = None,
    start: int = 0,
    count: int | None = None,
    batch_size: int = 4,
    device: str = "cpu",
    thresholds: Sequence[float] | None = None,
    attrs: dict[str, Any] | None = None,
    progress: bool = False,
) -> Path:
    """Forecast the contexts of ``input_path`` with ``model`` into the CF NetCDF ``output_path``.

    Contexts are read, checked and forecast one batch at a time and every batch is appended to
    the output, so memory does not grow with the number of samples; the file appears only once
    complete. Ensemble models get exceedance probabilities for ``thresholds`` (physical units;
    default: the contract's ``thresholds``); deterministic models refuse thresholds.
    """
    from earthcast.inference import iter_forecasts
    from earthcast.io.arrays import read_samples
    from earthcast.io.forecast import write_forecast_batches

    with read_samples(input_path, variable, start=start, count=count, what="input") as samples:
        batches = iter_forecasts(
            model,
            samples.values,
            contract,
            batch_size=batch_size,
            device=device,
            progress=progress,
            ensemble=True if thresholds else None,
            name=f"input '{input_path}'",
            first_sample=start,  # position in the file: seeded ensembles follow the sample, not the batch
        )
        first = next(batches)  # the first batch tells whether the model returns an ensemble
        if first[1].ndim == 6 and thresholds is None:
            thresholds = list(contract.get("thresholds") or []) or None  # ensembles: the contract's events
        dims = samples.dims
        return write_forecast_batches(
            itertools.chain([first], batches),
            output_path,
            contract,
            sample_index=samples.index,
            reference_time=samples.reference_time,
            y=(*samples.coords[dims[2]], dims[2]) if len(dims) > 2 and dims[2] in samples.coords else None,
            x=samples.coords.get(dims[3]) if len(dims) > 3 else None,
            thresholds=thresholds,
            attrs=attrs,
        )
