#!/usr/bin/env python
"""Earthformer speed/memory, earthcast vs the reference (earthformer 0.2.1), side by side; JSON out.

For every preset and phase, each implementation is measured in a *fresh process* (so peak RSS is
per phase), ours and the reference alternating ``--rounds`` times; the median of the rounds is
reported with the ratios reference/ours (speed-up) and ours/reference (memory). The reference
runs in its own venv (``EARTHCAST_REF_PYTHON``, see ``make ref``); without it only our numbers are
reported. Also reports achieved forward FLOP/s as a fraction of this machine's fp32 matmul peak.

usage: python benchmarks/run_all.py [--presets sevirlr,enso,...] [--threads 2] [--rounds 3]
       [--batch 1] [--set key=value ...] [--cpu-allocator system|reuse|live]
       [--out benchmarks/results] [--skip-ref]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _harness import LIVE_ENVIRONMENT, add_cpu_allocator_argument, write_stamped_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PRESETS = {  # earthcast preset -> bench_ref.py config
    "sevir": ("earthformer_sevir", "sevir"),
    "sevirlr": ("earthformer_sevirlr", "sevirlr"),
    "nbody": ("earthformer_nbody", "nbody"),
    "enso": ("earthformer_enso", "enso"),
}


def _shared_bench() -> Path | None:
    for root in (os.environ.get("EARTHCAST_SHARED"), ROOT.parent / "shared"):
        if root and (Path(root) / "bench" / "bench_ref.py").is_file():
            return Path(root) / "bench"
    return None


def reference_side() -> tuple[str | None, Path | None]:
    """The reference's Python (``EARTHCAST_REF_PYTHON``) and ``bench_ref.py``'s folder, or
    ``(None, None)`` when either is missing (then only our side is measured)."""
    ref_python, bench = os.environ.get("EARTHCAST_REF_PYTHON") or None, _shared_bench()
    if ref_python and Path(ref_python).exists() and bench:
        return ref_python, bench
    return None, None


def _run_json(cmd: list[str], env: dict | None = None) -> dict:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=3600, env=env)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])


def measure_ours(preset: str, phase: str, args) -> dict:
    cmd = [
        sys.executable,
        str(HERE / "model_speed.py"),
        "--preset",
        preset,
        "--phase",
        phase,
        "--threads",
        str(args.threads),
        "--runs",
        str(args.runs),
        "--warmup",
        "1",
        "--cpu-allocator",
        args.cpu_allocator,
        "--batch",
        str(args.batch),
        *(["--set", *args.set] if args.set else []),
    ]
    r = _run_json(cmd, _ours_environment(args))
    return {**r[phase], **{k: r.get(k) for k in ("rss_before_build_mb", "cpu_matmul")}}


def _ours_environment(args) -> dict | None:
    """``--cpu-matmul`` other than ``auto`` pins our float32 CPU kernel (``EARTHCAST_CPU_MATMUL``)."""
    if args.cpu_matmul == "auto":
        return None
    return {**os.environ, "EARTHCAST_CPU_MATMUL": args.cpu_matmul}


def measure_ref(config: str, phase: str, args, ref_python: str, bench: Path) -> dict:
    cmd = [
        ref_python,
        str(bench / "bench_ref.py"),
        "model",
        "--config",
        config,
        "--phase",
        phase,
        "--threads",
        str(args.threads),
        "--runs",
        str(args.runs),
        "--warmup",
        "1",
        "--batch",
        str(args.batch),
    ]
    env = None
    if args.cpu_allocator == "reuse":  # the same malloc policy, set through the environment
        from earthcast.utils.allocator import REUSE_ENVIRONMENT

        env = {**os.environ, **REUSE_ENVIRONMENT}
    elif args.cpu_allocator == "live":
        env = {**os.environ, **LIVE_ENVIRONMENT}
    r = _run_json(cmd, env)
    return {**r[phase], "rss_before_build_mb": r.get("rss_before_build_mb")}


def flops_fraction(preset: str, args) -> dict:
    cmd = [
        sys.executable,
        str(HERE / "model_speed.py"),
        "--preset",
        preset,
        "--phase",
        "fwd",
        "--flops",
        "--threads",
        str(args.threads),
        "--runs",
        str(args.runs),
        "--batch",  # the FLOPs of the batch the phases are timed with
        str(args.batch),
        "--cpu-allocator",
        args.cpu_allocator,
        *(["--set", *args.set] if args.set else []),
    ]
    r = _run_json(cmd, _ours_environment(args))
    return {
        "fwd_gflops": r["fwd_flops"] / 1e9,
        "matmul_peak_gflops_s": r["matmul_peak_flops"] / 1e9,
        "matmul_kernel_gflops_s": {k: round(v / 1e9, 1) for k, v in r.get("matmul_kernel_flops", {}).items()},
        "fwd_fraction_of_peak": r["fwd"]["fraction_of_matmul_peak"],
    }


def fractions_of_peak(entry: dict) -> dict:
    """Achieved FLOP/s of every measured phase and side as a fraction of the matmul peak
    (forward FLOPs counted once for both sides: the same model; backward ≈ 2× forward)."""
    out = {}
    for phase, mult in (("fwd", 1), ("fwdbwd", 3)):
        for side in ("ours", "ref"):
            ms = entry[phase].get(f"{side}_ms")
            if ms:
                flops_s = mult * entry["fwd_gflops"] / (ms / 1000)
                out[f"{phase}_{side}_fraction_of_peak"] = round(flops_s / entry["matmul_peak_gflops_s"], 3)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="sevirlr,enso,nbody,sevir")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        help="config overrides key=value for *our* model only (e.g. checkpoint_level=1); the "
        "reference keeps its shipped configuration",
    )
    p.add_argument(
        "--cpu-matmul",
        choices=("auto", "onednn", "blas"),
        default="auto",
        help="our float32 CPU kernel (auto: timed once per process; each round records its choice)",
    )
    p.add_argument("--out", default=None, help="folder for the JSON result file")
    p.add_argument("--skip-ref", action="store_true")
    add_cpu_allocator_argument(p, "both implementations")
    args = p.parse_args(argv)
    ref_python, bench = (None, None) if args.skip_ref else reference_side()
    results = {
        "threads": args.threads,
        "batch": args.batch,
        "rounds": args.rounds,
        "reference": bool(ref_python),
        "cpu_allocator": args.cpu_allocator,
        "cpu_matmul": args.cpu_matmul,
        "ours_overrides": args.set,
        "presets": {},
    }
    for name in args.presets.split(","):
        preset, config = PRESETS[name]
        entry = {"preset": preset}
        for phase in ("fwd", "fwdbwd"):
            ours, ref = [], []
            for _ in range(args.rounds):
                ours.append(measure_ours(preset, phase, args))
                if ref_python:
                    ref.append(measure_ref(config, phase, args, ref_python, bench))
            entry[phase] = _summarise(ours, ref)
        entry.update(flops_fraction(preset, args))
        entry.update(fractions_of_peak(entry))
        results["presets"][name] = entry
        print(json.dumps({name: entry}), flush=True)
    if args.out:
        tag = "" if args.cpu_allocator == "system" else f"_{args.cpu_allocator}"
        tag += "" if args.batch == 1 else f"_b{args.batch}"
        tag += "".join("_" + "".join(c for c in s if c.isalnum() or c == "_") for s in args.set)
        write_stamped_json(results, args.out, f"model_speed_cpu_fp32_t{args.threads}{tag}")
    return results


BASELINE_GAP_MB = 20
"""Largest difference of the two sides' resident memory before the model is built for a memory
ratio to compare like with like (both ~222 MB after ``import torch``); a larger one is flagged."""


def _summarise(ours: list[dict], ref: list[dict]) -> dict:
    """Medians of the rounds and the ratios, with every round's numbers kept (the margins are thin
    and these machines noisy: a reader must be able to check the spread) and what each side's
    process held before building its model."""
    out = {**_side("ours", ours), "ours_cpu_matmul": sorted({str(r.get("cpu_matmul")) for r in ours})}
    if ref:
        out.update(_side("ref", ref))
        out["speedup"] = round(out["ref_ms"] / out["ours_ms"], 3)
        out["memory_ratio"] = round(out["ours_peak_rss_mb"] / out["ref_peak_rss_mb"], 3)
        gap = (out["ours_rss_before_build_mb"] or 0) - (out["ref_rss_before_build_mb"] or 0)
        out["baseline_gap_mb"] = round(gap, 1)
        if abs(gap) > BASELINE_GAP_MB:
            out["warning"] = (
                f"the processes held {gap:+.0f} MB more (ours) before building the model: the memory "
                "ratio does not compare like with like (an import the other side does not pay?)"
            )
    return out


def _side(name: str, rounds: list[dict]) -> dict:
    before = [r["rss_before_build_mb"] for r in rounds if r.get("rss_before_build_mb") is not None]
    return {
        f"{name}_ms": round(statistics.median(r["median_ms"] for r in rounds), 1),
        f"{name}_peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in rounds), 1),
        f"{name}_rounds_ms": [round(r["median_ms"], 1) for r in rounds],
        f"{name}_rounds_peak_rss_mb": [round(r["peak_rss_mb"], 1) for r in rounds],
        f"{name}_rss_before_build_mb": round(statistics.median(before), 1) if before else None,
    }


if __name__ == "__main__":
    main()
