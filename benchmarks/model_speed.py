#!/usr/bin/env python
"""Time one earthcast Earthformer preset (forward, forward+backward, peak memory, FLOP/s); prints JSON.

usage: python benchmarks/model_speed.py --preset earthformer_sevirlr [--threads 2] [--runs 3]
       [--phase both|fwd|fwdbwd] [--hw H,W] [--device cpu|cuda] [--bf16] [--flops]
       [--compile [MODE]]
Run each phase in its own process when comparing peak memory (``run_all.py`` does).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (
    add_cpu_allocator_argument,
    ensure_live_allocator,
    forward_flops,
    machine_info,
    matmul_kernel_flops,
    rss_mb,
    time_phase,
)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--preset", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--phase", choices=("fwd", "fwdbwd", "both"), default="both")
    p.add_argument("--hw", default=None, help="override H,W")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    p.add_argument(
        "--flops", action="store_true", help="count forward FLOPs and report FLOP/s vs matmul peak"
    )
    p.add_argument("--set", nargs="*", default=[], help="config overrides key=value (python literal)")
    p.add_argument(
        "--compile",
        nargs="?",
        const="default",
        default=None,
        metavar="MODE",
        help="torch.compile the model (Inductor; MODE e.g. max-autotune); the compile time is in "
        "each phase's warmup_ms",
    )
    add_cpu_allocator_argument(p, "this process")
    args = p.parse_args(argv)
    if args.cpu_allocator == "live":
        ensure_live_allocator(sys.argv)
    torch.set_num_threads(args.threads)
    if args.cpu_allocator == "reuse":
        from earthcast.utils.allocator import keep_freed_memory

        keep_freed_memory()
    torch.manual_seed(0)

    import ast

    from earthcast.models.earthformer import Earthformer, get_preset

    cfg = get_preset(args.preset)
    if args.hw:
        h, w = (int(v) for v in args.hw.split(","))
        cfg = cfg.replace(
            input_shape=(cfg.input_shape[0], h, w, cfg.input_shape[3]),
            target_shape=(cfg.target_shape[0], h, w, cfg.target_shape[3]),
        )
    overrides = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in args.set)}
    if overrides:
        cfg = cfg.replace(**overrides)
    device = torch.device(args.device)
    rss0 = rss_mb()
    t0 = time.perf_counter()
    model = Earthformer(cfg).to(device)
    if args.compile:
        # imported only here: it loads Lightning (~175 MB resident), which the reference side of a
        # memory comparison never pays
        from earthcast.training.compile import compile_in_place

        compile_in_place(model, args.compile, fullgraph=True)
    result = {
        "impl": "earthcast",
        "preset": args.preset,
        "batch": args.batch,
        "machine": machine_info(args.threads),
        "input_shape": list(cfg.input_shape),
        "build_s": round(time.perf_counter() - t0, 3),
        "params": sum(p.numel() for p in model.parameters()),
        "rss_before_build_mb": rss0,
        "precision": "bf16-autocast" if args.bf16 else "fp32",
        "cpu_allocator": args.cpu_allocator,
        "compile": args.compile,
    }
    x = torch.randn(args.batch, *cfg.input_shape, device=device)
    target = torch.randn(args.batch, *cfg.target_shape, device=device)
    dtype = torch.bfloat16 if args.bf16 else None
    for phase in ("fwd", "fwdbwd"):
        if args.phase in (phase, "both"):
            result[phase] = time_phase(
                model,
                x,
                target,
                warmup=args.warmup,
                runs=args.runs,
                fwd_only=phase == "fwd",
                autocast_dtype=dtype,
            )
    from earthcast.nn.rowmm import resolved_cpu_matmul

    result["cpu_matmul"] = resolved_cpu_matmul() if device.type == "cpu" else None  # after the runs: as used
    if args.flops:
        flops = forward_flops(model, x)
        kernels = matmul_kernel_flops(device, torch.bfloat16 if args.bf16 else torch.float32)
        peak = max(kernels.values())
        result["fwd_flops"] = flops
        result["matmul_peak_flops"] = peak
        result["matmul_kernel_flops"] = kernels
        for phase, mult in (("fwd", 1), ("fwdbwd", 3)):  # backward ≈ 2× forward FLOPs
            if phase in result:
                achieved = mult * flops / (result[phase]["median_ms"] / 1000)
                result[phase]["achieved_flops"] = achieved
                result[phase]["fraction_of_matmul_peak"] = round(achieved / peak, 4)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
