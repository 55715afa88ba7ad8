"""Run a trained forecaster over arrays of contexts, checked against its data contract.

Axis legend: ``n`` sample, ``b`` batch, ``s`` ensemble member, ``t`` time, ``h``/``w`` space,
``c`` channel.

Contract: a context array is ``(N, T_in, H, W, C_in)`` (or ``(N, T_in, H, W)`` when
``C_in = 1``) of finite numbers **in the model's scale** — the scale of the data contract, e.g.
SEVIR VIL code / 255 in ``[0, 1]`` for ``scale="01"``. ``check_context`` refuses anything else
with a message naming the expected shape and the fix. ``iter_forecasts`` first checks every
context (read in chunks of ``CHECK_CHUNK_BYTES``), then runs the model batch by batch
(``torch.no_grad``), reading one batch of contexts at a time, and yields ``(b, T_out, H, W,
C_out)`` forecasts, or ``(b, S, T_out, H, W, C_out)`` for a model that returns ensemble members;
memory stays bounded whatever ``N`` is (contexts may be memory maps or
``earthcast.io.arrays.LazyRows``). ``forecast_arrays`` gathers them into one array.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = [
    "SHAPE_KEYS",
    "check_context",
    "check_contract",
    "expected_shape",
    "forecast_arrays",
    "iter_forecasts",
]

SHAPE_KEYS = ("in_len", "out_len", "height", "width", "channels_in", "channels_out")
"""Contract keys that fix the model's input and output shapes."""
_ENSEMBLE_MISMATCH = {
    True: "exceedance probabilities (thresholds) need an ensemble model returning (B, S, T, H, W, C); "
    "this model returns one deterministic forecast, so drop the thresholds",
    False: "this model returns an ensemble (B, S, T, H, W, C) where a deterministic forecast was required",
}
_UNIT_RANGE_SLACK = 0.5
"""Data scaled to [0, 1] may overshoot a little (new data, rounding); beyond this it was not scaled."""
CHECK_CHUNK_BYTES = 64 << 20
"""Contexts are checked in chunks of about this many float32 bytes before forecasting."""


def check_contract(contract: Mapping[str, Any]) -> None:
    """Raise ValueError when the contract lacks a shape key or holds a non-positive size."""
    missing = [k for k in SHAPE_KEYS if contract.get(k) is None]
    if missing:
        raise ValueError(
            f"the model's data contract lacks {missing}, so inputs cannot be checked; "
            "use a checkpoint written by `earthcast fit`"
        )
    bad = {k: contract[k] for k in SHAPE_KEYS if int(contract[k]) < 1}
    if bad:
        raise ValueError(f"the model's data contract has non-positive sizes {bad}")


def expected_shape(contract: Mapping[str, Any], which: str = "input") -> str:
    """Human-readable expected shape, e.g. ``(N, T_in=13, H=384, W=384, C=1)``."""
    t_key, c_key = ("in_len", "channels_in") if which == "input" else ("out_len", "channels_out")
    t_name = "T_in" if which == "input" else "T_out"
    return (
        f"(N, {t_name}={contract[t_key]}, H={contract['height']}, W={contract['width']}, C={contract[c_key]})"
    )


def _shape_hint(axis: str, got: int, contract: Mapping[str, Any]) -> str:
    want = {
        "T_in": contract["in_len"],
        "H": contract["height"],
        "W": contract["width"],
        "C": contract["channels_in"],
    }[axis]
    hints = {
        "T_in": f"give exactly {want} context frames per sample, e.g. array[:, -{want}:]",
        "H": f"crop or regrid the frames to {contract['height']}×{contract['width']}, the grid the model "
        "was trained on",
        "C": f"give the {want} input channel(s) the model was trained on",
    }
    hints["W"] = hints["H"]
    return f"{axis} is {got}, expected {want}: {hints[axis]}"


def _check_shape(shape: tuple[int, ...], contract: Mapping[str, Any], name: str) -> None:
    wanted = expected_shape(contract)
    if len(shape) == 4 and int(contract["channels_in"]) != 1:
        raise ValueError(
            f"{name} has shape {shape} without a channel axis, but the model takes "
            f"{contract['channels_in']} channels {wanted}; add the channel axis last (N, T, H, W, C)"
        )
    if len(shape) not in (4, 5):
        raise ValueError(
            f"{name} has shape {shape} ({len(shape)}-D), but the model expects {wanted}: N samples of "
            f"{contract['in_len']} frames (channels last; the C axis may be left out when C=1). "
            + (
                "Add a sample axis to a single context with array[None], or cut a (time, y, x) series "
                "into windows first"
                if len(shape) == 3
                else "Reshape it to that layout"
            )
        )
    axes = dict(zip(("T_in", "H", "W", "C"), (*shape[1:], 1)))
    problems = [
        _shape_hint(axis, got, contract)
        for axis, got in axes.items()
        if got != int(contract[{"T_in": "in_len", "H": "height", "W": "width", "C": "channels_in"}[axis]])
    ]
    one_context = tuple(int(contract[k]) for k in ("in_len", "height", "width", "channels_in"))
    if problems and tuple(shape) == one_context:
        raise ValueError(
            f"{name} has shape {shape}: one context without the sample axis; the model expects "
            f"{wanted}. Add the sample axis with array[None]"
        )
    if problems:
        dataset = f" (trained on '{contract['dataset']}')" if contract.get("dataset") else ""
        raise ValueError(
            f"{name} shape {shape} does not match the model's contract {wanted}{dataset}; "
            + "; ".join(problems)
        )


