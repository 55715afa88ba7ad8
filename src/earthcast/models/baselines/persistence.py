"""Eulerian persistence: the last observed frame, repeated for every lead time.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel.

Contract: ``(B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)`` with every output frame equal to
the last input frame. When ``C_out < C_in`` the first ``C_out`` channels are kept (multivariate
context, univariate target, the usual ordering of ``GriddedDataset``). The model has no parameters;
it is the skill floor every learned forecaster has to beat, and it has zero error on a static
field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from einops import repeat
from torch import Tensor, nn

from earthcast.typing import require_tensor


@dataclass(frozen=True)
class PersistenceConfig:
    """Hyper-parameters of :class:`Persistence`.

    Attributes:
        out_len: number of forecast frames ``T_out``.
        channels_out: ``C_out``; ``None`` keeps all input channels.
    """

    out_len: int = 10
    channels_out: int | None = None

    def __post_init__(self) -> None:
        if int(self.out_len) < 1:
            raise ValueError(f"invalid PersistenceConfig: out_len={self.out_len} must be >= 1")
        if self.channels_out is not None and int(self.channels_out) < 1:
            raise ValueError(f"invalid PersistenceConfig: channels_out={self.channels_out} must be >= 1")

    def replace(self, **changes: Any) -> PersistenceConfig:
        """A copy with ``changes`` applied (unknown keys raise a ValueError listing valid ones)."""
        valid = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(valid))
        if unknown:
            raise ValueError(f"unknown PersistenceConfig keys {unknown}; valid keys: {valid}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Persistence(nn.Module):
    """Repeat the last context frame ``out_len`` times (see the module docstring)."""

    def __init__(self, config: PersistenceConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        config = config or PersistenceConfig()
        self.config = config.replace(**overrides) if overrides else config

    def forward(self, x: Tensor) -> Tensor:
        """Forecast: ``x (B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``."""
        require_tensor(x, "Persistence")
        if x.ndim != 5:
            raise ValueError(f"Persistence expects (B, T, H, W, C), got {tuple(x.shape)}")
        c_out = self.config.channels_out or x.shape[-1]
        if c_out > x.shape[-1]:
            raise ValueError(
                f"Persistence cannot make {c_out} output channels from {x.shape[-1]} input channels"
            )
        last = x[:, -1, :, :, :c_out]  # (B, H, W, C_out)
        return repeat(
            last, "b h w c -> b t h w c", t=self.config.out_len
        ).contiguous()  # (B, T_out, H, W, C_out)
