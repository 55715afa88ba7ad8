"""Position-wise feed-forward network (pre-norm, residual inside), optionally gated (SPEC §1.8)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from earthcast.nn.norm import make_norm

Activation = Literal["gelu", "leaky", "relu", "silu", "identity"]


def make_activation(name: str) -> nn.Module:
    """``leaky`` is LeakyReLU(0.1), the Earthformer class default."""
    table = {
        "gelu": nn.GELU,
        "leaky": lambda: nn.LeakyReLU(0.1),
        "relu": nn.ReLU,
        "silu": nn.SiLU,
        "identity": nn.Identity,
    }
    if name not in table:
        raise ValueError(f"unknown activation '{name}', choose one of {sorted(table)}")
    return table[name]()


class PositionwiseFFN(nn.Module):
    """``x + Drop(W2 · Drop(act(W1 · LN(x))))``; gated: ``act(W1g · LN(x)) ⊙ (W1 · LN(x))``."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        dropout: float = 0.0,
        activation: str = "leaky",
        gated: bool = False,
        norm: str = "layer_norm",
    ) -> None:
        super().__init__()
        self.norm = make_norm(norm, dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc1_gate = nn.Linear(dim, hidden) if gated else None
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x (..., C)`` → ``(..., C)``."""
        y = self.norm(x)
        if self.fc1_gate is not None:
            h = self.act(self.fc1_gate(y)) * self.fc1(y)
        else:
            h = self.act(self.fc1(y))
        return x + self.drop(self.fc2(self.drop(h)))
