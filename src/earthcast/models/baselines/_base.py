"""What every learned baseline shares: the shape config, input checks, scheduled sampling, frame padding.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel.

Contract (``Forecaster``): ``forward(x)`` maps ``(B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``.

Recurrent baselines additionally accept ``forward(x, targets=y, step=k)`` during training: the
training system passes the ground-truth future and the optimiser step so that a model can feed
true frames instead of its own forecasts (teacher forcing / scheduled sampling, as in the
ConvLSTM, PredRNN, PhyDNet and E3D-LSTM papers). A model opts in with the class attribute
``accepts_targets = True``; evaluation always calls ``forward(x)``, a pure forecast.

Shapes come from the data: the fields of :class:`ShapeConfig` are filled from the data contract
by the training system (``CONTRACT_FIELDS`` is attached to each registry factory), so one preset
trains on N-body (10→10, 64×64) and SEVIR (13→12, 384×384) alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from earthcast.typing import require_tensor

#: Config field → data-contract key, filled by the trainer unless overridden explicitly.
CONTRACT_FIELDS: dict[str, str] = {
    "in_len": "in_len",
    "out_len": "out_len",
    "height": "height",
    "width": "width",
    "channels_in": "channels_in",
    "channels_out": "channels_out",
}

SamplingMode = Literal["none", "teacher_forcing", "linear", "reverse"]


@dataclass(frozen=True)
class ShapeConfig:
    """Base of every baseline config: the space-time shape of the forecasting problem.

    Subclasses add their own hyper-parameters (all with defaults). The defaults here are SEVIR's
    (13 → 12 frames of 384×384 VIL), the shape the papers' parameter counts refer to.

    Attributes:
        in_len: context frames ``T_in``.
        out_len: forecast frames ``T_out``.
        height, width: frame size ``H``, ``W``.
        channels_in, channels_out: ``C_in``, ``C_out``.
    """

    in_len: int = 13
    out_len: int = 12
    height: int = 384
    width: int = 384
    channels_in: int = 1
    channels_out: int = 1

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in CONTRACT_FIELDS and (not isinstance(value, int) or value < 1):
                raise ValueError(f"invalid {type(self).__name__}: {f.name}={value!r} must be an integer >= 1")
        self.validate()

    def validate(self) -> None:
        """Subclass hook: raise ``ValueError`` naming the field and the fix."""

    def replace(self, **changes: Any) -> ShapeConfig:
        """A copy with ``changes`` applied (unknown keys raise a ValueError listing valid ones)."""
        valid = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(valid))
        if unknown:
            raise ValueError(f"unknown {type(self).__name__} keys {unknown}; valid keys: {valid}")
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class BaselineForecaster(nn.Module):
    """Base class: holds ``self.config`` and checks inputs against it.

    Subclasses set ``config_class`` and implement ``forward``; the constructor takes either a
    config or keyword overrides of the default config (``Model(hidden=64)``).
    """

    config_class: ClassVar[type[ShapeConfig]] = ShapeConfig
    accepts_targets: ClassVar[bool] = False

    def __init__(self, config: ShapeConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        config = config or self.config_class()
        self.config = config.replace(**overrides) if overrides else config

    def check_input(self, x: Tensor) -> None:
        """Raise a ``ValueError`` naming the mismatch when ``x`` is not ``(B, T_in, H, W, C_in)``."""
        require_tensor(x, type(self).__name__)
        c = self.config
        expected = (c.in_len, c.height, c.width, c.channels_in)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            shape = ", ".join(map(str, expected))
            raise ValueError(
                f"{type(self).__name__} expects inputs (B, T_in, H, W, C_in) = (B, {shape}), "
                f"got {tuple(x.shape)}; build it with in_len/height/width/channels_in of your data"
            )

    def check_targets(self, targets: Tensor | None) -> None:
        c = self.config
        expected = (c.out_len, c.height, c.width, c.channels_out)
        if targets is not None and (targets.ndim != 5 or tuple(targets.shape[1:]) != expected):
            shape = ", ".join(map(str, expected))
            raise ValueError(
                f"{type(self).__name__} expects targets (B, {shape}), got {tuple(targets.shape)}."
            )


@dataclass(frozen=True)
class ScheduledSampling:
    """How often a recurrent model is fed the true frame instead of its own forecast in training.

    Modes (the probability ``p`` of feeding the ground truth at training step ``k``):

    - ``none``: never (train exactly as evaluated: free-running forecast).
    - ``teacher_forcing``: always (``p = 1``).
    - ``linear``: scheduled sampling (Bengio et al. 2015, used by PredRNN and E3D-LSTM):
      ``p`` falls linearly from 1 to 0 over ``steps`` optimiser steps, then stays 0.
    - ``reverse``: reverse scheduled sampling (PredRNN-V2): on the *context* frames the
      probability of using the true frame rises from ``reverse_start`` to 1 over ``steps``, while
      the forecast frames follow ``linear``; :meth:`context_probability` gives the context part.
    """

    mode: SamplingMode = "none"
    steps: int = 5000
    reverse_start: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in ("none", "teacher_forcing", "linear", "reverse"):
            raise ValueError(
                f"scheduled sampling mode {self.mode!r} is not one of none, teacher_forcing, linear, reverse"
            )
        if self.steps < 1:
            raise ValueError(f"scheduled sampling steps={self.steps} must be >= 1")

    def forecast_probability(self, step: int) -> float:
        """Probability of feeding the true frame at a forecast step during training step ``step``."""
        if self.mode == "none":
            return 0.0
        if self.mode == "teacher_forcing":
            return 1.0
        return max(0.0, 1.0 - step / self.steps)

    def context_probability(self, step: int) -> float:
        """Probability of feeding the true frame at a context step (``< 1`` only in ``reverse``)."""
        if self.mode != "reverse":
            return 1.0
        return min(1.0, self.reverse_start + (1.0 - self.reverse_start) * step / self.steps)


def truth_mask(probability: float, batch: int, length: int, device: torch.device) -> Tensor:
    """``(B, L, 1, 1, 1)`` float mask: 1 where the true frame is fed, drawn with ``probability``."""
    if probability >= 1.0:
        return torch.ones(batch, length, 1, 1, 1, device=device)
    if probability <= 0.0:
        return torch.zeros(batch, length, 1, 1, 1, device=device)
    return (torch.rand(batch, length, 1, 1, 1, device=device) < probability).float()


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two axes of ``x`` to multiples of ``multiple``, centred.

    The odd pixel, if any, goes to the bottom/right. Returns the padded tensor and the
    ``(left, right, top, bottom)`` padding for :func:`crop_padding`.
    """
    extra_h, extra_w = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    pad = (extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2)
    return (F.pad(x, pad) if any(pad) else x), pad


def crop_padding(x: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
    """Undo :func:`pad_to_multiple` on the last two axes."""
    left, right, top, bottom = pad
    return x[..., top : x.shape[-2] - bottom, left : x.shape[-1] - right]
