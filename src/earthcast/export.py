"""Export a trained forecaster as a self-contained ``torch.export`` program (``.pt2``).

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel.

The exported file holds the network's graph and weights; running it needs PyTorch only, not
earthcast::

    program = torch.export.load("model.pt2")
    forecast = program.module()(contexts)          # (b, T_in, H, W, C_in) → (b, T_out, H, W, C_out)

The batch size is dynamic (1 … ``max_batch``); time, grid and channels are those of the data
contract, which travels inside the file as ``data_contract.json`` (read it with
``read_exported_contract``), with provenance (model name, earthcast version, source checkpoint)
in ``earthcast.json``. ``export_forecaster`` checks the program against the network before
writing it (batch 1 and another size, to ``tolerance``) and writes atomically. ``load_exported``
turns a file back into a forecaster for ``earthcast predict`` (``--ckpt model.pt2``).

Not exportable: ensemble samplers (PreDiff's reverse-diffusion loop) and forecasters that leave
PyTorch (the pysteps baselines); they are refused with the reason.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from earthcast.inference import check_contract
from earthcast.typing import require_tensor
from earthcast.utils.io import atomic_path

__all__ = [
    "CONTRACT_FILE",
    "METADATA_FILE",
    "ExportedForecaster",
    "export_forecaster",
    "load_exported",
    "read_exported_contract",
]

CONTRACT_FILE = "data_contract.json"
"""Name of the data contract inside the ``.pt2`` archive."""
METADATA_FILE = "earthcast.json"
"""Name of the provenance record inside the ``.pt2`` archive."""


def export_forecaster(
    model: nn.Module,
    contract: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    max_batch: int = 1024,
    tolerance: float = 1e-4,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Export ``model`` (eval mode, CPU float32) for contexts shaped by ``contract`` to ``path``.

    Args:
        model: a deterministic forecaster ``(b, T_in, H, W, C_in) → (b, T_out, H, W, C_out)``.
        contract: its data contract (``in_len``, ``height``, ``width``, ``channels_in``, …).
        path: the ``.pt2`` file to write.
        max_batch: largest batch the program accepts.
        tolerance: largest absolute difference from the network allowed in the check, relative
            to the largest absolute forecast value (at least 1).
        metadata: provenance stored as ``earthcast.json`` (model name, versions, source, …), to
            which ``max_batch`` is added.

    Returns:
        ``{"path", "max_batch", "checked_batches", "max_abs_difference"}``.

    Raises:
        ValueError: a bad path, a contract without shapes, a model torch.export cannot capture, or
            an exported program that disagrees with the network.
    """
    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"export output '{path}' must end in .pt2 (a torch.export archive)")
    if max_batch < 2:
        raise ValueError(f"max_batch must be >= 2, got {max_batch}")
    check_contract(contract)
    model = model.to("cpu", torch.float32).eval()
    example = _contexts(contract, 2, seed=0)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    try:
        with torch.no_grad():
            program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
    except Exception as err:  # torch.export raises many types (Unsupported, UserError, …)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"torch.export cannot capture this model ({type(err).__name__}: {first}); only networks that "
            "run in PyTorch alone are exportable (not the pysteps baselines or PreDiff's sampler)"
        ) from err
    checked, worst = _check(program, model, contract, min(3, max_batch), tolerance)
    extra = {
        CONTRACT_FILE: json.dumps(dict(contract), default=str, sort_keys=True),
        METADATA_FILE: json.dumps({**(metadata or {}), "max_batch": max_batch}, default=str, sort_keys=True),
    }
    archive = io.BytesIO()  # saved to memory first: torch.export wants a .pt2 name or a buffer
    torch.export.save(program, archive, extra_files=extra)
    with atomic_path(path) as tmp:
        tmp.write_bytes(archive.getvalue())
    return {
        "path": str(path),
        "max_batch": max_batch,
        "checked_batches": checked,
        "max_abs_difference": worst,
    }


def read_exported_contract(path: str | os.PathLike) -> dict[str, Any]:
    """The data contract stored in an exported ``.pt2`` file."""
    return _read(path)[1]


