"""Shared test configuration: deterministic seeds, small threads, the reference-venv locator, and
``quiet_trainer`` (a CPU Lightning trainer with no logger, checkpoints, bars or sanity check)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

torch.set_num_threads(1)

GPU_TEST_DEVICE = os.environ.get("EARTHCAST_GPU_TEST_DEVICE") or (
    "cuda" if torch.cuda.is_available() else None
)
"""Where the ``gpu`` tests run: CUDA when present; ``EARTHCAST_GPU_TEST_DEVICE=cpu`` runs them on the
CPU to check the tests themselves."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) the ``gpu`` tests on machines without a CUDA device, and the ``slow``
    tests unless a ``-m`` expression names them."""
    excluded = set()
    if GPU_TEST_DEVICE is None:
        excluded.add("gpu")
    if "slow" not in (config.getoption("markexpr") or ""):
        excluded.add("slow")
    dropped = [item for item in items if any(item.get_closest_marker(m) for m in excluded)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def reference_python() -> str | None:
    """Python of the reference-earthformer venv (``EARTHCAST_REF_PYTHON``), if installed."""
    path = os.environ.get("EARTHCAST_REF_PYTHON")
    if path and Path(path).exists():
        return path
    local = Path(__file__).resolve().parents[1] / ".ref-venv" / "bin" / "python"
    return str(local) if local.exists() else None


def shared_dir() -> Path | None:
    for root in (os.environ.get("EARTHCAST_SHARED"), Path(__file__).resolve().parents[2] / "shared"):
        if root and (Path(root) / "bench" / "bench_ref.py").exists():
            return Path(root)
    return None


@pytest.fixture
def ref_python():
    py = reference_python()
    if py is None or (shutil.which(py) is None and not Path(py).exists()):
        pytest.skip("reference earthformer venv not installed (run `make ref`, or set EARTHCAST_REF_PYTHON)")
    if shared_dir() is None:
        pytest.skip("../shared/bench/bench_ref.py not found (set EARTHCAST_SHARED)")
    return py


def quiet_trainer(max_steps: int, **kwargs) -> L.Trainer:
    """One-device CPU trainer that writes nothing and prints nothing; ``kwargs`` add or override flags."""
    flags = {
        "accelerator": "cpu",
        "devices": 1,
        "max_steps": max_steps,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    return L.Trainer(**{**flags, **kwargs})
