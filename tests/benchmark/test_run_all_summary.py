"""``benchmarks/run_all.py``'s bookkeeping: ratios, kept rounds, like-with-like memory, and the
FLOP count taken at the timed batch (the benchmark itself is too slow for the default suite)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import run_all


def rounds(ms, mb, before):
    return [{"median_ms": t, "peak_rss_mb": m, "rss_before_build_mb": before} for t, m in zip(ms, mb)]


def test_summary_keeps_rounds_and_compares_like_with_like():
    ours = [{**r, "cpu_matmul": "onednn"} for r in rounds([100, 120, 110], [300, 310, 305], 222)]
    summary = run_all._summarise(ours, rounds([200, 260, 220], [600, 640, 610], 227))
    assert (summary["ours_ms"], summary["ref_ms"]) == (110, 220)
    assert summary["speedup"] == 2.0 and summary["memory_ratio"] == pytest.approx(305 / 610, abs=1e-3)
    assert summary["ours_rounds_ms"] == [100, 120, 110]
    assert summary["ref_rounds_peak_rss_mb"] == [600, 640, 610]
    assert summary["ours_cpu_matmul"] == ["onednn"] and summary["baseline_gap_mb"] == -5
    assert "warning" not in summary
    heavy = run_all._summarise(rounds([100], [500], 399), rounds([200], [600], 227))
    assert heavy["baseline_gap_mb"] == 172 and "does not compare like with like" in heavy["warning"]


def test_flop_count_is_taken_at_the_timed_batch_and_settings(monkeypatch):
    seen = {}

    def fake_run(cmd, env=None):
        seen["cmd"], seen["env"] = cmd, env
        return {"fwd_flops": 4e9, "matmul_peak_flops": 1e11, "fwd": {"fraction_of_matmul_peak": 0.4}}

    monkeypatch.setattr(run_all, "_run_json", fake_run)
    args = SimpleNamespace(
        threads=2, runs=1, batch=4, cpu_allocator="reuse", set=["checkpoint_level=1"], cpu_matmul="blas"
    )
    run_all.flops_fraction("earthformer_enso", args)
    cmd = seen["cmd"]
    assert cmd[cmd.index("--batch") + 1] == "4" and cmd[cmd.index("--cpu-allocator") + 1] == "reuse"
    assert "checkpoint_level=1" in cmd and seen["env"]["EARTHCAST_CPU_MATMUL"] == "blas"
