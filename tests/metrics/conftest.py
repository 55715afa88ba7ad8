"""Shared fixtures for the metric tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch


def _assert_results_close(a: dict, b: dict, atol: float = 1e-9) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(
            torch.as_tensor(a[key], dtype=torch.float64),
            torch.as_tensor(b[key], dtype=torch.float64),
            atol=atol,
            rtol=0,
            equal_nan=True,
            msg=lambda m, key=key: f"{key}: {m}",
        )


@pytest.fixture
def assert_results_close() -> Callable[..., None]:
    """Assert two result dictionaries have the same keys and values equal to ``atol``."""
    return _assert_results_close