class ExportedForecaster(nn.Module):
    """An exported program as a forecaster module: ``forward`` checks the input and runs the program.

    The program was captured in eval mode and cannot switch modes, so ``train()``/``eval()`` only
    set this wrapper's flag (``earthcast.inference`` calls ``eval()`` on every model). The input
    is checked against the contract and the exported batch range first, because the program's
    own guards fail with messages about symbolic shapes.
    """

    def __init__(
        self,
        program: nn.Module,
        metadata: Mapping[str, Any] | None = None,
        contract: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.program = program
        self.metadata = dict(metadata or {})
        self.contract = dict(contract or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``."""
        self._check_input(x)
        return self.program(x)

    def _check_input(self, x: torch.Tensor) -> None:
        require_tensor(x, "the exported forecaster")
        keys = ("in_len", "height", "width", "channels_in")
        if all(k in self.contract for k in keys):
            expected = tuple(int(self.contract[k]) for k in keys)
            if x.ndim != 5 or tuple(x.shape[1:]) != expected:
                raise ValueError(
                    f"the exported forecaster takes contexts (B, T_in, H, W, C_in) = "
                    f"(B, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
                )
        limit = self.metadata.get("max_batch")
        if limit is not None and x.shape[0] > int(limit):
            raise ValueError(
                f"the exported forecaster takes batches of 1 … {limit} (fixed by `earthcast export "
                f"--max-batch`), got {x.shape[0]}; split the contexts (e.g. predict --batch-size {limit}) "
                "or export again with a larger --max-batch"
            )

    def train(self, mode: bool = True) -> ExportedForecaster:
        self.training = mode
        return self


def load_exported(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[ExportedForecaster, dict[str, Any]]:
    """``(forecaster, data_contract)`` of an ``earthcast export`` file, on ``device``."""
    program, contract, metadata = _read(path)
    if torch.device(device).type != "cpu":
        from torch.export.passes import move_to_device_pass

        program = move_to_device_pass(program, torch.device(device))
    return ExportedForecaster(program.module(), metadata, contract), contract


def _read(path: str | os.PathLike) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """``(ExportedProgram, contract, metadata)``; ValueError for a file earthcast did not write."""
    extra = {CONTRACT_FILE: "", METADATA_FILE: ""}
    try:
        program = torch.export.load(path, extra_files=extra)
    except Exception as err:  # zip, pickle and schema errors of many types
        raise ValueError(
            f"cannot read '{path}' as a torch.export archive ({type(err).__name__}); is the file complete? "
            "Re-create it with `earthcast export`"
        ) from err
    if not extra[CONTRACT_FILE]:
        raise ValueError(f"'{path}' holds no {CONTRACT_FILE}; it was not written by `earthcast export`")
    return program, json.loads(extra[CONTRACT_FILE]), json.loads(extra[METADATA_FILE] or "{}")


def _contexts(contract: Mapping[str, Any], batch: int, seed: int) -> torch.Tensor:
    """Random contexts ``(batch, T_in, H, W, C_in)`` in ``[0, 1]``."""
    shape = (batch, *(int(contract[k]) for k in ("in_len", "height", "width", "channels_in")))
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _check(
    program, model: nn.Module, contract, other_batch: int, tolerance: float
) -> tuple[list[int], float]:
    """Run the program and the network on batch 1 and ``other_batch``; largest difference."""
    runnable = program.module()
    worst = 0.0
    batches = [1, other_batch]
    for size in batches:
        x = _contexts(contract, size, seed=size)
        with torch.no_grad():
            expected, got = model(x), runnable(x)
        if got.shape != expected.shape:
            raise ValueError(
                f"the exported program returned {tuple(got.shape)}, the network {tuple(expected.shape)}"
            )
        difference = float((got - expected).abs().max())
        scale = max(1.0, float(expected.abs().max()))
        if not difference <= tolerance * scale:
            raise ValueError(
                f"the exported program differs from the network by {difference:.3g} at batch {size} "
                f"(allowed {tolerance * scale:.3g}); not written"
            )
        worst = max(worst, difference)
    return batches, worst
