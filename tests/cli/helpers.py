"""Helpers shared by the CLI and reliability tests: a tiny checkpoint and an in-process runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from earthcast import create_model
from earthcast.cli import main

TINY_MODEL = "earthformer_nbody_tiny"  # (4, 16, 16, 1) -> (4, 16, 16, 1)
TINY_CONTRACT = {
    "dataset": "sevir",
    "in_len": 4,
    "out_len": 4,
    "height": 16,
    "width": 16,
    "channels_in": 1,
    "channels_out": 1,
    "scale": "01",
    "units": "VIL code",
    "variable": "vil",
    "frame_interval_minutes": 5,
    "thresholds": [16, 74, 133],
}


def write_checkpoint(path: Path, model_name: str = TINY_MODEL, contract: dict | None = None) -> Path:
    """A checkpoint as `earthcast fit` writes it (see earthcast.training.checkpoint): weights under
    ``net.``, ``hyper_parameters`` with the model name and the data contract."""
    torch.manual_seed(0)
    model = create_model(model_name)
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {
                "model_name": model_name,
                "model_overrides": {},
                "data_contract": dict(contract or TINY_CONTRACT),
                "earthcast_version": "0.1.0",
            },
        },
        path,
    )
    return path


def run_cli(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    """Run ``earthcast ARGV`` in-process; returns ``(exit code, stdout, stderr)``."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse errors and --help
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
