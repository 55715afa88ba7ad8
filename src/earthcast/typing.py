"""Shared vocabulary: axis legend, the ``Forecaster`` contract and the batch layout.

Axis letters used across earthcast::

    B batch    S ensemble member    T time    H, W space    C channels
    n number of cuboids    v cuboid volume    P number of global vectors

Spatio-temporal tensors are ``(B, T, H, W, C)`` (channels last) everywhere inside the package;
ensembles add ``S`` right after ``B``: ``(B, S, T, H, W, C)``.
"""

from __future__ import annotations

from typing import Any, Protocol, TypedDict, runtime_checkable

import torch
from torch import Tensor


class Batch(TypedDict, total=False):
    """One collated batch. ``inputs`` ``(B, T_in, H, W, C_in)``, ``targets`` ``(B, T_out, H, W, C_out)``."""

    inputs: Tensor
    targets: Tensor
    meta: dict[str, Any]


@runtime_checkable
class Forecaster(Protocol):
    """Anything that maps a context to a forecast.

    ``forward(context)`` takes ``(B, T_in, H, W, C_in)`` and returns ``(B, T_out, H, W, C_out)``
    (deterministic) or ``(B, S, T_out, H, W, C_out)`` (probabilistic).
    """

    def __call__(self, context: Tensor) -> Tensor: ...


def require_tensor(x: Any, who: str) -> None:
    """Raise a ``TypeError`` naming the fix when a model is handed something other than a tensor
    (PyTorch's own message for a NumPy array, ``'numpy.ndarray' object has no attribute 'ndim'``
    or similar, does not say what to pass)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{who} takes a torch.Tensor (B, T, H, W, C), got {type(x).__module__}.{type(x).__name__}; "
            "convert with torch.from_numpy(array), or forecast arrays with "
            "earthcast.inference.forecast_arrays(model, array)"
        )
