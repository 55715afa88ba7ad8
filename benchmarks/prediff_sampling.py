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

from earthcast.metrics import get_metric
from earthcast.metrics.categorical import SEVIR_THRESHOLDS
from earthcast.metrics.probabilistic import CRPS, SpreadSkill
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


def _score(ensemble: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    crps = CRPS("ecdf")
    crps.update(ensemble, targets)
    csi = get_metric("contingency", thresholds=SEVIR_THRESHOLDS, scale=255.0)
    csi.update(ensemble.mean(dim=1), targets)
    spread = SpreadSkill()
    spread.update(ensemble, targets)
    return {
        "crps": float(crps.compute()),
        "csi_m": float(csi.compute()["csi_m"]),
        "spread_skill_corrected": float(spread.compute()["spread_skill_corrected"]),
    }


def _run(model, batch, members: int, sampler: str, steps: int, seed: int) -> tuple[float, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    ensemble = model.forecast(
        batch["inputs"], members, sampler=sampler, num_inference_steps=steps, eta=0.0, generator=generator
    )  # (B, S, T_out, H, W, C)
    return time.perf_counter() - start, ensemble


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", type=Path, default=Path("runs/demo/prediff/ldm/checkpoints/last.ckpt"))
    parser.add_argument("--contexts", type=int, default=16)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_prediff(str(args.ckpt))
    batch = _contexts(args.ckpt, args.contexts)
    results = {}
    chains = (("ddpm", "ddpm", model.schedule.num_train_timesteps), ("ddim", "ddim", args.ddim_steps))
    for name, sampler, steps in chains:
        seconds, ensemble = _run(model, batch, args.members, sampler, steps, args.seed)
        results[name] = {"steps": steps, "seconds_per_ensemble": seconds / len(batch["inputs"])}
        results[name].update(_score(ensemble, batch["targets"]))
    ddpm, ddim = results["ddpm"], results["ddim"]
    report = {
        "checkpoint": str(args.ckpt),
        "contexts": len(batch["inputs"]),
        "members": args.members,
        "threads": args.threads,
        **results,
        "speedup": ddpm["seconds_per_ensemble"] / ddim["seconds_per_ensemble"],
        "crps_change_pct": 100 * (ddim["crps"] - ddpm["crps"]) / ddpm["crps"],
        "csi_m_change_pct": 100 * (ddim["csi_m"] - ddpm["csi_m"]) / max(ddpm["csi_m"], 1e-12),
    }
    out = Path(__file__).parent / "results" / f"prediff_sampling_{time.strftime('%Y%m%d-%H%M')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
