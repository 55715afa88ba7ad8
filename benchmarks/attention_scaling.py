#!/usr/bin/env python
"""Cuboid attention vs full attention as the grid grows; CPU kernel crossover. Prints JSON.

* scaling: one ``CuboidSelfAttention`` layer (fixed cuboid), the same layer with one cuboid
  covering the grid ("full"), and plain ``scaled_dot_product_attention`` over all tokens
  ("full_sdpa", the cheapest full attention) on ``(T, H, W)`` grids whose size grows 4× per step
  up to 65,536 tokens; reports forward time (median of ``--repeats`` best-of-3 timings, so a
  load spike on a shared machine does not set a point) and the log-log slope of time vs T·H·W
  (linear = 1.0; full attention ≈ 2): the fit over all points, the fit without the smallest
  grid (whose fixed overhead flattens the slope) and each 4× step's own slope.
* kernels: forward time of the SDPA and explicit kernels per cuboid volume, which sets
  ``CPU_SDPA_MIN_KEYS`` in ``earthcast/nn/attention.py``.

usage: python benchmarks/attention_scaling.py [--threads 2] [--device cpu] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import device_best_seconds, machine_info
from earthcast.nn.cuboid import CuboidSelfAttention


def _median_ms(fn, device, repeats: int) -> float:
    with torch.no_grad():
        return statistics.median(
            device_best_seconds(fn, torch.device(device), runs=3) * 1000 for _ in range(repeats)
        )


def _layer_ms(shape, cuboid, dim, backend, device, repeats: int = 5):
    layer = CuboidSelfAttention(dim, 4, cuboid, backend=backend).to(device).eval()
    x = torch.randn(1, *shape, dim, device=device)
    return _median_ms(lambda: layer(x), device, repeats)


def _sdpa_ms(tokens: int, dim: int, device, repeats: int) -> float:
    """Plain full attention over ``tokens`` (4 heads of ``dim / 4``): no projections, no masks."""
    q, k, v = (torch.randn(1, 4, tokens, dim // 4, device=device) for _ in range(3))
    return _median_ms(lambda: F.scaled_dot_product_attention(q, k, v), device, repeats)


def slope(sizes, times) -> float:
    xs, ys = [math.log(s) for s in sizes], [math.log(t) for t in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)


def _scaling_row(sizes, times) -> dict:
    return {
        "thw": sizes,
        "fwd_ms": [round(t, 3) for t in times],
        "loglog_slope": round(slope(sizes, times), 3),
        "loglog_slope_without_smallest": round(slope(sizes[1:], times[1:]), 3) if len(sizes) > 2 else None,
        "step_slopes": [round(slope(sizes[i : i + 2], times[i : i + 2]), 3) for i in range(len(sizes) - 1)],
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="best-of-3 timings per point; the median is kept")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    grids = [(4, 8, 8), (4, 16, 16), (4, 32, 32), (4, 64, 64), (4, 128, 128)]
    result = {"machine": machine_info(args.threads), "repeats": args.repeats, "scaling": {}, "kernels": []}
    for name, cuboid in (("cuboid_2x4x4", (2, 4, 4)), ("axial_T", (4, 1, 1)), ("full", None)):
        sizes, times = [], []
        for g in grids:
            n = g[0] * g[1] * g[2]
            if cuboid is None and n > 4096:  # full attention: quadratic memory, stop early
                break
            times.append(_layer_ms(g, cuboid or g, args.dim, "auto", device, args.repeats))
            sizes.append(n)
        result["scaling"][name] = _scaling_row(sizes, times)
    sizes = [math.prod(g) for g in grids if math.prod(g) <= 4096]
    times = [_sdpa_ms(n, args.dim, device, args.repeats) for n in sizes]
    result["scaling"]["full_sdpa"] = _scaling_row(sizes, times)
    for vol_cuboid in ((1, 1, 16), (1, 4, 8), (1, 8, 8), (2, 8, 8), (4, 8, 8), (8, 8, 8)):
        row = {"cuboid": vol_cuboid, "keys": math.prod(vol_cuboid)}
        for backend in ("sdpa", "eager"):
            row[f"{backend}_ms"] = round(_layer_ms((8, 32, 32), vol_cuboid, args.dim, backend, device), 3)
        result["kernels"].append(row)
    print(json.dumps(result))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        path = Path(args.out) / f"attention_scaling_{args.device}_t{args.threads}.json"
        path.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
