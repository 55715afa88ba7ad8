"""E3D-LSTM: eidetic 3-D LSTM with a self-attention recall of past memories (Wang et al. ICLR 2019).

Axis legend: ``b`` batch, ``t`` time (a short window inside the network), ``h``/``w`` space
(``H/p``, ``W/p`` inside the network), ``c`` channel, ``l`` recalled memory positions.

Contract: ``(B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``; in training also
``forward(x, targets=y, step=k)`` for scheduled sampling.

Architecture (the paper and the official ``eidetic_3d_lstm_net.py``):

- At every step the bottom layer reads a window of the last ``window_length`` (patched) frames,
  zero-padded at the start. Every state is a short clip ``(N, window_length, h, w)`` and every gate
  is a 3-D convolution (kernel ``kernel_time × k × k``, 'same' padding).
- The forget gate on the temporal memory ``C`` is replaced by an attentive *recall*: a gate
  ``R_t`` queries the layer's stored memories ``C_{t-τ:t-1}``, every position of every past
  clip, so the cell can reach states far back (eidetic memory):
  ``C_t = I_t ⊙ G_t + LayerNorm(C_{t-1} + softmax(R_t C_{t-τ:t-1}ᵀ) C_{t-τ:t-1})``.
- A spatiotemporal memory ``M`` climbs the stack zig-zag as in PredRNN. The top hidden clip is
  reduced to one patched frame by a ``window_length × 1 × 1`` convolution with stride
  ``window_length``. The network runs autoregressively over ``T_in + T_out - 1`` steps
  (``_st_lstm.py``).

Scheduled sampling: default ``linear`` over 50 000 steps. The official script starts at
probability 1 of feeding the true frame and lowers it by 2·10⁻⁵ per iteration.

Following the official code (whose parameter count the Earthformer table reports):

- every convolution has a bias;
- the ``M`` update transforms the old memory, ``M_t = F' ⊙ tanh(W_mm * M) + I' ⊙ G'``, where the
  paper's equation has no ``W_mm``;
- the recall is unscaled dot-product attention over all past memories (``recall_window=None``);
- ``layer_norm`` normalises over ``(C, T, H, W)`` with per-channel affine parameters, which is the
  official ``tf.contrib.layers.layer_norm`` and is written here as ``GroupNorm(1, ·)``.

Deviations from the official code (bugs in it, or departures from the paper):

- the official cell returns the *old* ``M``, so ``M`` stays zero; here the updated ``M`` flows as
  the paper describes;
- the output gate is ``σ(·)`` as in the paper, where the code uses ``σ(tanh(·))``;
- windows always advance by one frame (the official ``window_stride = 1``).
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
class E3DLSTMConfig(RolloutConfig):
    """Hyper-parameters of :class:`E3DLSTM`. Shape and sampling fields: see :class:`RolloutConfig`.

    Defaults are the official Moving-MNIST settings (4 × 64 hidden channels, 2×5×5 kernels,
    windows of 2 frames, 4×4 patches, layer norm). With them the ENSO-shaped model has the 12.9 M
    parameters of the Earthformer table.

    Attributes:
        hidden: hidden channels ``N`` of every layer (shared, because ``M`` passes through all).
        num_layers: stacked E3D-LSTM layers.
        kernel_size: odd spatial size ``k`` of the 3-D gate kernels.
        kernel_time: temporal size of the 3-D gate kernels.
        window_length: frames per input clip, and the time length of every state.
        recall_window: how many past memories ``τ`` the recall attends to; ``None`` means all of them.
        layer_norm: normalise the gate convolutions (the recall sum is always normalised).
        forget_bias: added to the pre-activation of ``M``'s forget gate.
    """

    hidden: int = 64
    num_layers: int = 4
    kernel_size: int = 5
    kernel_time: int = 2
    window_length: int = 2
    recall_window: int | None = None
    layer_norm: bool = True
    forget_bias: float = 1.0

    def validate(self) -> None:
        super().validate()
        for name in ("hidden", "num_layers", "kernel_time", "window_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"invalid E3DLSTMConfig: {name}={getattr(self, name)} must be >= 1")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(
                f"invalid E3DLSTMConfig: kernel_size={self.kernel_size} must be odd (e.g. 3 or 5)"
            )
        if self.recall_window is not None and self.recall_window < 1:
            raise ValueError(
                f"invalid E3DLSTMConfig: recall_window={self.recall_window} must be >= 1, or None for all"
            )


class _SameConv3d(nn.Conv3d):
    """'Same'-padded 3-D convolution; an even time kernel gets its extra zero frame at the end (TF 'same')."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int, int]) -> None:
        super().__init__(c_in, c_out, kernel, padding=(0, kernel[1] // 2, kernel[2] // 2))
        front = (kernel[0] - 1) // 2
        self.time_pad = (0, 0, 0, 0, front, kernel[0] - 1 - front)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T, h, w)`` → ``(B, C_out, T, h, w)``."""
        if any(self.time_pad):
            x = F.pad(x, self.time_pad)  # (B, C_in, T + kernel_time - 1, h, w)
        return super().forward(x)


def _conv3d(c_in: int, c_out: int, kernel: tuple[int, int, int], layer_norm: bool = False) -> nn.Module:
    """A :class:`_SameConv3d`, optionally followed by layer norm over ``(C, T, h, w)``."""
    conv = _SameConv3d(c_in, c_out, kernel)
    return nn.Sequential(conv, nn.GroupNorm(1, c_out)) if layer_norm else conv


def recall(query: Tensor, memories: Tensor) -> Tensor:
    """Eidetic recall: ``softmax(R Cᵀ) C`` over every position of the stored memory clips.

    Args:
        query: the recall gate ``R_t``, ``(B, N, T, h, w)``.
        memories: past memories ``C_{t-τ:t-1}`` concatenated on time, ``(B, N, L, h, w)``.

    Returns:
        ``(B, N, T, h, w)``: for each query position, a convex combination of memory vectors.
    """
    t, h, w = query.shape[2:]
    q = rearrange(query, "b c t h w -> b (t h w) c")
    kv = rearrange(memories, "b c l h w -> b (l h w) c")
    out = F.scaled_dot_product_attention(q, kv, kv, scale=1.0)  # (B, T·h·w, N); unscaled, as in the paper
    return rearrange(out, "b (t h w) c -> b c t h w", t=t, h=h, w=w)


class EideticCell(nn.Module):
    """One E3D-LSTM layer; all states are clips ``(B, N, T, h, w)``."""

    def __init__(
        self, c_in: int, hidden: int, kernel: tuple[int, int, int], layer_norm: bool, forget_bias: float
    ) -> None:
        super().__init__()
        self.forget_bias = forget_bias
        self.conv_x = _conv3d(c_in, 7 * hidden, kernel, layer_norm)  # i g r o, i' g' f'
        self.conv_h = _conv3d(hidden, 4 * hidden, kernel, layer_norm)  # i g r o
        self.conv_m = _conv3d(hidden, 4 * hidden, kernel, layer_norm)  # i' g' f', W_mm
        self.conv_oc = _conv3d(hidden, hidden, kernel)  # output gate from C_t
        self.conv_om = _conv3d(hidden, hidden, kernel)  # output gate from M_t
        self.recall_norm = nn.GroupNorm(1, hidden)
        self.fuse = nn.Conv3d(2 * hidden, hidden, 1)  # W_{1×1×1} on [C, M]

    def forward(self, x: Tensor, h: Tensor, c: Tensor, m: Tensor, memories: Tensor) -> tuple[Tensor, ...]:
        """One step of the layer.

        Args:
            x: input clip ``(B, C_x, T, h, w)`` (frames, or the hidden clip of the layer below).
            h, c: this layer's hidden state and temporal memory, ``(B, N, T, h, w)``.
            m: the zig-zag spatiotemporal memory, ``(B, N, T, h, w)``.
            memories: the eidetic store ``C_{t-τ:t-1}``, ``(B, N, L, h, w)``.

        Returns:
            ``h, c, m``, each ``(B, N, T, h, w)``.
        """
        i_x, g_x, r_x, o_x, i_xm, g_xm, f_xm = self.conv_x(x).chunk(7, dim=1)
        i_h, g_h, r_h, o_h = self.conv_h(h).chunk(4, dim=1)
        i_m, g_m, f_m, m_m = self.conv_m(m).chunk(4, dim=1)

        # temporal memory: no forget gate; the recall gate R reads the eidetic store instead
        r = torch.sigmoid(r_x + r_h)
        c = self.recall_norm(c + recall(r, memories)) + torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h)
        # spatiotemporal memory along the zig-zag path (official form, with W_mm)
        f_prime = torch.sigmoid(f_xm + f_m + self.forget_bias)
        m = f_prime * torch.tanh(m_m) + torch.sigmoid(i_xm + i_m) * torch.tanh(g_xm + g_m)

        o = torch.sigmoid(o_x + o_h + self.conv_oc(c) + self.conv_om(m))
        h = o * torch.tanh(self.fuse(torch.cat([c, m], dim=1)))  # (B, N, T, h, w)
        return h, c, m


@dataclass
class _State:
    """Recurrent state of one rollout; every tensor is a clip ``(B, N, T, h, w)``."""

    frames: list[Tensor]  # the last window_length - 1 input frames (B, p²C_in, h, w)
    h: list[Tensor]
    c: list[Tensor]
    m: Tensor
    memories: list[list[Tensor]]  # per layer: C of every past step (the eidetic store)


class E3DLSTM(RolloutForecaster):
    """E3D-LSTM forecaster (see the module docstring); built from an :class:`E3DLSTMConfig`."""

    config_class = E3DLSTMConfig
    config: E3DLSTMConfig

    def __init__(self, config: E3DLSTMConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        p2 = c.patch_size**2
        kernel = (c.kernel_time, c.kernel_size, c.kernel_size)
        self.cells = nn.ModuleList(
            EideticCell(
                p2 * c.channels_in if i == 0 else c.hidden, c.hidden, kernel, c.layer_norm, c.forget_bias
            )
            for i in range(c.num_layers)
        )
        window = (c.window_length, 1, 1)
        self.head = nn.Conv3d(c.hidden, p2 * c.channels_out, window, stride=window)  # clip → one frame

    def _initial_state(self, x: Tensor) -> _State:
        c = self.config
        h, w = c.height // c.patch_size, c.width // c.patch_size
        frame = x.new_zeros(x.shape[0], c.patch_size**2 * c.channels_in, h, w)
        zeros = x.new_zeros(x.shape[0], c.hidden, c.window_length, h, w)
        layers = c.num_layers
        return _State(
            [frame] * (c.window_length - 1), [zeros] * layers, [zeros] * layers, zeros, [[]] * layers
        )

    def _step(self, patches: Tensor, state: _State) -> tuple[Tensor, _State]:
        """One time step: ``(B, p²C_in, h, w)`` → ``(B, p²C_out, h, w)``; ``M`` climbs the stack."""
        frames = [*state.frames, patches]
        state.frames = frames[1:]
        inputs, m = torch.stack(frames, dim=2), state.m  # (B, p²C_in, T, h, w)
        for i, cell in enumerate(self.cells):
            state.memories[i] = self._remember(state.memories[i], state.c[i])
            memories = torch.cat(state.memories[i], dim=2)  # (B, N, L, h, w)
            state.h[i], state.c[i], m = cell(inputs, state.h[i], state.c[i], m, memories)
            inputs = state.h[i]  # (B, N, T, h, w)
        state.m = m  # the top layer's M enters the bottom layer at the next step
        return self.head(inputs)[:, :, 0], state  # (B, p²C_out, h, w)

    def _remember(self, store: list[Tensor], c: Tensor) -> list[Tensor]:
        """Append ``C_{t-1}`` to the store, keeping the last ``recall_window`` entries."""
        store = [*store, c]
        tau = self.config.recall_window
        return store if tau is None else store[-tau:]


#: Named presets (config overrides); see ``catalog.py`` for what each key means.
PRESETS: dict[str, dict[str, Any]] = {
    # the SEVIR config is unpublished: official layout, width set to match the table (35.64 M vs 35.6 M)
    "sevir": {"hidden": 107},
    # official Moving-MNIST settings: the ENSO table's 12.9 M
    "enso": ENSO_PRESET,
    "small": {**SMALL_PRESET, "hidden": 32},
    "tiny": TINY_PRESET,
}