UNNORMALISED_MEAN = 50.0
"""A context channel averaging this far from 0 (in standard deviations or min–max ranges of the
training data) was not normalised; no real field of the training distribution gets there."""


def _check_values(values: np.ndarray, contract: Mapping[str, Any], name: str, first: int = 0) -> None:
    """Finite, and within ``[0, 1]`` (give or take the slack) for ``"01"`` data; ``first`` is the
    index of ``values[0]`` among all samples, for the message."""
    finite = np.isfinite(values)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        kind = "NaN" if np.isnan(values[tuple(bad)]) else "inf"
        raise ValueError(
            f"{name} contains {kind} (first at sample {first + bad[0]}, frame {bad[1]}); models need "
            "finite inputs: fill missing pixels first (e.g. np.nan_to_num(x, nan=0.0) for 'no echo')"
        )
    if contract.get("scale") == "01" and values.size:
        top, low = float(values.max()), float(values.min())
        if top > 1.0 + _UNIT_RANGE_SLACK or low < -_UNIT_RANGE_SLACK:
            last = first + len(values) - 1
            raise ValueError(
                f"{name} values span [{low:g}, {top:g}] in samples {first}…{last}, but the model expects "
                "data scaled to [0, 1] (contract scale '01', i.e. x / 255); divide byte data by 255 first"
            )
    _check_normalised(values, contract, name, first)


def _check_normalised(values: np.ndarray, contract: Mapping[str, Any], name: str, first: int) -> None:
    """Per-variable statistics in the contract (a normalised gridded store): a channel whose mean
    lies ``UNNORMALISED_MEAN`` normalised units from zero was not normalised (raw kelvin fed to a
    model trained on standardised temperature, say); say how to normalise it."""
    stats, names = contract.get("normalization"), contract.get("input_variables")
    if not stats or not names or len(names) != values.shape[-1] or not values.size:
        return
    means = values.reshape(-1, values.shape[-1]).mean(axis=0, dtype=np.float64)
    for var, mean in zip(names, means):
        if abs(mean) > UNNORMALISED_MEAN and var in stats:
            offset, scale = stats[var]
            raise ValueError(
                f"{name} channel '{var}' averages {mean:g} in samples {first}…{first + len(values) - 1}, "
                f"{UNNORMALISED_MEAN:g}+ units from the model's normalised range: normalise it as in "
                f"training, x = (v − {offset:g}) / {scale:g} (the checkpoint's data_contract.normalization)"
            )


def _check_layout(inputs, contract: Mapping[str, Any], name: str) -> None:
    """Numeric values and the contract's shape, checked from the metadata alone (nothing is read)."""
    check_contract(contract)
    dtype = np.dtype(inputs.dtype) if hasattr(inputs, "dtype") else np.asarray(inputs).dtype
    if dtype.kind not in "biuf":
        raise ValueError(f"{name} holds {dtype} values; the model needs numbers (float32)")
    _check_shape(tuple(np.shape(inputs)), contract, name)


def _as_float_context(rows) -> np.ndarray:
    """Rows of contexts as float32 ``(n, T_in, H, W, C_in)``."""
    values = np.asarray(rows).astype(np.float32, copy=False)
    return values[..., np.newaxis] if values.ndim == 4 else values  # (n, t, h, w) -> (n, t, h, w, 1)


