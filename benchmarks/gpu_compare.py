#!/usr/bin/env python
"""Ours vs the reference Earthformer on one GPU, in one process; prints JSON.

For each preset, both models at batch 1: forward and forward+backward time (median of ``--runs``
after ``--warmup``), peak GPU memory (``torch.cuda.max_memory_allocated`` of the timed runs),
forward FLOPs (``torch.utils.flop_counter``) and the achieved FLOP/s as a fraction of the GPU's
measured matmul peak (an 8192³ product in the same precision). Precision: bf16 autocast by
default (the issue's GPU targets: ≥ 3× the reference, ≥ 40 % of the bf16 matmul peak on sevir),
``--fp32`` for float32 with TF32 off. ``--compile`` also times our model under ``torch.compile``.

The reference is built exactly as ``shared/bench/bench_ref.py`` builds it (its shipped YAML and
training script), so the reference package and that file must be importable:

    python benchmarks/gpu_compare.py --bench-ref shared/bench/bench_ref.py --presets sevir,enso

``--device cpu`` runs the same comparison on the CPU (for checking this script without a GPU).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import forward_flops, machine_info, matmul_kernel_flops, time_phase


def load_bench_ref(path: Path):
    """The reference harness as a module (it imports the reference package)."""
    spec = importlib.util.spec_from_file_location("bench_ref", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--bench-ref '{path}' is not a Python file; pass shared/bench/bench_ref.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_ours(preset: str, device: torch.device, compile_mode: str | None) -> torch.nn.Module:
    from earthcast.models.earthformer import Earthformer, get_preset
    from earthcast.training.compile import compile_in_place

    model = Earthformer(get_preset(f"earthformer_{preset}")).to(device)
    if compile_mode:
        compile_in_place(model, compile_mode, fullgraph=True)
    return model


def build_reference(bench_ref, preset: str, device: torch.device) -> torch.nn.Module:
    cls, kwargs, _ = bench_ref.build_model_kwargs(preset)
    return cls(**kwargs).to(device)


def measure(model, x, target, args, dtype, peak: float) -> dict:
    """fwd and fwd+bwd timings, peak memory, FLOPs and the fraction of the matmul peak."""
    result = {"params": sum(p.numel() for p in model.parameters())}
    for phase in ("fwd", "fwdbwd"):
        fwd_only = phase == "fwd"
        result[phase] = time_phase(
            model, x, target, warmup=args.warmup, runs=args.runs, fwd_only=fwd_only, autocast_dtype=dtype
        )
    # counted after timing: on the CPU the first calls also time kernel choices (nn/rowmm.py)
    flops = forward_flops(model, x)
    result["fwd_gflops"] = flops / 1e9
    for phase, multiplier in (("fwd", 1), ("fwdbwd", 3)):  # backward ≈ 2 × forward FLOPs
        achieved = multiplier * flops / (result[phase]["median_ms"] / 1e3)
        result[phase]["fraction_of_matmul_peak"] = round(achieved / peak, 4)
    return result


def release(*models) -> None:
    for model in models:
        del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def compare(preset: str, bench_ref, args, device, dtype, peak: float) -> dict:
    torch.manual_seed(0)
    ours = build_ours(preset, device, args.compile)
    shape_in, shape_out = ours.config.input_shape, ours.config.target_shape
    x = torch.randn(1, *shape_in, device=device)
    target = torch.randn(1, *shape_out, device=device)
    entry = {"input_shape": list(shape_in), "ours": measure(ours, x, target, args, dtype, peak)}
    release(ours)
    if bench_ref is not None:
        reference = build_reference(bench_ref, preset, device)
        entry["ref"] = measure(reference, x, target, args, dtype, peak)
        release(reference)
        for phase in ("fwd", "fwdbwd"):
            ours_ms, ref_ms = entry["ours"][phase]["median_ms"], entry["ref"][phase]["median_ms"]
            entry[f"{phase}_speedup"] = round(ref_ms / ours_ms, 3)
            if device.type == "cuda":
                memory = entry["ours"][phase]["peak_gpu_mb"] / entry["ref"][phase]["peak_gpu_mb"]
                entry[f"{phase}_memory_ratio"] = round(memory, 3)
    return entry


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="sevir,sevirlr,nbody,enso")
    p.add_argument("--bench-ref", type=Path, help="shared/bench/bench_ref.py (omit: ours only)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--fp32", action="store_true", help="float32 with TF32 off instead of bf16 autocast")
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--matmul-size", type=int, default=None, help="n of the n³ peak product (8192 on GPU)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or check the script with --device cpu")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    dtype = None if args.fp32 else torch.bfloat16
    bench_ref = load_bench_ref(args.bench_ref) if args.bench_ref else None
    size = args.matmul_size or (8192 if device.type == "cuda" else 2048)
    kernels = matmul_kernel_flops(device, dtype or torch.float32, n=size)
    peak = max(kernels.values())
    result = {
        "machine": machine_info(torch.get_num_threads()),
        "precision": "fp32" if args.fp32 else "bf16-autocast",
        "compile": args.compile,
        "matmul_peak_flops": peak,
        "matmul_kernel_flops": kernels,
        "presets": {},
    }
    for preset in args.presets.split(","):
        result["presets"][preset] = compare(preset, bench_ref, args, device, dtype, peak)
        print(json.dumps({preset: result["presets"][preset]}), file=sys.stderr)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
