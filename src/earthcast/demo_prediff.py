"""The PreDiff part of ``earthcast demo``: VAE → latent diffusion → ensemble forecasts, on CPU in minutes.

1. train the small VAE of ``configs/prediff_demo_vae.yaml`` on the demo's N-body data;
2. train the small Earthformer-UNet denoiser of ``configs/prediff_demo.yaml`` on its latents;
3. draw an ensemble (DDIM) for test contexts, score it (CRPS, spread–skill, MSE of the mean,
   Brier score of ``P(x ≥ τ)``) and plot members, ensemble mean and the exceedance probability.

Outputs (in ``<out>/prediff``): ``metrics.json``, ``ensemble.png``, and the two run directories.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from earthcast.utils.jsonsafe import write_json

#: Seconds-long variant for the test suite (same path, fewer sequences and epochs).
QUICK_OVERRIDES = (
    "data.synthetic.n_train=128",
    "data.synthetic.n_val=16",
    "data.synthetic.n_test=32",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "task_options.val_steps=2",
)
#: Exceedance threshold of the probability map (pixel intensity on the [0, 1] scale).
THRESHOLD = 0.5


@dataclass(frozen=True)
class PreDiffDemoResult:
    out_dir: Path
    metrics: dict[str, float]
    train_seconds: dict[str, float]
    num_samples: int = 8
    ddim_steps: int = 20


def run_prediff_demo(
    out_dir: str | Path,
    data_root: str | Path,
    quick: bool = False,
    num_samples: int = 8,
    steps: int = 20,
) -> PreDiffDemoResult:
    """Train both PreDiff stages on the N-body data at ``data_root`` and verify an ensemble."""
    from earthcast.training import fit, load_config

    out = Path(out_dir)
    extra = (*(QUICK_OVERRIDES if quick else ()), f"data.root={data_root}")
    vae_extra = [e for e in extra if not e.startswith("task_options")]
    seconds = {}
    vae_config = _in_run(load_config("prediff_demo_vae", vae_extra), out / "vae")
    started = time.perf_counter()
    vae_ckpt = fit(vae_config, resume="auto").last_ckpt
    seconds["vae"] = time.perf_counter() - started
    ldm_config = load_config("prediff_demo", [*extra, f"task_options.vae_ckpt={vae_ckpt}"])
    ldm_config = _in_run(ldm_config, out / "ldm")
    started = time.perf_counter()
    ldm_ckpt = fit(ldm_config, resume="auto").last_ckpt
    seconds["diffusion"] = time.perf_counter() - started
    contexts, steps = (4, min(steps, 4)) if quick else (16, steps)
    metrics = _verify(ldm_ckpt, ldm_config, out, num_samples, steps, contexts)
    summary = {"train_seconds": seconds, "num_samples": num_samples, "ddim_steps": steps, "test": metrics}
    write_json(out / "metrics.json", summary)
    return PreDiffDemoResult(out, metrics, seconds, num_samples, steps)


def _in_run(config, run: Path):
    return config.replace(trainer=dataclasses.replace(config.trainer, out_dir=str(run)))


def _test_batch(config, count: int) -> dict[str, torch.Tensor]:
    from earthcast.data.datamodule import ForecastDataModule

    datamodule = ForecastDataModule(config.data, seed=config.trainer.seed)
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule.first_test_batch(count)


def _verify(ckpt: Path, config, out: Path, num_samples: int, steps: int, contexts: int) -> dict[str, float]:
    from earthcast.metrics.probabilistic import CRPS, BrierScore, SpreadSkill
    from earthcast.training.diffusion_module import load_prediff

    model, _ = load_prediff(str(ckpt))
    batch = _test_batch(config, contexts)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    ensemble = model.forecast(batch["inputs"], num_samples, num_inference_steps=steps, generator=generator)
    sample_s = time.perf_counter() - started  # (B, S, T_out, H, W, C) above
    targets = batch["targets"]
    scores: dict[str, float] = {"seconds_per_ensemble": sample_s / len(targets)}
    for name, metric in (("crps", CRPS("ecdf")), ("crps_fair", CRPS("fair"))):
        metric.update(ensemble, targets)
        scores[name] = float(metric.compute())
    spread = SpreadSkill()
    spread.update(ensemble, targets)
    scores.update({k: float(v) for k, v in _scalars(spread.compute()).items()})
    brier = BrierScore(thresholds=(THRESHOLD,))
    brier.update(ensemble, targets)
    scores.update({f"brier_{k}": float(v) for k, v in _scalars(brier.compute()).items()})
    mean = ensemble.mean(dim=1)  # (B, T_out, H, W, C)
    scores["mse_of_mean_frame_sum"] = float((mean - targets).square().sum(dim=(2, 3, 4)).mean())
    last = batch["inputs"][:, -1:].expand_as(targets)
    scores["persistence_mse_frame_sum"] = float((last - targets).square().sum(dim=(2, 3, 4)).mean())
    _plot_ensemble(out / "ensemble.png", batch, ensemble)
    return scores


def _scalars(value: Any) -> dict[str, torch.Tensor]:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if torch.is_tensor(v) and v.ndim == 0}
    return {"value": value}


def _plot_ensemble(path: Path, batch: dict[str, torch.Tensor], ensemble: torch.Tensor) -> None:
    from earthcast.viz.sequences import PanelRow, context_minutes, lead_minutes, plot_rows

    ctx, truth = batch["inputs"][0, ..., 0].numpy(), batch["targets"][0, ..., 0].numpy()
    members = ensemble[0, ..., 0].numpy()  # (S, T_out, H, W)
    leads = lead_minutes(len(truth), None)
    rows = [
        PanelRow("context", ctx, context_minutes(len(ctx), None), False),
        PanelRow("truth", truth, leads, False),
    ]
    rows += [PanelRow(f"member {i + 1}", members[i], leads, False) for i in range(min(3, len(members)))]
    rows.append(PanelRow("ensemble mean", members.mean(axis=0), leads, False))
    probability = (members >= THRESHOLD).mean(axis=0).astype(np.float32)
    rows.append(PanelRow(f"P(x ≥ {THRESHOLD})", probability, leads, False))
    plot_rows(
        rows, title="PreDiff ensemble on an N-body test context (values and probability in [0, 1])", path=path
    )


def report_section(result: PreDiffDemoResult) -> str:
    """Markdown for ``report.md``."""
    m = result.metrics
    return (
        "\n## PreDiff (latent diffusion) ensemble\n\n"
        f"A small VAE ({result.train_seconds['vae']:.0f} s) and Earthformer-UNet denoiser "
        f"({result.train_seconds['diffusion']:.0f} s) trained on the same data; "
        f"{result.num_samples}-member DDIM-{result.ddim_steps} "
        "ensembles for the first test contexts (`prediff/metrics.json`).\n\n"
        "| CRPS (ecdf) | CRPS (fair) | spread/skill | MSE of ensemble mean | persistence MSE "
        "| s / ensemble |\n"
        "|---|---|---|---|---|---|\n"
        f"| {m['crps']:.4f} | {m['crps_fair']:.4f} | {m['spread_skill']:.3f} | "
        f"{m['mse_of_mean_frame_sum']:.2f} | {m['persistence_mse_frame_sum']:.2f} | "
        f"{m['seconds_per_ensemble']:.2f} |\n\n"
        f"{dispersion_note(m['spread_skill'])}\n\n"
        f"![ensemble](prediff/ensemble.png)\n"
    )


def dispersion_note(spread_skill: float) -> str:
    """One sentence reading the spread/skill ratio (1 for a calibrated ensemble) for the report."""
    if spread_skill < 0.3:
        return (
            f"Spread/skill {spread_skill:.3f} ≪ 1: the members are nearly identical, so the ensemble is "
            "far too confident. That is what a diffusion model learns on N-body MNIST, whose future is a "
            "deterministic function of the context: the conditional distribution it fits is almost a "
            "point, and its remaining error is model error, which sampling does not represent. On data "
            "with real uncertainty (the synthetic SEVIR-LR storms of `benchmarks/knowledge_control.py`) "
            "the same denoiser keeps spread/skill near 0.8–0.9."
        )
    if spread_skill > 1.5:
        return f"Spread/skill {spread_skill:.2f} > 1: the members disagree more than the errors warrant."
    return f"Spread/skill {spread_skill:.2f}: the members' spread roughly matches the error of their mean."