def _check_all_values(contexts, contract: Mapping[str, Any], name: str) -> None:
    """``_check_values`` over every context, read in chunks of ``CHECK_CHUNK_BYTES`` (bounded
    memory), so bad input fails before any forecasting time is spent."""
    row_bytes = max(1, int(np.prod(np.shape(contexts)[1:])) * 4)
    step = max(1, CHECK_CHUNK_BYTES // row_bytes)
    for first in range(0, len(contexts), step):
        _check_values(_as_float_context(contexts[first : first + step]), contract, name, first)


def check_context(inputs: np.ndarray, contract: Mapping[str, Any], name: str = "input") -> np.ndarray:
    """Validate contexts against ``contract``; return them as float32 ``(N, T_in, H, W, C_in)``.

    Raises:
        ValueError: non-numeric values, wrong shape (the message names the expected shape and
            the fix), NaN/inf, or values outside ``[0, 1]`` for a ``"01"``-scaled model.
    """
    _check_layout(inputs, contract, name)
    values = _as_float_context(inputs)
    _check_values(values, contract, name)
    return values


def _check_output(output: torch.Tensor, batch: int, contract: Mapping[str, Any]) -> None:
    tail = (
        int(contract["out_len"]),
        int(contract["height"]),
        int(contract["width"]),
        int(contract["channels_out"]),
    )
    shape = tuple(output.shape)
    if shape[0] != batch or shape[-4:] != tail or output.ndim not in (5, 6):
        raise ValueError(
            f"the model returned shape {shape} for a batch of {batch}, but its contract promises "
            f"{expected_shape(contract, 'output')} (or an ensemble axis after N); the checkpoint's "
            "contract does not describe this network"
        )


def iter_forecasts(
    model: nn.Module,
    contexts,
    contract: Mapping[str, Any],
    *,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
    ensemble: bool | None = None,
    name: str = "input",
    first_sample: int = 0,
) -> Iterator[tuple[int, np.ndarray]]:
    """Forecast ``contexts`` one batch at a time; yields ``(first sample, forecasts)``.

    Every context is checked first (layout, then values: finite, in range; read in chunks), so bad
    input fails before any forecasting time is spent; then each batch is read and forecast in
    turn, so memory does not grow with ``N``.

    Args:
        model: a network ``(B, T_in, H, W, C_in) → (B, T_out, H, W, C_out)`` (or ``(B, S, …)``).
        contexts: ``(N, T_in, H, W[, C_in])`` in the model's scale: an array, a memory map or
            anything sliceable along its first axis with ``shape`` and ``dtype`` (``LazyRows``).
        contract: the model's data contract.
        batch_size: samples per forward pass.
        device: where to run the model.
        progress: show a tqdm bar; None shows it only when stderr is a terminal.
        ensemble: True requires ensemble outputs ``(B, S, …)``, False deterministic ones; checked
            on the first batch, so a wrong model fails before the whole input is forecast.
        name: how the contexts are called in error messages.
        first_sample: index of ``contexts[0]`` in its file; models with a ``begin_batch(index)``
            method (seeded PreDiff ensembles) learn each batch's first index, so a sample's
            forecast does not depend on the batching.

    Yields:
        ``(start, forecast)``: float32 ``(b, T_out, H, W, C_out)`` or ``(b, S, T_out, H, W, C_out)``
        for samples ``start … start + b − 1``.

    Raises:
        ValueError: invalid contexts, an output that breaks the contract, or non-finite outputs.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(contexts, torch.Tensor):
        contexts = contexts.detach().cpu().numpy()
    _check_layout(contexts, contract, name)
    if len(contexts) == 0:
        raise ValueError(f"{name} holds no contexts (N = 0); give at least one {expected_shape(contract)}")
    _check_all_values(contexts, contract, name)
    was_training = model.training
    model = model.to(device).eval()
    try:
        yield from _forecast_batches(
            model, contexts, contract, batch_size, device, progress, ensemble, first_sample
        )
    finally:
        model.train(was_training)  # the caller's model comes back in the mode it was given


def _forecast_batches(model, contexts, contract, batch_size, device, progress, ensemble, first_sample):
    show = sys.stderr.isatty() if progress is None else progress
    total = len(contexts)
    for start in tqdm(range(0, total, batch_size), desc="forecasting", unit="batch", disable=not show):
        # np.array copies: memory-mapped inputs are read-only, which torch.from_numpy warns about
        rows = _as_float_context(np.array(contexts[start : start + batch_size]))
        if hasattr(model, "begin_batch"):
            model.begin_batch(first_sample + start)
        batch = torch.from_numpy(rows).to(device)
        # no_grad, not inference_mode: knowledge-controlled sampling re-enables autograd for ∇_{z_t}
        with torch.no_grad():
            output = model(batch)  # (b, [s,] t_out, h, w, c_out)
        _check_output(output, len(batch), contract)
        if ensemble is not None and (output.ndim == 6) != ensemble:
            raise ValueError(_ENSEMBLE_MISMATCH[ensemble])
        if not bool(torch.isfinite(output).all()):
            raise ValueError(
                f"the model produced NaN/inf for samples {start}…{start + len(batch) - 1}; "
                "the weights may be corrupt or training diverged"
            )
        yield start, output.float().cpu().numpy()


def forecast_arrays(
    model: nn.Module,
    contexts: np.ndarray,
    contract: Mapping[str, Any],
    *,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
    ensemble: bool | None = None,
) -> np.ndarray:
    """Forecast every context with ``model`` and return them in one array (``iter_forecasts``
    streams them instead; see it for the arguments).

    Returns:
        float32 ``(N, T_out, H, W, C_out)`` or ``(N, S, T_out, H, W, C_out)``.

    Raises:
        ValueError: invalid contexts, an output that breaks the contract, or non-finite outputs.
    """
    batches = iter_forecasts(
        model, contexts, contract, batch_size=batch_size, device=device, progress=progress, ensemble=ensemble
    )
    return np.concatenate([forecast for _, forecast in batches])
