"""Shared test configuration: deterministic seeds, small threads, the reference-venv locator."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


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
