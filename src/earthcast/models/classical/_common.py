"""What the pysteps forecasters share: the config base, the lazy import and the tensor edges.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel.

pysteps is numpy-only and prints progress to stdout, so the forecasters convert a
``(B, T_in, H, W, C_in)`` tensor to float64 numpy ``(B, C, T, H, W)`` fields at the edge, loop
over batch items and channels, and run every pysteps call inside :func:`quiet`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from earthcast.typing import require_tensor

INSTALL_HINT = "pip install 'earthcast[pysteps]'"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow pysteps' stdout (its import banner, STEPS progress tables) for the enclosed calls."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def import_pysteps() -> ModuleType:
    """Import pysteps lazily (it is an optional extra); a missing install names the extra to add."""
    try:
        with quiet():  # pysteps prints the path of its configuration file on first import
            import pysteps
            import pysteps.extrapolation
            import pysteps.motion
            import pysteps.nowcasts
    except ImportError as err:
        raise ImportError(
            f"the classical forecasters need pysteps and OpenCV: {INSTALL_HINT} ({err})"
        ) from err
    return pysteps


@dataclass(frozen=True)
class ClassicalConfig:
    """Fields every pysteps forecaster has (subclasses add the method's own options).

    Attributes:
        out_len: number of forecast frames ``T_out``.
        channels_out: ``C_out``; ``None`` keeps all input channels. The first ``C_out`` input
            channels are forecast, each independently (multivariate context, univariate target).
        motion_frames: latest context frames given to Lucas-Kanade; the sparse vectors of every
            consecutive pair are pooled before the dense interpolation (>= 2; 3 as in pysteps'
            examples). A shorter context uses all of its frames.
        decl_scale: Lucas-Kanade declustering scale in pixels: sparse vectors closer than this are
            averaged before interpolation (pysteps' default 20; < 2 disables it).
        size_opening: size in pixels of the morphological opening that removes isolated echoes
            before feature detection (pysteps' default 3; 0 disables it).
    """

    out_len: int = 10
    channels_out: int | None = None
    motion_frames: int = 3
    decl_scale: int = 20
    size_opening: int = 3

    def __post_init__(self) -> None:
        self._check(int(self.out_len) >= 1, "out_len", "must be >= 1")
        self._check(self.channels_out is None or int(self.channels_out) >= 1, "channels_out", "must be >= 1")
        self._check(int(self.motion_frames) >= 2, "motion_frames", "must be >= 2 (Lucas-Kanade needs a pair)")
        self._check(int(self.decl_scale) >= 0, "decl_scale", "must be >= 0")
        self._check(int(self.size_opening) >= 0, "size_opening", "must be >= 0")
        self.validate()

    def validate(self) -> None:
        """Subclass hook: raise ``ValueError`` (through :meth:`_check`) naming the field."""

    def _check(self, ok: bool, name: str, why: str) -> None:
        if not ok:
            raise ValueError(f"invalid {type(self).__name__}: {name}={getattr(self, name)!r} {why}")

    def replace(self, **changes: Any) -> ClassicalConfig:
        """A copy with ``changes`` applied (unknown keys raise a ValueError listing valid ones)."""
        valid = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(valid))
        if unknown:
            raise ValueError(f"unknown {type(self).__name__} keys {unknown}; valid keys: {valid}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def context_to_numpy(x: Tensor, config: ClassicalConfig, min_frames: int, who: str) -> np.ndarray:
    """Check the context and return its first ``C_out`` channels as float64 ``(B, C_out, T, H, W)``."""
    require_tensor(x, who)
    if x.ndim != 5:
        raise ValueError(f"{who} expects inputs (B, T, H, W, C), got shape {tuple(x.shape)}")
    if x.shape[1] < min_frames:
        raise ValueError(f"{who} needs at least {min_frames} context frames, got T_in={x.shape[1]}")
    c_out = config.channels_out or x.shape[-1]
    if c_out > x.shape[-1]:
        raise ValueError(f"{who} cannot make {c_out} output channels from {x.shape[-1]} input channels")
    if not torch.isfinite(x).all():
        raise ValueError(f"{who} needs finite inputs (replace NaN first, e.g. nan_policy='zero')")
    fields = x[..., :c_out].detach().to("cpu", torch.float64).numpy()  # (B, T, H, W, C_out)
    return rearrange(fields, "b t h w c -> b c t h w")  # (B, C_out, T, H, W)


def numpy_to_forecast(out: np.ndarray, like: Tensor) -> Tensor:
    """``(B, C, [S,] T, H, W)`` numpy forecast → ``(B, [S,] T, H, W, C)`` tensor like ``like``."""
    pattern = "b c s t h w -> b s t h w c" if out.ndim == 6 else "b c t h w -> b t h w c"
    out = np.ascontiguousarray(rearrange(out, pattern))  # (B, [S,] T, H, W, C)
    return torch.as_tensor(out).to(dtype=like.dtype, device=like.device)
