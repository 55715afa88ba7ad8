"""Encoder–forecaster ConvLSTM: the SEVIR/ENSO recurrent baseline of the Earthformer tables.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel.

Cell (Shi et al. 2015, eq. 3), with ``*`` a convolution and ``∘`` the Hadamard product::

    i_t = σ(W_xi * X_t + W_hi * H_{t-1} + W_ci ∘ C_{t-1} + b_i)
    f_t = σ(W_xf * X_t + W_hf * H_{t-1} + W_cf ∘ C_{t-1} + b_f)
    C_t = f_t ∘ C_{t-1} + i_t ∘ tanh(W_xc * X_t + W_hc * H_{t-1} + b_c)
    o_t = σ(W_xo * X_t + W_ho * H_{t-1} + W_co ∘ C_t + b_o)
    H_t = o_t ∘ tanh(C_t)

Network (the encoder–forecaster structure of Shi et al. 2017, TrajGRU paper, Fig. 1):

1. frames are zero-padded so that ``H`` and ``W`` are multiples of ``prod(strides)``;
2. encoder, per context frame, from fine to coarse: for stage ``s`` a strided conv
   (downsampling by ``strides[s]``, LeakyReLU) then a ConvLSTM cell; the cell's hidden state is
   the input of the next stage;
3. forecaster, per lead time, from coarse to fine: stage ``s`` is a ConvLSTM cell whose state
   starts from the encoder's final state of the same stage; its hidden state is upsampled by a
   transposed conv (``strides[s]``, LeakyReLU) and is the input of the next finer stage. The
   coarsest forecaster cell has no input at all;
4. a head (``Conv3×3 → LeakyReLU → Conv1×1``) maps every upsampled frame to ``C_out`` channels;
   the padding is cropped.

Scheduled sampling: none, and not applicable (``accepts_targets = False``). The forecaster is
driven only by its recurrent states; its outputs are never fed back as inputs, so there is no
forecast-vs-truth choice to make: teacher forcing would leave the training graph unchanged. The
model is trained exactly as it is evaluated (free-running), as in Shi et al. 2017.

All ``C_in`` input channels enter the first strided conv; the head predicts ``C_out`` channels,
so ``C_in != C_out`` needs no feedback rule.

Deviations: the peephole weights ``W_c·`` are per channel (``(C, 1, 1)``) instead of per pixel,
so the parameter count does not depend on ``H × W`` (the Earthformer tables count 14.0 M for both
SEVIR and ENSO). Strides are powers of two rather than the 5/3/2 of the HKO-7 model, so that
SEVIR's 384 and ENSO's 24×48 are divided exactly; each strided conv has kernel ``stride + 2`` and
padding 1, which divides (and the transposed conv multiplies) the size exactly by the stride.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from einops import rearrange
from torch import Tensor, nn

from earthcast.models.baselines._base import BaselineForecaster, ShapeConfig, crop_padding, pad_to_multiple

State = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class ConvLSTMConfig(ShapeConfig):
    """Hyper-parameters of :class:`ConvLSTM` (shape fields: see :class:`ShapeConfig`).

    Attributes:
        hidden_channels: ConvLSTM state width per stage, fine → coarse (one cell per stage in the
            encoder and one in the forecaster).
        strides: downsampling factor in front of each stage (``strides[0]`` applies to the input
            frames); ``H`` and ``W`` are padded to multiples of their product.
        stem_channels: width of the first strided conv's output and of the head.
        kernel_size: odd kernel of the ConvLSTM gate convolutions.
        peephole: use the ``W_c ∘ C`` peephole terms of Shi et al. (2015).
        negative_slope: slope of the LeakyReLU after the strided and transposed convs.
        forget_bias: initial bias of the forget gate (1 keeps the memory at the start of
            training; Jozefowicz et al. 2015).
    """

    hidden_channels: tuple[int, ...] = (64, 216, 216)
    strides: tuple[int, ...] = (4, 2, 2)
    stem_channels: int = 8
    kernel_size: int = 3
    peephole: bool = True
    negative_slope: float = 0.2
    forget_bias: float = 1.0

    def validate(self) -> None:
        if len(self.hidden_channels) < 1 or len(self.hidden_channels) != len(self.strides):
            raise ValueError(
                f"invalid ConvLSTMConfig: hidden_channels={self.hidden_channels} and "
                f"strides={self.strides} need the same length (one entry per stage), at least 1"
            )
        if min(self.hidden_channels) < 1 or min(self.strides) < 1 or self.stem_channels < 1:
            raise ValueError(
                "invalid ConvLSTMConfig: hidden_channels, strides and stem_channels must be >= 1"
            )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"invalid ConvLSTMConfig: kernel_size={self.kernel_size} must be odd")


#: Named presets (config overrides); ``sevir`` / ``enso`` match the parameter counts of the tables.
PRESETS: dict[str, dict[str, Any]] = {
    # 384 → 96 → 48 → 24; 14.2 M parameters (the Earthformer table counts 14.0 M for both).
    "sevir": {},
    # 24×48 → 12×24 → 6×12 → 3×6; same cells, smaller first stride.
    "enso": {"in_len": 12, "out_len": 14, "height": 24, "width": 48, "strides": (2, 2, 2)},
    # N-body 10 → 10 at 32×32 on CPU: 16×16 → 8×8 → 4×4 states, 2.0 M parameters.
    "small": {
        "in_len": 10,
        "out_len": 10,
        "height": 32,
        "width": 32,
        "hidden_channels": (32, 64, 96),
        "strides": (2, 2, 2),
        "stem_channels": 16,
    },
    "tiny": {
        "in_len": 4,
        "out_len": 3,
        "height": 16,
        "width": 16,
        "hidden_channels": (8, 16),
        "strides": (2, 2),
        "stem_channels": 4,
    },
}


class ConvLSTMCell(nn.Module):
    """One ConvLSTM cell (Shi et al. 2015, eq. 3); ``in_channels = 0`` makes an input-free cell."""

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int,
        peephole: bool,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        # one conv computes the four gate pre-activations [i, f, g, o] from the concat [X, H]
        self.gates = nn.Conv2d(
            in_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2
        )
        with torch.no_grad():
            self.gates.bias[hidden_channels : 2 * hidden_channels].fill_(forget_bias)
        # peepholes W_ci, W_cf, W_co start at 0: the cell begins as a plain ConvLSTM without them
        self.peephole = nn.Parameter(torch.zeros(3, hidden_channels, 1, 1)) if peephole else None

    def forward(self, x: Tensor | None, state: State | None) -> State:
        """One step: ``x (N, C_x, h, w)`` or ``None``, state ``(H, C)`` each ``(N, C_h, h, w)`` → new state.

        ``state=None`` is the zero state (at ``x``'s size), the start of every sequence.
        """
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[-2:])
            state = (zeros, zeros)
        h, c = state
        z = h if x is None else torch.cat([x, h], dim=1)  # (N, C_x + C_h, h, w)
        i, f, g, o = self.gates(z).chunk(4, dim=1)  # 4 × (N, C_h, h, w)
        if self.peephole is not None:
            i = i + self.peephole[0] * c
            f = f + self.peephole[1] * c
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        if self.peephole is not None:
            o = o + self.peephole[2] * c  # the output gate peeks at the *new* cell state
        return torch.sigmoid(o) * torch.tanh(c), c


def _down(in_channels: int, out_channels: int, stride: int, slope: float) -> nn.Sequential:
    # kernel stride+2 with padding 1 divides a multiple of the stride exactly by the stride
    conv = nn.Conv2d(in_channels, out_channels, stride + 2, stride, 1)
    return nn.Sequential(conv, nn.LeakyReLU(slope))


def _up(in_channels: int, out_channels: int, stride: int, slope: float) -> nn.Sequential:
    # transposed conv with kernel stride+2, padding 1: output = stride × input exactly
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, stride + 2, stride, 1), nn.LeakyReLU(slope)
    )


class ConvLSTM(BaselineForecaster):
    """Encoder–forecaster ConvLSTM (see the module docstring)."""

    config_class: ClassVar[type[ShapeConfig]] = ConvLSTMConfig
    # outputs are never fed back (the forecaster has no frame input), so there is nothing to force
    accepts_targets: ClassVar[bool] = False
    config: ConvLSTMConfig

    def __init__(self, config: ConvLSTMConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        hid, k, slope = c.hidden_channels, c.kernel_size, c.negative_slope
        # input width of stage s: the stem output for s = 0, else the (down/up-sampled) state width
        stage_in = [c.stem_channels, *hid[1:]]
        self.down = nn.ModuleList(
            _down(c_in, c_out, s, slope)
            for c_in, c_out, s in zip([c.channels_in, *hid[:-1]], stage_in, c.strides)
        )
        self.encoder = nn.ModuleList(
            ConvLSTMCell(c_in, c_h, k, c.peephole, c.forget_bias) for c_in, c_h in zip(stage_in, hid)
        )
        # forecaster stage s gets the upsampled state of stage s + 1; the coarsest gets nothing
        forecast_in = [*hid[:-1], 0]
        self.forecaster = nn.ModuleList(
            ConvLSTMCell(c_in, c_h, k, c.peephole, c.forget_bias) for c_in, c_h in zip(forecast_in, hid)
        )
        self.up = nn.ModuleList(
            _up(c_h, c_out, s, slope) for c_h, c_out, s in zip(hid, [c.stem_channels, *hid[:-1]], c.strides)
        )
        self.head = nn.Sequential(
            nn.Conv2d(c.stem_channels, c.stem_channels, 3, padding=1),
            nn.LeakyReLU(slope),
            nn.Conv2d(c.stem_channels, c.channels_out, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Forecast ``x (B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``."""
        self.check_input(x)
        b = x.shape[0]
        frames = rearrange(x, "b t h w c -> (b t) c h w")  # (B·T_in, C_in, H, W)
        frames, pad = pad_to_multiple(frames, math.prod(self.config.strides))  # (B·T_in, C_in, H', W')
        stem = self.down[0](frames)  # (B·T_in, C_stem, H'/s0, W'/s0)
        states = self._encode(rearrange(stem, "(b t) c h w -> b t c h w", b=b))  # per stage (H, C)
        fine = self._forecast(states)  # (B, T_out, C_h0, H'/s0, W'/s0)
        y = self.head(self.up[0](rearrange(fine, "b t c h w -> (b t) c h w")))  # (B·T_out, C_out, H', W')
        y = crop_padding(y, pad)  # (B·T_out, C_out, H, W)
        return rearrange(y, "(b t) c h w -> b t h w c", b=b)  # (B, T_out, H, W, C_out)

    def _encode(self, stem: Tensor) -> list[State]:
        """Run the encoder over ``stem (B, T_in, C_stem, h0, w0)``; returns the final state of each stage."""
        states: list[State | None] = [None] * len(self.encoder)
        for t in range(stem.shape[1]):
            z = stem[:, t]  # (B, C_stem, h0, w0)
            for s, cell in enumerate(self.encoder):
                z = z if s == 0 else self.down[s](z)  # (B, C_in_s, h_s, w_s)
                states[s] = cell(z, states[s])
                z = states[s][0]  # (B, C_h_s, h_s, w_s)
        return states

    def _forecast(self, states: list[State]) -> Tensor:
        """Unroll the forecaster ``T_out`` steps; returns the finest stage's hidden states
        ``(B, T_out, C_h0, h0, w0)`` (before the last upsampling, which is batched over time)."""
        states = list(states)
        outputs = []
        for _ in range(self.config.out_len):
            z = None
            for s in reversed(range(len(self.forecaster))):
                states[s] = self.forecaster[s](z, states[s])
                z = self.up[s](states[s][0]) if s > 0 else states[s][0]  # (B, C_in_{s-1}, h_{s-1}, w_{s-1})
            outputs.append(z)
        return torch.stack(outputs, dim=1)  # (B, T_out, C_h0, h0, w0)
