"""Knowledge control end to end on CPU: does guided sampling move forecasts where it is asked to?

Two parts, each training every stage it needs (Lightning, resumable: a rerun reuses finished runs):

``--part nbody``  energy conservation on synthetic N-body MNIST (32×32, 5 → 5):
    VAE → latent diffusion → energy estimator → alignment network U_φ(z_t, t) ≈ Ê(future);
    ensembles drawn without (λ = 0) and with guidance toward F₀ = Ê(context);
    reports E.MSE / E.MAE (estimated energy of the forecast vs of the context), MSE and CRPS.
``--part sevir``  anticipated intensity on synthetic SEVIR-LR (SEVIR HDF5 layout, 32×32, 7 → 6):
    VAE → latent diffusion → context-conditioned intensity regressor (μ_τ, σ_τ from the context
    only) → U_φ ≈ mean future intensity; ensembles for F₀ = μ_τ + n·σ_τ, n = −4 … +4;
    reports the samples' mean intensity per n against the request, and CSI-M / CRPS at n = 0
    against unguided sampling; writes the figure of rows of samples for each n.

Usage::

    .venv/bin/python benchmarks/knowledge_control.py --part nbody --scales 10 50
    .venv/bin/python benchmarks/knowledge_control.py --part sevir --scales 1e3 1e4 3e4

Prints JSON and writes ``benchmarks/results/knowledge_<part>.json`` (+ ``knowledge_sevir.png``);
``--guide-by decoded`` guides on the decoded ẑ₀'s statistic instead of U_φ (files ``…_decoded``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from _harness import ensemble_scores
from earthcast.data.datamodule import ForecastDataModule
from earthcast.models.prediff.denoiser.alignment import AlignmentNetwork
from earthcast.models.prediff.denoiser.config import get_alignment_config
from earthcast.models.prediff.knowledge import make_decoded_guidance, make_guidance
from earthcast.models.prediff.knowledge.constraints import MeanIntensity, NBodyEnergy
from earthcast.models.prediff.knowledge.energy import EnergyEstimator, EnergyEstimatorConfig
from earthcast.training import fit, load_config
from earthcast.training.alignment_module import AlignmentSystem
from earthcast.training.diffusion_module import load_prediff
from earthcast.training.estimator_module import EstimatorSystem
from earthcast.training.vae_module import load_vae

RESULTS = Path(__file__).parent / "results"
TUNING_SIGMAS = (-2.0, 0.0, 2.0)
PARTS = {
    "nbody": [
        "data.synthetic={size: 32, seq_len: 10, n_train: 2048, n_val: 64, n_test: 128}",
    ],
    "sevir": [
        "data.name=sevirlr",
        "data.in_len=7",
        "data.out_len=6",
        "data.synthetic={size: 96, n_events: 960}",
        "data.stride=3",
    ],
}


def _stages(part: str, root: Path, epochs: int, vae_epochs: int) -> tuple[Path, Path, object]:
    """Train (or reuse) the VAE and the latent diffusion model: their checkpoints and the LDM config."""
    common = [*PARTS[part], f"data.root={root / 'data'}", "trainer.progress_bar=none"]
    vae = load_config(
        "prediff_demo_vae",
        [*common, f"trainer.out_dir={root / 'vae'}", f"trainer.max_epochs={vae_epochs}"],
    )
    vae_ckpt = fit(vae, resume="auto").last_ckpt
    ldm = load_config(
        "prediff_demo",
        [
            *common,
            f"trainer.out_dir={root / 'ldm'}",
            f"task_options.vae_ckpt={vae_ckpt}",
            f"trainer.max_epochs={epochs}",
        ],
    )
    return vae_ckpt, fit(ldm, resume="auto").last_ckpt, ldm


def _datamodule(config) -> ForecastDataModule:
    datamodule = ForecastDataModule(config.data, seed=0)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    return datamodule


def _trainer(epochs: int, root: Path) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        default_root_dir=root,
    )


def _alignment(vae, constraint, datamodule, prediff, root: Path, args) -> AlignmentNetwork:
    jitter = args.latent_jitter if args.alignment_target == "decoded" else 0.0
    path = root / f"alignment_{args.alignment_target}_j{jitter:g}_e{args.alignment_epochs}.pt"
    cfg = prediff.denoiser.config
    net = AlignmentNetwork(
        get_alignment_config(
            "alignment_tiny",
            target_len=cfg.target_len,
            latent_hw=cfg.latent_hw,
            latent_channels=cfg.latent_channels,
        )
    )
    if path.is_file():
        net.load_state_dict(torch.load(path))
        return net.eval()
    system = AlignmentSystem(
        vae,
        net,
        constraint,
        target=args.alignment_target,
        latent_jitter=jitter,
        latent_scale=prediff.latent_scale,
    )
    _trainer(args.alignment_epochs, root).fit(system, datamodule=datamodule)
    torch.save(net.state_dict(), path)
    return net.eval()


def _alignment_skill(net, prediff, constraint, datamodule) -> dict[str, float]:
    """Correlation of U_φ(z_t, t) with F(future) on 64 test futures, at a few diffusion steps."""
    batch = datamodule.first_test_batch(64)
    truth = constraint.statistic(batch["targets"], batch["inputs"])[:, 0]  # (B,)
    z0 = prediff.vae.encode(batch["targets"]).mode()
    skill, gen = {}, torch.Generator().manual_seed(0)
    with torch.no_grad():
        for step in (0, 250, 500, 750):
            t = torch.full((len(z0),), step)
            z_t = prediff.schedule.add_noise(z0, torch.randn(z0.shape, generator=gen), t)
            pred = net(z_t, t).mean(dim=(1, 2))  # (B,)
            skill[f"corr_t{step}"] = float(torch.corrcoef(torch.stack([pred, truth]))[0, 1])
    return skill


def _ensemble(prediff, context, members, steps, guidance=None, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return prediff.forecast(
        context, members, num_inference_steps=steps, eta=1.0, guidance=guidance, generator=gen
    )  # (B, S, T_out, H, W, C)


def run_nbody(args: argparse.Namespace) -> dict:
    root = Path(args.work) / "nbody"
    vae_ckpt, ldm_ckpt, config = _stages("nbody", root, args.epochs, args.vae_epochs)
    prediff, _ = load_prediff(str(ldm_ckpt))
    datamodule = _datamodule(config)
    estimator = EnergyEstimator(EnergyEstimatorConfig(widths=(16, 32, 32)))
    est_path = root / "estimator.pt"
    if est_path.is_file():
        estimator.load_state_dict(torch.load(est_path))
    else:
        system = EstimatorSystem(estimator)
        _trainer(args.epochs, root).fit(system, datamodule=datamodule)
        torch.save(estimator.state_dict(), est_path)
    constraint = NBodyEnergy(estimator.eval()).eval()
    net = _alignment(load_vae(vae_ckpt), constraint, datamodule, prediff, root, args)
    report_alignment = _alignment_skill(net, prediff, constraint, datamodule)
    batch = datamodule.first_test_batch(args.contexts)
    context = batch["inputs"]
    reference = constraint.target(context)  # (B, 1) estimated energy of the context
    report = {"part": "nbody", "members": args.members, "steps": args.steps, "contexts": len(context)}
    report["alignment_skill"] = report_alignment
    for scale in (0.0, *args.scales):
        guidance = None
        if scale > 0:

            def guidance(ctx, scale=scale):
                if args.guide_by == "decoded":
                    return make_decoded_guidance(prediff, constraint, ctx, scale, num_samples=args.members)
                return make_guidance(net, constraint, ctx[:: args.members], scale, num_samples=args.members)

        ensemble = _ensemble(prediff, context, args.members, args.steps, guidance)
        energy = torch.stack([constraint.statistic(ensemble[:, s], context) for s in range(args.members)], 1)
        error = energy[..., 0] - reference  # (B, S)
        report[f"lambda={scale:g}"] = {
            "e_mse": float(error.square().mean()),
            "e_mae": float(error.abs().mean()),
            **ensemble_scores(ensemble, batch["targets"]),
        }
    return report


def _intensity_run(prediff, net, constraint, batch, scale: float, n: float, args) -> tuple[dict, Tensor]:
    """One guided ensemble for F₀ = μ + nσ: the request, what the members achieved (also in σ), scores."""
    context = batch["inputs"]

    def guidance(ctx):  # the ensemble is sampled as (B S), members fastest
        if args.guide_by == "decoded":
            return make_decoded_guidance(prediff, constraint, ctx, scale, num_samples=args.members, n_sigma=n)
        per_context = ctx[:: args.members]
        return make_guidance(net, constraint, per_context, scale, num_samples=args.members, n_sigma=n)

    ensemble = _ensemble(prediff, context, args.members, args.steps, guidance if scale > 0 else None)
    mu, sigma = constraint.regressor(context)  # (B, 1) each, from the context only
    achieved = ensemble.mean(dim=(2, 3, 4, 5))  # (B, S) mean intensity of every member
    row = {
        "requested_mean_intensity": float((mu + n * sigma).mean()),
        "sample_mean_intensity": float(achieved.mean()),
        # where the members landed, in σ above μ: should read n
        "achieved_sigma": float(((achieved - mu) / sigma).mean()),
        "abs_miss_sigma": float(((achieved - mu - n * sigma) / sigma).abs().mean()),
        **ensemble_scores(ensemble, batch["targets"]),
    }
    return row, ensemble


def _tune_scale(prediff, net, constraint, datamodule, args) -> tuple[float, dict]:
    """Pick λ on *validation* contexts (the test split stays unseen).

    For each λ of ``--scales``: how far the members' mean intensity lands from the request, in σ,
    averaged over n = −2, 0, +2, and the CRPS change at n = 0 against unguided sampling. The λ with
    the smallest miss among those within ``--crps-margin`` wins (the smallest λ if none is).
    """
    batch = datamodule.spaced_batch("val", args.contexts)
    unguided = _intensity_run(prediff, net, constraint, batch, 0.0, 0.0, args)[0]["crps"]
    table = {}
    for scale in args.scales:
        rows = {n: _intensity_run(prediff, net, constraint, batch, scale, n, args)[0] for n in TUNING_SIGMAS}
        table[f"{scale:g}"] = {
            "mean_miss_sigma": sum(abs(r["achieved_sigma"] - n) for n, r in rows.items()) / len(rows),
            "crps_change_pct": 100 * (rows[0.0]["crps"] - unguided) / unguided,
        }
    allowed = [k for k, v in table.items() if v["crps_change_pct"] <= args.crps_margin]
    allowed = allowed or [min(table, key=float)]
    return float(min(allowed, key=lambda k: table[k]["mean_miss_sigma"])), table


def run_sevir(args: argparse.Namespace) -> dict:
    root = Path(args.work) / "sevir"
    vae_ckpt, ldm_ckpt, config = _stages("sevir", root, args.epochs, args.vae_epochs)
    prediff, _ = load_prediff(str(ldm_ckpt))
    datamodule = _datamodule(config)
    constraint = MeanIntensity()
    constraint.regressor.fit(datamodule.train_dataloader())  # μ_τ, σ_τ from training contexts only
    constraint.eval()
    net = _alignment(load_vae(vae_ckpt), constraint, datamodule, prediff, root, args)
    report = {"part": "sevir", "members": args.members, "steps": args.steps, "contexts": args.contexts}
    report["guide_by"] = args.guide_by
    report["alignment_skill"] = _alignment_skill(net, prediff, constraint, datamodule)
    scale, report["validation_by_lambda"] = _tune_scale(prediff, net, constraint, datamodule, args)
    report["lambda"] = scale
    batch = datamodule.spaced_batch("test", args.contexts)
    report["unguided"], _ = _intensity_run(prediff, net, constraint, batch, 0.0, 0.0, args)
    rows = {}
    for n in args.sigmas:
        report[f"n={n:+g}"], ensemble = _intensity_run(prediff, net, constraint, batch, scale, n, args)
        rows[n] = ensemble[0, 0, ..., 0].numpy()
    context, targets = batch["inputs"][0, ..., 0].numpy(), batch["targets"][0, ..., 0].numpy()
    suffix = "" if args.guide_by == "alignment" else f"_{args.guide_by}"
    _figure(rows, context, targets, RESULTS / f"knowledge_sevir{suffix}.png")
    return report


def _figure(rows, context, truth, path: Path) -> None:
    from earthcast.viz.colormaps import vil_colors
    from earthcast.viz.sequences import PanelRow, context_minutes, lead_minutes, plot_rows

    leads = lead_minutes(len(truth), 10)
    panels = [
        PanelRow("context", context, context_minutes(len(context), 10)),
        PanelRow("truth", truth, leads),
    ]
    panels += [PanelRow(f"n = {n:+g}σ", frames, leads) for n, frames in rows.items()]
    plot_rows(
        panels, vil_colors("01"), title="Anticipated intensity F₀ = μ + nσ: one sample per n", path=path
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("nbody", "sevir"), required=True)
    parser.add_argument("--work", default="runs/knowledge")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the latent diffusion model")
    parser.add_argument("--vae-epochs", type=int, default=2)
    parser.add_argument("--alignment-epochs", type=int, default=30)
    parser.add_argument(
        "--alignment-target",
        choices=("data", "decoded"),
        default="data",
        help="U_φ learns F of the real future (reference) or of the decoded, jittered latent",
    )
    parser.add_argument("--latent-jitter", type=float, default=0.5, help="with --alignment-target decoded")
    parser.add_argument(
        "--guide-by",
        choices=("alignment", "decoded"),
        default="alignment",
        help="guidance differentiates U_φ(z_t, t) (PreDiff) or F of the decoded predicted clean latent",
    )
    parser.add_argument("--contexts", type=int, default=16)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps (η = 1)")
    parser.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=[10.0, 50.0],
        help="λ values: nbody reports each; sevir picks the one that best meets n = ±2 on validation",
    )
    parser.add_argument(
        "--crps-margin", type=float, default=10.0, help="sevir: largest CRPS rise (%%) allowed when picking λ"
    )
    parser.add_argument("--sigmas", type=float, nargs="+", default=[-4, -2, 0, 2, 4])
    args = parser.parse_args()
    torch.manual_seed(0)
    report = run_nbody(args) if args.part == "nbody" else run_sevir(args)
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if args.guide_by == "alignment" else f"_{args.guide_by}"
    (RESULTS / f"knowledge_{args.part}{suffix}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
