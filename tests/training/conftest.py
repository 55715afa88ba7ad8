"""Shared helpers for the training tests: tiny, CPU-only versions of every packaged config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMON = [
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.max_epochs=1",
    "trainer.max_steps=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.progress_bar=none",
    "trainer.log_every_n_steps=1",
    "trainer.global_batch_size=null",
    "data.batch_size=2",
    "data.num_workers=0",
    "data.synthesize=true",
]
"""Overrides that make any packaged config a two-step CPU run on synthetic data."""

TINY: dict[str, list[str]] = {
    "nbody": [
        "model=earthformer_nbody_tiny",
        "data.in_len=4",
        "data.out_len=4",
        "data.synthetic={size: 16, seq_len: 8, n_train: 4, n_val: 2, n_test: 2}",
    ],
    "moving_mnist": [
        "model=earthformer_moving_mnist_tiny",
        "model_overrides={input_shape: [4, 32, 32, 1], target_shape: [4, 32, 32, 1]}",
        "data.in_len=4",
        "data.out_len=4",
        "data.synthetic={size: 32, seq_len: 8, n_train: 4, n_val: 2, n_test: 2}",
    ],
    "sevir": [
        "model=earthformer_sevir_tiny",
        "data.in_len=5",
        "data.out_len=4",
        "data.synthetic={size: 48, frames: 13, n_events: 4}",
    ],
    "sevirlr": [
        "model=earthformer_sevirlr_tiny",
        "data.in_len=3",
        "data.out_len=2",
        "data.synthetic={size: 96, frames: 13, n_events: 4}",
    ],
    "enso": [
        "model=earthformer_enso_tiny",
        "model_overrides={input_shape: [4, 24, 48, 1], target_shape: [4, 24, 48, 1]}",
        "data.in_len=4",
        "data.out_len=4",
        "data.synthetic={n_cmip6_models: 0, n_cmip5_models: 3, years_cmip5: 1}",
        "trainer.check_val_every_n_epoch=1",
    ],
    "radar": [
        "model=earthformer_sevirlr_tiny",
        "model_overrides={input_shape: [3, 16, 16, 1], target_shape: [2, 16, 16, 1]}",
        "data.in_len=3",
        "data.out_len=2",
        "data.stride=2",
        "data.synthetic={n_times: 60, size: 16}",
    ],
    "nbody_small": [
        "model=earthformer_tiny",
        "data.in_len=4",
        "data.out_len=4",
        "data.synthetic={size: 16, seq_len: 8, n_train: 4, n_val: 2, n_test: 2}",
    ],
    "radar_sources": [
        "model=earthformer_tiny",
        "model_overrides={input_shape: [3, 16, 16, 1], target_shape: [2, 16, 16, 1]}",
        "data.in_len=3",
        "data.out_len=2",
        "data.synthetic={n_times: 24, size: 16}",
        "data.options={test_source: fmi, patch_size: 16}",
    ],
    "demo": [
        "data.synthetic={size: 16, seq_len: 10, n_train: 4, n_val: 2, n_test: 2}",
        "model_overrides={input_shape: [5, 16, 16, 1], target_shape: [5, 16, 16, 1], base_units: 16,"
        " enc_depth: [1, 1], dec_depth: [1, 1]}",
    ],
}
"""Per packaged forecasting config: a tiny model preset and tiny synthetic data (the PreDiff stage
configs are exercised by ``tests/test_demo.py`` and ``test_prediff_pipeline.py``)."""


def tiny_overrides(name: str, tmp_path: Path) -> list[str]:
    """Overrides shrinking packaged config ``name`` to seconds, with data and run dir under ``tmp_path``."""
    return [*COMMON, *TINY[name], f"data.root={tmp_path / 'data'}", f"trainer.out_dir={tmp_path / 'run'}"]


def run_cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m earthcast.cli ARGS`` in a fresh process (one thread, like the CI machines)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "earthcast.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli
