"""Timing/memory protocol shared by the earthcast benchmarks (mirrors shared/bench/bench_ref.py),
and the ensemble scores the PreDiff benchmarks report (``ensemble_scores``).

* forward: ``eval()`` + ``torch.no_grad()``; forward+backward: ``train()`` (dropout on), MSE to a
  fixed random target, ``backward()``, gradients reset (``set_to_none``) before each iteration.
* ``warmup`` untimed iterations, then ``runs`` timed ones; median/min in milliseconds.
* Peak RSS from ``VmHWM`` after resetting the high-water mark (``/proc/self/clear_refs``), so
  every phase has its own peak.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from earthcast.utils.timing import best_seconds

# "live" memory: every block of 64 KiB or more is a fresh mapping returned to the system on free,
# so the peak resident set follows the live tensors (no allocator slack) on both sides. Its times
# are dominated by page faults and are not comparable; only its memory is reported.
LIVE_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def add_cpu_allocator_argument(parser, whose: str) -> None:
    """``--cpu-allocator system|reuse|live``: the malloc policy ``whose`` process(es) run under."""
    parser.add_argument(
        "--cpu-allocator",
        choices=("system", "reuse", "live"),
        default="system",
        help=f"malloc policy of {whose}: system (glibc defaults); reuse: keep freed memory "
        "(earthcast.utils.allocator), as earthcast training does on CPU; live: fresh mappings, so "
        "peak RSS follows the live tensors (compare memory only, times are page-fault bound)",
    )


def ensure_live_allocator(argv: list[str]) -> None:
    """Re-run this script under :data:`LIVE_ENVIRONMENT` unless it already runs under it
    (glibc reads these variables at start-up)."""
    if all(os.environ.get(k) == v for k, v in LIVE_ENVIRONMENT.items()):
        return
    os.execve(sys.executable, [sys.executable, *argv], {**os.environ, **LIVE_ENVIRONMENT})


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    kb = _status_kb("VmHWM")
    return None if kb is None else kb / 1024


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def write_stamped_json(results: dict, folder: str | Path, name: str) -> Path:
    """Write ``results`` to ``folder/name_YYYYmmdd-HHMM.json`` (UTC), so runs never overwrite."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
    path = folder / f"{name}_{stamp}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}", file=sys.stderr)
    return path


def machine_info(threads: int) -> dict:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_phase(model, x, target, *, warmup: int, runs: int, fwd_only: bool, autocast_dtype=None) -> dict:
    """Time forward (inference) or forward+backward (training step without optimizer)."""
    device = x.device
    model.train(not fwd_only)

    def step():
        ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else _null()
        if fwd_only:
            with torch.no_grad(), ctx:
                model(x)
            return
        model.zero_grad(set_to_none=True)
        with ctx:
            out = model(x)
            loss = torch.nn.functional.mse_loss(out.float(), target)
        loss.backward()

    warmup_ms = []
    for _ in range(warmup):  # the first call carries torch.compile's compilation, if any
        t0 = time.perf_counter()
        step()
        _sync(device)
        warmup_ms.append(round((time.perf_counter() - t0) * 1000, 3))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ok = reset_peak_rss()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        _sync(device)
        samples.append((time.perf_counter() - t0) * 1000)
    out = {
        "median_ms": round(statistics.median(samples), 3),
        "min_ms": round(min(samples), 3),
        "samples_ms": [round(s, 3) for s in samples],
        "warmup_ms": warmup_ms,
        "peak_rss_mb": peak_rss_mb(),
        "rss_peak_reset_ok": ok,
    }
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def forward_flops(model, x) -> int | None:
    """FLOPs of one forward pass counted by ``torch.utils.flop_counter`` (eval mode)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    return int(counter.get_total_flops())


def matmul_kernel_flops(device: torch.device, dtype=torch.float32, n: int = 2048, runs: int = 5) -> dict:
    """FLOP/s of an ``n × n × n`` product per kernel: ``{"mm": …, "onednn_conv1x1": …}``.

    Their maximum is the machine's matmul peak, the roofline we compare against: ``torch.mm`` and,
    for float32 on the CPU, the same product as a oneDNN 1×1 convolution (which earthcast's Linear
    layers use where it is faster; see ``nn/rowmm.py``), so the peak is what the machine can do,
    not what one library does."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    kernels = {"mm": lambda: a @ b}
    if device.type == "cpu" and dtype == torch.float32 and torch.backends.mkldnn.is_available():
        from earthcast.nn.rowmm import _conv_rows

        kernels["onednn_conv1x1"] = lambda: _conv_rows(a, b, None)
    return {name: 2 * n**3 / device_best_seconds(fn, device, runs) for name, fn in kernels.items()}


def device_best_seconds(fn, device: torch.device, runs: int) -> float:
    return best_seconds(fn, runs, warmup=2, sync=lambda: _sync(device))


def ensemble_scores(ensemble: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """CRPS (ecdf), CSI-M of the ensemble mean (SEVIR thresholds of 255 on the [0, 1] scale), MSE of
    the ensemble mean and the corrected spread/skill: ``ensemble (B, S, T, H, W, C)``, ``targets
    (B, T, H, W, C)``."""
    from earthcast.metrics import get_metric
    from earthcast.metrics.categorical import SEVIR_THRESHOLDS
    from earthcast.metrics.probabilistic import ensemble_skill_metrics

    mean = ensemble.mean(dim=1)  # (B, T, H, W, C)
    skill = ensemble_skill_metrics()
    for metric in skill.values():
        metric.update(ensemble, targets)
    crps, spread = skill["crps"], skill["spread_skill"]
    csi = get_metric("contingency", thresholds=SEVIR_THRESHOLDS, scale=255.0)
    csi.update(mean, targets)
    return {
        "crps": float(crps.compute()),
        "csi_m": float(csi.compute()["csi_m"]),
        "mse": float((mean - targets).square().mean()),
        "spread_skill_corrected": float(spread.compute()["spread_skill_corrected"]),
    }
