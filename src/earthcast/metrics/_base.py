"""Shared machinery for the streaming metrics: lazily sized ``sum`` states and input checks.

Axis legend: ``b`` batch, ``s`` ensemble member, ``t`` lead time, ``h``/``w`` space, ``c`` channel.

Every earthcast metric is a :class:`torchmetrics.Metric` whose states are reduced with
``dist_reduce_fx="sum"`` (counts and running sums), so ``update`` → ``merge_state`` / DDP sync →
``compute`` gives the same answer as one big ``update`` on all the data.

Some states depend on the data (per-lead vectors need ``T``, histograms need the ensemble size).
They start as empty tensors and are sized at the first ``update``; merging an empty state with a
sized one treats the empty one as zeros. Under DDP every rank must have seen at least one batch
(or pass the size up front, e.g. ``n_leads=``), because torchmetrics cannot sum tensors of
different shapes across ranks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

COUNT_DTYPE = torch.int64
"""Counts use integers: a SEVIR test set holds ~2e10 pixels, beyond float32's exact range."""
SUM_DTYPE = torch.float64
"""Running sums of errors use double precision for the same reason."""


class StreamingMetric(Metric):
    """Base class adding data-sized ("lazy") sum states to :class:`torchmetrics.Metric`; its
    ``update`` takes tensors or NumPy arrays."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lazy_states: list[str] = []

    def _add_lazy_state(self, name: str, dtype: torch.dtype, shape: tuple[int, ...] | None = None) -> None:
        """Register a ``sum`` state that is empty until :meth:`_sized_state` gives it a shape.

        Args:
            name: attribute name of the state.
            dtype: dtype of the state.
            shape: if known already, the state is created with this shape instead of empty.
        """
        default = torch.zeros(shape if shape is not None else (0,), dtype=dtype)
        self.add_state(name, default=default, dist_reduce_fx="sum")
        self._lazy_states.append(name)

    def _sized_state(self, name: str, shape: tuple[int, ...], device: torch.device) -> Tensor:
        """Return state ``name``, creating it with zeros of ``shape`` if it is still empty.

        Raises:
            ValueError: if the state already has a different shape (e.g. the number of lead
                times changed between updates).
        """
        state = getattr(self, name)
        if state.numel() == 0 and tuple(state.shape) != tuple(shape):
            state = torch.zeros(shape, dtype=state.dtype, device=device)
            setattr(self, name, state)
        elif tuple(state.shape) != tuple(shape):
            raise ValueError(
                f"{type(self).__name__}: state '{name}' has shape {tuple(state.shape)} but this batch "
                f"needs {tuple(shape)}. Keep the number of lead times / members / thresholds constant "
                "across updates, or call reset() first."
            )
        return state

    def _wrap_update(self, update: Callable) -> Callable:
        """torchmetrics' wrapper, taking NumPy arrays as well: forecasts are often saved and read
        back as arrays, and PyTorch's own message for an array (``'numpy.ndarray' object has no
        attribute …``) does not say what to pass."""
        wrapped = super()._wrap_update(update)

        @functools.wraps(update)
        def accept_arrays(*args: Any, **kwargs: Any) -> Any:
            args = tuple(self._as_tensor(a) for a in args)
            return wrapped(*args, **{k: self._as_tensor(v) for k, v in kwargs.items()})

        return accept_arrays

    def _as_tensor(self, value: Any) -> Any:
        return (
            torch.from_numpy(np.ascontiguousarray(value)).to(self.device)
            if isinstance(value, np.ndarray)
            else value
        )

    def merge_state(self, incoming_state: dict[str, Any] | Metric) -> None:
        """Add another metric's (or a state dict's) accumulated state to this one."""
        incoming_updates = incoming_state.update_count if isinstance(incoming_state, Metric) else 1
        super().merge_state(incoming_state)
        self._update_count += incoming_updates  # merged data counts as seen data
        self._computed = None  # a cached compute() result is stale now

    def _reduce_states(self, incoming_state: dict[str, Any]) -> None:
        # Used by merge_state() and by forward(); an empty lazy state acts as zeros.
        incoming_state = dict(incoming_state)
        for name in self._lazy_states:
            mine, theirs = getattr(self, name), incoming_state.get(name)
            if theirs is None:
                continue
            if theirs.numel() == 0 and mine.numel() > 0:
                incoming_state[name] = torch.zeros_like(mine)
            elif mine.numel() == 0 and theirs.numel() > 0:
                setattr(self, name, torch.zeros_like(theirs))
        super()._reduce_states(incoming_state)


def check_fields(pred: Tensor, target: Tensor, name: str, ndim: int = 5) -> None:
    """Raise ``ValueError`` unless ``pred`` and ``target`` are ``ndim``-D and of equal shape."""
    if pred.ndim != ndim or pred.shape != target.shape:
        raise ValueError(
            f"{name}: expected pred and target of equal shape (B, T, H, W, C), got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )


def check_ensemble(ensemble: Tensor, target: Tensor, name: str) -> None:
    """Raise ``ValueError`` unless ``ensemble`` is ``(B, S, T, H, W, C)`` and matches ``target``."""
    if ensemble.ndim != 6 or target.ndim != 5 or ensemble.shape[:1] + ensemble.shape[2:] != target.shape:
        raise ValueError(
            f"{name}: expected an ensemble (B, S, T, H, W, C) and a target (B, T, H, W, C), got "
            f"{tuple(ensemble.shape)} and {tuple(target.shape)}"
        )
