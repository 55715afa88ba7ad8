"""PredRNN: stacked spatiotemporal LSTM cells with a zig-zag memory (Wang et al. NeurIPS 2017, TPAMI 2022).

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space (``H/p``, ``W/p`` inside the network),
``c`` channel.

Contract: ``(B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``; in training also
``forward(x, targets=y, step=k)`` for scheduled sampling.

Architecture (the paper and the official ``predrnn.py``):

- Each layer is a spatiotemporal LSTM (ST-LSTM) cell with two memories. The *temporal* memory
  ``C`` runs horizontally, layer ``l`` at ``t-1`` → layer ``l`` at ``t``, updated like ConvLSTM.
  The *spatiotemporal* memory ``M`` runs zig-zag: up through the layers at step ``t``, then from
  the top layer to the bottom layer at ``t+1``. The hidden state reads both memories through a
  1×1 convolution of ``[C, M]``.
- Frames are cut into ``p × p`` patches (space-to-depth) and a bias-free 1×1 convolution maps the
  top hidden state back to a patched frame. The network runs autoregressively over
  ``T_in + T_out - 1`` steps (``_st_lstm.py``).

Scheduled sampling: default ``linear`` over 50 000 steps. The NeurIPS paper and the official
scripts start at probability 1 of feeding the true frame and lower it by 2·10⁻⁵ per iteration.
``sampling_mode="reverse"`` gives the PredRNN-V2 reverse scheduled sampling, in which context
frames may also be replaced by predictions.

The PredRNN-V2 memory-decoupling loss is optional (``decouple_beta > 0``). It adds a bias-free 1×1
``adapter``. After each forward in training mode the model stores
``beta · mean|cos(adapter(ΔC), adapter(ΔM))|`` in ``self.aux_loss``, for a training loop to add to
its objective. Otherwise ``self.aux_loss`` is ``None``.

Deviations from the official code:

- ``layer_norm`` uses ``GroupNorm(1, ·)``, which normalises over ``(C, H, W)`` like the official
  ``LayerNorm([C, H, W])`` but has per-channel rather than per-pixel affine parameters, so the
  parameter count does not depend on the frame size. It is off by default, as in the official
  Moving-MNIST scripts.
- Reverse scheduled sampling raises the context probability linearly
  (:class:`~earthcast.models.baselines._base.ScheduledSampling`), where V2 uses an exponential
  ramp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from earthcast.models.baselines._st_lstm import (
    ENSO_PRESET,
    SMALL_PRESET,
    TINY_PRESET,
    RolloutConfig,
    RolloutForecaster,
)


@dataclass(frozen=True)
class PredRNNConfig(RolloutConfig):
    """Hyper-parameters of :class:`PredRNN`. Shape and sampling fields: see :class:`RolloutConfig`.

    Defaults are the official Moving-MNIST settings (4 × 128 hidden channels, 5×5 kernels, 4×4
    patches). With them the ENSO-shaped model has the 23.8 M parameters of the Earthformer table.

    Attributes:
        hidden: hidden channels ``N`` of every ST-LSTM layer. All layers need the same width because
            the memory ``M`` passes through all of them.
        num_layers: stacked ST-LSTM layers.
        kernel_size: odd spatial kernel of every gate convolution.
        layer_norm: normalise every gate convolution (``GroupNorm(1, ·)``, see the module docstring).
        forget_bias: added to both forget-gate pre-activations (1.0, as in the official code).
        decouple_beta: weight of the PredRNN-V2 memory-decoupling loss; 0 disables it and its adapter.
    """

    hidden: int = 128
    num_layers: int = 4
    kernel_size: int = 5
    layer_norm: bool = False
    forget_bias: float = 1.0
    decouple_beta: float = 0.0

    def validate(self) -> None:
        super().validate()
        if self.hidden < 1 or self.num_layers < 1:
            raise ValueError(
                f"invalid PredRNNConfig: hidden={self.hidden} and num_layers={self.num_layers} must be >= 1"
            )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(
                f"invalid PredRNNConfig: kernel_size={self.kernel_size} must be odd (e.g. 3 or 5)"
            )
        if self.decouple_beta < 0:
            raise ValueError(f"invalid PredRNNConfig: decouple_beta={self.decouple_beta} must be >= 0")


def _gate_conv(c_in: int, c_out: int, kernel: int, layer_norm: bool) -> nn.Module:
    """Bias-free 'same' convolution (as in the official cell), optionally normalised."""
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False)
    return nn.Sequential(conv, nn.GroupNorm(1, c_out)) if layer_norm else conv


class SpatioTemporalLSTMCell(nn.Module):
    """One spatiotemporal LSTM layer (Wang et al. 2017).

    Two LSTM-style updates share the input ``X``. The temporal memory ``C`` is driven by ``H_{t-1}``
    and the spatiotemporal memory ``M`` by ``M`` from the layer below. The output gate sees both
    memories.
    """

    def __init__(self, c_in: int, hidden: int, kernel: int, layer_norm: bool, forget_bias: float) -> None:
        super().__init__()
        self.forget_bias = forget_bias
        self.conv_x = _gate_conv(c_in, 7 * hidden, kernel, layer_norm)  # i g f, i' g' f', o
        self.conv_h = _gate_conv(hidden, 4 * hidden, kernel, layer_norm)  # i g f, o
        self.conv_m = _gate_conv(hidden, 3 * hidden, kernel, layer_norm)  # i' g' f'
        self.conv_o = _gate_conv(2 * hidden, hidden, kernel, layer_norm)  # o from [C, M]
        self.fuse = nn.Conv2d(2 * hidden, hidden, 1, bias=False)  # W_{1×1} on [C, M]

    def forward(self, x: Tensor, h: Tensor, c: Tensor, m: Tensor) -> tuple[Tensor, ...]:
        """One step of the layer.

        Args:
            x: input ``(B, C_x, h, w)`` (patched frame, or the hidden state of the layer below).
            h, c: this layer's hidden state and temporal memory, ``(B, N, h, w)``.
            m: the zig-zag spatiotemporal memory, ``(B, N, h, w)``.

        Returns:
            ``h, c, m, ΔC, ΔM``, each ``(B, N, h, w)``; ``ΔC = i·g`` and ``ΔM = i'·g'`` are the
            memory increments used by the V2 decoupling loss.
        """
        i_x, g_x, f_x, i_xm, g_xm, f_xm, o_x = self.conv_x(x).chunk(7, dim=1)
        i_h, g_h, f_h, o_h = self.conv_h(h).chunk(4, dim=1)
        i_m, g_m, f_m = self.conv_m(m).chunk(3, dim=1)

        # temporal memory: a ConvLSTM update along the time axis of this layer
        delta_c = torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h)
        c = torch.sigmoid(f_x + f_h + self.forget_bias) * c + delta_c
        # spatiotemporal memory: the same update along the zig-zag path (the layer below / previous top)
        delta_m = torch.sigmoid(i_xm + i_m) * torch.tanh(g_xm + g_m)
        m = torch.sigmoid(f_xm + f_m + self.forget_bias) * m + delta_m

        memory = torch.cat([c, m], dim=1)  # (B, 2N, h, w)
        o = torch.sigmoid(o_x + o_h + self.conv_o(memory))
        h = o * torch.tanh(self.fuse(memory))
        return h, c, m, delta_c, delta_m


@dataclass
class _State:
    """Recurrent state of one rollout: per-layer ``H``/``C`` ``(B, N, h, w)``, the zig-zag ``M``."""

    h: list[Tensor]
    c: list[Tensor]
    m: Tensor
    decouple: list[Tensor]  # per (step, layer) |cos| terms of the V2 decoupling loss


class PredRNN(RolloutForecaster):
    """PredRNN forecaster (see the module docstring); built from a :class:`PredRNNConfig`."""

    config_class = PredRNNConfig
    config: PredRNNConfig

    def __init__(self, config: PredRNNConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        p2 = c.patch_size**2
        self.cells = nn.ModuleList(
            SpatioTemporalLSTMCell(
                p2 * c.channels_in if i == 0 else c.hidden,
                c.hidden,
                c.kernel_size,
                c.layer_norm,
                c.forget_bias,
            )
            for i in range(c.num_layers)
        )
        self.head = nn.Conv2d(c.hidden, p2 * c.channels_out, 1, bias=False)
        self.adapter = nn.Conv2d(c.hidden, c.hidden, 1, bias=False) if c.decouple_beta > 0 else None
        self.aux_loss: Tensor | None = None

    def _initial_state(self, x: Tensor) -> _State:
        c = self.config
        zeros = x.new_zeros(x.shape[0], c.hidden, c.height // c.patch_size, c.width // c.patch_size)
        return _State([zeros] * c.num_layers, [zeros] * c.num_layers, zeros, [])

    def _step(self, patches: Tensor, state: _State) -> tuple[Tensor, _State]:
        """One time step: ``(B, p²C_in, h, w)`` → ``(B, p²C_out, h, w)``; ``M`` climbs the stack."""
        inputs, m = patches, state.m
        for i, cell in enumerate(self.cells):
            state.h[i], state.c[i], m, delta_c, delta_m = cell(inputs, state.h[i], state.c[i], m)
            inputs = state.h[i]  # (B, N, h, w)
            if self.adapter is not None and self.training:
                state.decouple.append(self._decoupling_term(delta_c, delta_m))
        state.m = m  # the top layer's M enters the bottom layer at the next step
        return self.head(inputs), state  # (B, p²C_out, h, w)

    def _decoupling_term(self, delta_c: Tensor, delta_m: Tensor) -> Tensor:
        """``mean |cos|`` between the adapted increments, per channel over space (PredRNN-V2)."""
        a_c = rearrange(self.adapter(delta_c), "b c h w -> b c (h w)")
        a_m = rearrange(self.adapter(delta_m), "b c h w -> b c (h w)")
        return F.cosine_similarity(a_c, a_m, dim=2).abs().mean()

    def _end_rollout(self, state: _State) -> None:
        self.aux_loss = None
        if state.decouple:
            self.aux_loss = self.config.decouple_beta * torch.stack(state.decouple).mean()

    def auxiliary_loss(self) -> Tensor:
        """The decoupling loss of the last training forward (0 when off); ``ForecastSystem`` adds it."""
        if self.aux_loss is None:
            return torch.zeros((), device=next(self.parameters()).device)
        return self.aux_loss


#: Named presets (config overrides); see ``catalog.py`` for what each key means.
PRESETS: dict[str, dict[str, Any]] = {
    # 46.60 M parameters, the Earthformer SEVIR table's 46.6 M: official widths with 7×7 kernels
    "sevir": {"kernel_size": 7},
    # official Moving-MNIST settings: 23.84 M, the ENSO table's 23.8 M
    "enso": ENSO_PRESET,
    "small": {**SMALL_PRESET, "hidden": 64},
    "tiny": TINY_PRESET,
}
