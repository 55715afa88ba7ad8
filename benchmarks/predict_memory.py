#!/usr/bin/env python
"""Peak memory and time of forecasting a file: streaming ``predict_file`` vs all in memory; JSON.

Writes ``--samples`` contexts of ``(T, H, W)`` as NetCDF (or ``.npy``), then forecasts them with a
stand-in model (the last frame, repeated) twice, each in a fresh process: ``streaming`` is
``earthcast.cli.predict.predict_file`` (contexts read and forecasts appended one batch at a time);
``in_memory`` reads every context, forecasts them with ``forecast_arrays`` and writes one
``forecast_dataset`` with ``write_forecast``. Peak RSS is the process's ``VmHWM``.

usage: python benchmarks/predict_memory.py [--samples 1000] [--format nc|npy] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

T, H, W = 8, 128, 128
CONTRACT = {
    "dataset": "sevir",
    "in_len": T,
    "out_len": T,
    "height": H,
    "width": W,
    "channels_in": 1,
    "channels_out": 1,
    "scale": "01",
    "units": "VIL code",
    "variable": "vil",
    "frame_interval_minutes": 5,
}

_CHILD = r"""
import json, sys, time
from pathlib import Path
import torch
from torch import nn

class Last(nn.Module):
    def forward(self, x):  # (B, T, H, W, C) -> (B, T, H, W, C)
        return x[:, -1:].repeat(1, x.shape[1], 1, 1, 1) * 0.5

mode, source, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
batch, contract = int(sys.argv[4]), json.loads(sys.argv[5])
start = time.perf_counter()
if mode == "streaming":
    from earthcast.cli.predict import predict_file
    predict_file(Last(), contract, source, out, batch_size=batch)
else:
    import numpy as np
    from earthcast.inference import forecast_arrays
    from earthcast.io.arrays import read_samples
    from earthcast.io.forecast import forecast_dataset, write_forecast
    with read_samples(source) as samples:
        contexts = np.asarray(samples.values)
    forecast = forecast_arrays(Last(), contexts, contract, batch_size=batch)
    write_forecast(forecast_dataset(forecast, contract), out)
seconds = time.perf_counter() - start
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mb": int(status["VmHWM"].split()[0]) // 1024,
                  "output_mb": round(out.stat().st_size / 2**20, 1)}))
"""


def write_contexts(folder: Path, samples: int, fmt: str) -> Path:
    values = np.random.default_rng(0).random((samples, T, H, W), dtype=np.float32)
    if fmt == "npy":
        path = folder / "contexts.npy"
        np.save(path, values)
        return path
    import xarray as xr

    path = folder / "contexts.nc"
    xr.Dataset({"vil": (("sample", "time", "y", "x"), values)}).to_netcdf(path)
    return path


def run(mode: str, source: Path, out: Path, batch: int) -> dict:
    command = [sys.executable, "-c", _CHILD, mode, str(source), str(out), str(batch), json.dumps(CONTRACT)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--format", choices=("nc", "npy"), default="nc")
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = write_contexts(folder, args.samples, args.format)
        result = {
            "samples": args.samples,
            "context_shape": [T, H, W],
            "input_mb": round(source.stat().st_size / 2**20, 1),
            "format": args.format,
            "batch": args.batch,
        }
        for mode in ("streaming", "in_memory"):
            result[mode] = run(mode, source, folder / f"{mode}.nc", args.batch)
    result["memory_ratio"] = round(result["streaming"]["peak_rss_mb"] / result["in_memory"]["peak_rss_mb"], 3)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
