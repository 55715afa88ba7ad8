#!/usr/bin/env python
"""Folded vs two-step head stages (nearest upsample → conv → conv), side by side. Prints JSON.

For every head stage of a preset that upsamples by whole factors, times forward+backward of the
stage as the model runs it (folded into one small-grid convolution, ``nn/folded_upsample.py``)
and of the same stage computed in two steps (sub-pixel upsampling convolution, then the conv
stack), alternating the two ``--rounds`` times in one process, and reports the median times,
their ratio and the convolution FLOPs of each.

usage: python benchmarks/head_fold.py [--preset earthformer_sevir] [--threads 2] [--rounds 5]
       [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import machine_info
from earthcast.models.earthformer import Earthformer, get_preset
from earthcast.nn.stems import per_frame


def _two_steps(stage, x):
    return per_frame(stage.convs, stage.upsample(x))


def _fwd_bwd_ms(fn, x) -> float:
    x = x.detach().requires_grad_()
    t0 = time.perf_counter()
    fn(x).square().mean().backward()
    return (time.perf_counter() - t0) * 1000


def _conv_gflops(fn, x) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(x)
    return counter.get_flop_counts()["Global"].get(torch.ops.aten.convolution, 0) / 1e9


def head_stage_inputs(model: Earthformer, preset_cfg) -> list[tuple[torch.nn.Module, torch.Tensor]]:
    """Each head stage with a random input of the shape it receives in the model."""
    head = model.head
    stages = list(head.stages) if hasattr(head, "stages") else [head]
    captured: list[tuple[torch.nn.Module, torch.Tensor]] = []
    hooks = [
        stage.register_forward_pre_hook(lambda mod, args: captured.append((mod, torch.randn_like(args[0]))))
        for stage in stages
    ]
    with torch.no_grad():
        model.eval()(torch.randn(1, *preset_cfg.input_shape))
    for hook in hooks:
        hook.remove()
    return captured


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--preset", default="earthformer_sevir")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=None, help="folder for the JSON result file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = get_preset(args.preset)
    model = Earthformer(cfg).train()
    stages = []
    for index, (stage, x) in enumerate(head_stage_inputs(model, cfg)):
        stage.train()
        if stage.upsample.whole_factors(x.shape[2:4]) is None:
            continue  # not a whole-factor resize: nothing is folded
        times = {"folded": [], "two_steps": []}
        fns = {"folded": stage, "two_steps": lambda t, s=stage: _two_steps(s, t)}
        for fn in fns.values():  # warm-up
            _fwd_bwd_ms(fn, x)
        for _ in range(args.rounds):
            for name, fn in fns.items():
                times[name].append(_fwd_bwd_ms(fn, x))
        folded, two = statistics.median(times["folded"]), statistics.median(times["two_steps"])
        stages.append(
            {
                "stage": index,
                "input_shape": list(x.shape),
                "folded_ms": round(folded, 2),
                "two_steps_ms": round(two, 2),
                "speedup": round(two / folded, 3),
                "fwd_conv_gflops_folded": round(_conv_gflops(fns["folded"], x), 3),
                "fwd_conv_gflops_two_steps": round(_conv_gflops(fns["two_steps"], x), 3),
            }
        )
    result = {
        "benchmark": "head_fold",
        "preset": args.preset,
        "rounds": args.rounds,
        "machine": machine_info(args.threads),
        "stages": stages,
    }
    print(json.dumps(result))
    if args.out:
        path = Path(args.out) / f"head_fold_{args.preset}_t{args.threads}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
