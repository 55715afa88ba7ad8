#!/usr/bin/env python
"""Cuboid attention vs full attention as the grid grows; CPU kernel crossover. Prints JSON.

* scaling: one ``CuboidSelfAttention`` layer (fixed cuboid) and full attention (one cuboid =
  the grid) on ``(T, H, W)`` grids whose size grows 4× per step; reports forward time and the
  log-log slope of time vs T·H·W (linear = 1.0; full attention ≈ 2).
* kernels: forward time of the SDPA and explicit kernels per cuboid volume, which sets
  ``CPU_SDPA_MIN_KEYS`` in ``earthcast/nn/attention.py``.

usage: python benchmarks/attention_scaling.py [--threads 2] [--device cpu] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import device_best_seconds, machine_info
from earthcast.nn.cuboid import CuboidSelfAttention


def _layer_ms(shape, cuboid, dim, backend, device):
    layer = CuboidSelfAttention(dim, 4, cuboid, backend=backend).to(device).eval()
    x = torch.randn(1, *shape, dim, device=device)
    with torch.no_grad():
        return device_best_seconds(lambda: layer(x), torch.device(device), runs=5) * 1000


def slope(sizes, times) -> float:
    xs, ys = [math.log(s) for s in sizes], [math.log(t) for t in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    grids = [(4, 8, 8), (4, 16, 16), (4, 32, 32), (4, 64, 64)]
    result = {"machine": machine_info(args.threads), "scaling": {}, "kernels": []}
    for name, cuboid in (("cuboid_2x4x4", (2, 4, 4)), ("axial_T", (4, 1, 1)), ("full", None)):
        sizes, times = [], []
        for g in grids:
            n = g[0] * g[1] * g[2]
            if cuboid is None and n > 4096:  # full attention: quadratic memory, stop early
                break
            times.append(_layer_ms(g, cuboid or g, args.dim, "auto", device))
            sizes.append(n)
        result["scaling"][name] = {
            "thw": sizes,
            "fwd_ms": [round(t, 3) for t in times],
            "loglog_slope": round(slope(sizes, times), 3),
        }
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
