"""Fixtures for the CLI tests: a tiny checkpoint in the `earthcast fit` layout, contexts, a runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.cli.helpers import run_cli, write_checkpoint


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="session")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three contexts (3, 4, 16, 16) in [0, 1], as VIL code / 255."""
    path = tmp_path_factory.mktemp("inputs") / "contexts.npy"
    np.save(path, np.random.default_rng(0).random((3, 4, 16, 16), dtype=np.float32))
    return path


@pytest.fixture(scope="session")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("targets") / "targets.npy"
    np.save(path, np.random.default_rng(1).random((3, 4, 16, 16), dtype=np.float32))
    return path


@pytest.fixture
def cli(capsys: pytest.CaptureFixture) -> Callable[..., tuple[int, str, str]]:
    """Run ``earthcast ARGS`` in-process; returns ``(exit code, stdout, stderr)``."""

    return lambda *argv: run_cli(capsys, *argv)
