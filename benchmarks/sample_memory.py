#!/usr/bin/env python
"""Training-step memory per sample, earthcast vs the reference (earthformer 0.2.1); JSON out.

Peak RSS at batch 1 mixes two things: what every process pays before and around a step (the
interpreter, PyTorch's libraries and the code pages a step touches, the weights, kernel caches)
and what the step itself needs (activations kept for backward, gradients, temporaries). Only the
second grows with the batch, and it is what decides how large a batch fits. This script measures
fwd+bwd peak RSS at two batch sizes for both implementations under the "live" allocator (every
block of 64 KiB or more mapped fresh and returned on free, so the peak follows the live tensors,
not glibc's slack) and reports

* ``per_sample_mb`` = (peak(B2) − peak(B1)) / (B2 − B1): step memory per sample;
* ``fixed_mb`` = peak(B1) − B1 · per_sample: what does not grow with the batch;
* ``per_sample_ratio`` = ours / reference.

Times under the live allocator are page-fault bound and are not reported.

usage: python benchmarks/sample_memory.py [--presets sevirlr,enso,nbody,sevir] [--batches 1,2]
       [--threads 2] [--out benchmarks/results]
(the reference runs when ``EARTHCAST_REF_PYTHON`` points at its venv, see ``make ref``)
"""

from __future__ import annotations

import argparse
import json

from _harness import write_stamped_json
from run_all import PRESETS, measure_ours, measure_ref, reference_side


def per_sample(peaks: dict[int, float]) -> dict:
    """``{batch: peak MB}`` at two batch sizes → per-sample and fixed memory."""
    (b1, m1), (b2, m2) = sorted(peaks.items())
    slope = (m2 - m1) / (b2 - b1)
    return {
        "peak_rss_mb": {str(b): m for b, m in sorted(peaks.items())},
        "per_sample_mb": round(slope, 1),
        "fixed_mb": round(m1 - b1 * slope, 1),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="sevirlr,enso,nbody,sevir")
    p.add_argument("--batches", default="1,2", help="two batch sizes")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="folder for the JSON result file")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if len(batches) != 2 or batches[0] == batches[1] or min(batches) < 1:
        p.error(f"--batches {args.batches!r}: give two different positive batch sizes, e.g. 1,2")
    ref_python, bench = reference_side()

    results = {"threads": args.threads, "cpu_allocator": "live", "batches": batches, "presets": {}}
    for name in args.presets.split(","):
        preset, config = PRESETS[name]
        peaks: dict[str, dict[int, float]] = {"ours": {}, "ref": {}}
        for batch in batches:
            run = argparse.Namespace(threads=args.threads, runs=1, cpu_allocator="live", batch=batch, set=[])
            peaks["ours"][batch] = measure_ours(preset, "fwdbwd", run)["peak_rss_mb"]
            if ref_python:
                peaks["ref"][batch] = measure_ref(config, "fwdbwd", run, ref_python, bench)["peak_rss_mb"]
        entry = {"preset": preset, "ours": per_sample(peaks["ours"])}
        if ref_python:
            entry["ref"] = per_sample(peaks["ref"])
            ratio = entry["ours"]["per_sample_mb"] / entry["ref"]["per_sample_mb"]
            entry["per_sample_ratio"] = round(ratio, 3)
        results["presets"][name] = entry
        print(json.dumps({name: entry}), flush=True)
    if args.out:
        write_stamped_json(results, args.out, f"sample_memory_cpu_fp32_t{args.threads}")
    return results


if __name__ == "__main__":
    main()
