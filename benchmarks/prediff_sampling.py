"""DDIM-k vs DDPM-1000 on the same trained PreDiff: time per ensemble and the change in CRPS / CSI-M.

Usage (after ``make demo``, which trains a small PreDiff into runs/demo/prediff/ldm)::

    .venv/bin/python benchmarks/prediff_sampling.py --ckpt runs/demo/prediff/ldm/checkpoints/last.ckpt \
        --contexts 16 --members 8 --ddim-steps 50

Both samplers draw the same number of members for the same test contexts of the checkpoint's
data (evenly spaced over the test split); the scores are computed on the [0, 1] scale: CRPS
(ecdf) of the ensemble and CSI-M of the ensemble mean over the pixel thresholds
16/74/133/160/181/219 of 255 (the N-body convention of ``training/scoring.py``). Prints one
JSON object (also written to ``benchmarks/results/prediff_sampling_<time>.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _harness import ensemble_scores
from earthcast.training import load_config
from earthcast.training.diffusion_module import load_prediff


def _contexts(ckpt: Path, count: int) -> dict[str, torch.Tensor]:
    from earthcast.data.datamodule import ForecastDataModule
    from earthcast.training.checkpoint import read_checkpoint
    from earthcast.training.config import config_from_dict

    experiment = (read_checkpoint(ckpt).get("hyper_parameters") or {}).get("experiment")
    config = config_from_dict(experiment) if experiment else load_config("prediff_demo")
    datamodule = ForecastDataModule(config.data, seed=0)
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule.spaced_batch("test", count)


def _run(
    model, batch, members: int, sampler: str, steps: int, seed: int, eta: float = 0.0
) -> tuple[float, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    ensemble = model.forecast(
        batch["inputs"], members, sampler=sampler, num_inference_steps=steps, eta=eta, generator=generator
    )  # (B, S, T_out, H, W, C)
    return time.perf_counter() - start, ensemble


def _changes(prefix: str, new: dict[str, float], ddpm: dict[str, float]) -> dict[str, float]:
    """Relative change (%) of CRPS and CSI-M from the DDPM-1000 ensemble to ``new``."""
    return {
        f"{prefix}{key}_change_pct": 100 * (new[key] - ddpm[key]) / max(abs(ddpm[key]), 1e-12)
        for key in ("crps", "csi_m")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", type=Path, default=Path("runs/demo/prediff/ldm/checkpoints/last.ckpt"))
    parser.add_argument("--contexts", type=int, default=16)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM η (DDPM is always ancestral)")
    parser.add_argument(
        "--noise-floor", action="store_true", help="also rerun DDPM with another seed (chance differences)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_prediff(str(args.ckpt))
    batch = _contexts(args.ckpt, args.contexts)
    results = {}
    chains = {
        "ddpm": ("ddpm", model.schedule.num_train_timesteps, args.seed),
        "ddim": ("ddim", args.ddim_steps, args.seed),
    }
    if args.noise_floor:  # the same DDPM chain with other noise: how much scores move by chance
        chains["ddpm_reseeded"] = ("ddpm", model.schedule.num_train_timesteps, args.seed + 1)
    for name, (sampler, steps, seed) in chains.items():
        seconds, ensemble = _run(model, batch, args.members, sampler, steps, seed, args.eta)
        results[name] = {"steps": steps, "seconds_per_ensemble": seconds / len(batch["inputs"])}
        results[name].update(ensemble_scores(ensemble, batch["targets"]))
    report = {
        "checkpoint": str(args.ckpt),
        "contexts": len(batch["inputs"]),
        "members": args.members,
        "threads": args.threads,
        "ddim_eta": args.eta,
        **results,
        "speedup": results["ddpm"]["seconds_per_ensemble"] / results["ddim"]["seconds_per_ensemble"],
        **_changes("", results["ddim"], results["ddpm"]),
    }
    if args.noise_floor:
        report.update(_changes("reseeded_", results["ddpm_reseeded"], results["ddpm"]))
    out = Path(__file__).parent / "results" / f"prediff_sampling_{time.strftime('%Y%m%d-%H%M')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
