"""Fixtures for the data tests: a tiny synthetic SEVIR store and the shared radar samples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from earthcast.data.sevir.synth import write_synthetic_sevir

SEVIR_SIZE = 48  # tests/data/test_sevir.py restates these three numbers
SEVIR_EVENTS = 6
SEVIR_INCOMPLETE = 1


@pytest.fixture(scope="session")
def sevir_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic SEVIR in the real layout: 6 complete events + 1 with missing pixels, 48×48×49."""
    root = tmp_path_factory.mktemp("sevir")
    return write_synthetic_sevir(
        root, n_events=SEVIR_EVENTS, size=SEVIR_SIZE, n_incomplete=SEVIR_INCOMPLETE, seed=0, progress=False
    )


@pytest.fixture(scope="session")
def radar_dir() -> Path:
    """``shared/data/radar`` (pysteps example data); the radar tests skip when it is absent."""
    candidates = [Path(os.environ["EARTHCAST_SHARED"])] if "EARTHCAST_SHARED" in os.environ else []
    candidates.append(Path(__file__).resolve().parents[2].parent / "shared")
    for shared in candidates:
        if (shared / "data" / "radar").is_dir():
            return shared / "data" / "radar"
    pytest.skip("shared/data/radar not found (set EARTHCAST_SHARED)")
