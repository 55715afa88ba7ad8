"""Training budgets of ``earthcast benchmark``: wall-clock (``15m``, ``90s``, ``1h``) or steps (``500steps``).

A wall-clock budget is turned into a step count per model by timing a few real training steps
first (:mod:`earthcast.benchmark.calibrate`), so that the warm-up/cosine learning-rate schedule
of every model runs to its end inside the budget; the budget is also passed to Lightning as
``max_time``, a hard stop should a model slow down (the table flags a model it stopped early).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|steps?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """Per-model training budget: exactly one of ``seconds`` / ``steps`` is set."""

    seconds: float | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.steps is None):
            raise ValueError("a budget has either seconds or steps")
        if (self.seconds is not None and self.seconds <= 0) or (self.steps is not None and self.steps < 1):
            raise ValueError(f"budget must be positive, got {self}")

    def __str__(self) -> str:
        return f"{self.steps} steps" if self.steps is not None else f"{self.seconds:g} s"

    def max_time(self) -> str | None:
        """Lightning ``max_time`` ``DD:HH:MM:SS`` for a wall-clock budget (rounded up to a second)."""
        if self.seconds is None:
            return None
        total = int(-(-self.seconds // 1))
        days, rest = divmod(total, 86400)
        return f"{days:02d}:{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def parse_budget(text: str) -> Budget:
    """``"15m"`` → 900 s, ``"90s"``, ``"1.5h"``, ``"500steps"`` / ``"500 step"`` → 500 steps."""
    match = _PATTERN.match(str(text))
    if match is None:
        raise ValueError(
            f"cannot read budget {text!r}: use a duration like 15m, 90s, 1h or a step count like 500steps"
        )
    value, unit = float(match.group(1)), match.group(2).lower()
    if unit.startswith("step"):
        if value != int(value):
            raise ValueError(f"a step budget must be a whole number, got {text!r}")
        return Budget(steps=int(value))
    return Budget(seconds=value * _UNITS[unit])
