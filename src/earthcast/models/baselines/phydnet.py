"""PhyDNet: a PDE-constrained recurrent cell (PhyCell) beside a ConvLSTM, in a learned latent space.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel; ``i``/``j`` derivative
orders (moment indices) and ``u``/``v`` kernel offsets along ``h``/``w``.

Architecture (Le Guen & Thome, "Disentangling Physical Dynamics from Unknown Factors for
Unsupervised Video Prediction", CVPR 2020). One recurrent step maps a frame ``u_t`` to a forecast
of ``u_{t+1}``:

1. a shared image encoder ``E`` (three 3×3 conv blocks, two of stride 2) embeds the frame in a
   latent of ``2·base_channels`` channels at a quarter of the resolution;
2. two branch encoders (two 3×3 conv blocks each) split the latent into a *physical* part and a
   *residual* part;
3. the physical part drives the PhyCell, a prediction-correction cell: an Euler step of the
   latent PDE ``∂h/∂t = Φ(h)``, ``h̃ = h + Φ(h)`` (``Φ`` = a bank of ``k²`` k×k filters that are
   pushed towards the spatial derivatives ``∂^{i+j}/∂h^i ∂w^j``, ``i, j < k``, normalised and
   recombined by a 1×1 conv), then a Kalman-like correction ``h ← h̃ + K ⊙ (E_p(u) − h̃)`` with
   the gain ``K = σ(conv3×3([E_p(u), h]))`` in ``(0, 1)`` weighting observation against physics;
4. the residual part drives a stacked ConvLSTM (the information the PDE does not explain);
5. each branch is decoded by two transposed-conv blocks, the two are *summed*, and the shared
   image decoder ``D`` returns to frame space.

The filters of ``Φ`` are tied to derivatives through their *moment matrices* (Dong et al.'s
PDE-Net construction): for a k×k kernel ``w`` with centred offsets ``u, v``,
``M(w)[i, j] = Σ_{u,v} w[u, v] · u^i / i! · v^j / j!``, and by Taylor's theorem a cross-correlation
with ``w`` approximates ``Σ_{i,j} M(w)[i, j] ∂^{i+j}/∂h^i ∂w^j`` (unit grid spacing). Filter number
``n = i·k + j`` is asked to have ``M = Δ_{ij}`` (one at ``(i, j)``, zero elsewhere), i.e. to be a
finite-difference stencil of that derivative. :func:`kernel_to_moments` is the differentiable
conversion and :meth:`PhyDNet.auxiliary_loss` the penalty ``moment_weight · Σ_c mean((M − Δ)²)``,
which the training system adds to the forecast loss.

Teacher forcing: the model sets ``accepts_targets = True``. The paper trains with teacher forcing
whose probability decays linearly to zero (the authors' release: ``p = 1 − 0.01·epoch``, one draw
per batch for the whole forecast). The default here is ``sampling_mode="linear"`` over
``sampling_steps=5000`` optimiser steps, one draw per sequence. Context frames are always the true
frames, except with ``sampling_mode="reverse"`` (PredRNN-V2), where
:meth:`ScheduledSampling.context_probability` mixes in the model's own one-step predictions.
``forward(x)`` without targets is a deterministic free-running forecast.

Channels: every step encodes all ``C_in`` channels. A forecast ``(C_out)`` fed back as the next
input overwrites the first ``min(C_in, C_out)`` channels of the last observed frame and keeps its
other channels (forcings, static fields), the ordering of ``GriddedDataset``.

Deviations from the paper: (a) the authors also penalise one-step predictions of the context
frames; here only the forecast is scored (the training system's loss), plus the moment penalty;
(b) the output is linear by default (``output_sigmoid=False``) because the data are normalised
fields, not [0, 1] images; (c) frames whose size is not a multiple of 4 are zero-padded at the
bottom/right inside each step and cropped back; (d) the authors sum the per-frame MSEs of all
``T_in + T_out − 1`` steps and add the moment term with weight 1, while the training system here
averages over frames, so the same ``moment_weight=1`` weighs the constraint relatively more (it is
satisfiable exactly, by finite-difference stencils, so it is driven to ~0 either way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from earthcast.models.baselines._base import (
    BaselineForecaster,
    SamplingMode,
    ScheduledSampling,
    ShapeConfig,
    truth_mask,
)

#: Total down-sampling of the image encoder (two stride-2 convs).
DOWNSAMPLE = 4


@dataclass(frozen=True)
class PhyDNetConfig(ShapeConfig):
    """Hyper-parameters of :class:`PhyDNet` (shape fields: see :class:`ShapeConfig`).

    Attributes:
        base_channels: width of the image encoder/decoder; the latent has ``2·base_channels``.
        phycell_kernel: size ``k`` of the PhyCell filters (odd); the bank has ``k²`` filters, one
            per derivative order ``(i, j)``, ``i, j < k`` (7 → 49 filters in the paper).
        phycell_layers: stacked PhyCells (1 in the paper).
        lstm_hidden: widths of the stacked ConvLSTM layers of the residual branch.
        lstm_kernel: kernel size of the ConvLSTM convolutions (odd).
        norm_groups: GroupNorm groups of the encoder/decoder blocks (16 in the paper); must
            divide ``base_channels`` and leave at least two channels per group.
        moment_weight: weight of the moment penalty in :meth:`PhyDNet.auxiliary_loss` (1 in the
            authors' training loop).
        output_sigmoid: squash the output to ``(0, 1)`` (the paper's Moving-MNIST setting).
        sampling_mode: teacher-forcing schedule (:class:`ScheduledSampling` mode); ``linear``
            decays the probability of feeding the true frame from 1 to 0, as the paper does.
        sampling_steps: optimiser steps over which ``linear``/``reverse`` decay.
    """

    base_channels: int = 32
    phycell_kernel: int = 7
    phycell_layers: int = 1
    lstm_hidden: tuple[int, ...] = (128, 128, 64)
    lstm_kernel: int = 3
    norm_groups: int = 16
    moment_weight: float = 1.0
    output_sigmoid: bool = False
    sampling_mode: SamplingMode = "linear"
    sampling_steps: int = 5000

    def validate(self) -> None:
        for name in ("base_channels", "phycell_layers", "norm_groups", "sampling_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"invalid PhyDNetConfig: {name}={getattr(self, name)} must be >= 1")
        for name in ("phycell_kernel", "lstm_kernel"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(
                    f"invalid PhyDNetConfig: {name}={getattr(self, name)} must be odd, e.g. 3 or 7"
                )
        if self.base_channels % self.norm_groups or self.base_channels < 2 * self.norm_groups:
            raise ValueError(
                f"invalid PhyDNetConfig: base_channels={self.base_channels} must be a multiple of "
                f"norm_groups={self.norm_groups} and at least 2·norm_groups={2 * self.norm_groups} "
                "(two channels per group); change either"
            )
        if not self.lstm_hidden or min(self.lstm_hidden) < 1:
            raise ValueError(
                f"invalid PhyDNetConfig: lstm_hidden={self.lstm_hidden} needs >= 1 positive widths"
            )
        if self.moment_weight < 0:
            raise ValueError(f"invalid PhyDNetConfig: moment_weight={self.moment_weight} must be >= 0")
        if self.sampling_mode not in ("none", "teacher_forcing", "linear", "reverse"):
            raise ValueError(
                f"invalid PhyDNetConfig: sampling_mode={self.sampling_mode!r}; "
                "use none, teacher_forcing, linear or reverse"
            )


#: Named presets (config overrides); ``sevir`` / ``enso`` match the parameter counts of the tables.
PRESETS: dict[str, dict[str, Any]] = {
    # SEVIR table (13.7 M): the paper's network at double width (latent 128, ConvLSTM 280-280-128).
    "sevir": {"base_channels": 64, "lstm_hidden": (280, 280, 128)},
    # ENSO table (3.1 M): exactly the paper's Moving-MNIST network (latent 64, ConvLSTM 128-128-64).
    "enso": {"in_len": 12, "out_len": 14, "height": 24, "width": 48},
    # N-body 10 → 10 at 32×32 on CPU: half width everywhere.
    "small": {"in_len": 10, "out_len": 10, "height": 32, "width": 32, "base_channels": 16,
              "lstm_hidden": (64, 64, 32), "norm_groups": 8},
    "tiny": {"in_len": 4, "out_len": 3, "height": 16, "width": 16, "base_channels": 8,
             "phycell_kernel": 3, "lstm_hidden": (8, 8), "norm_groups": 4},
}  # fmt: skip


# ------------------------------------------------------------------------------ moment matrices
def moment_basis(kernel_size: int, dtype: torch.dtype = torch.float64, device: Any = None) -> Tensor:
    """``(k, k)`` matrix ``P[i, u] = u^i / i!`` over the centred offsets ``u = -(k-1)/2 … (k-1)/2``."""
    offsets = torch.arange(kernel_size, dtype=dtype, device=device) - (kernel_size - 1) / 2  # (k,)
    orders = torch.arange(kernel_size, dtype=dtype, device=device)  # (k,)
    factorials = torch.exp(torch.lgamma(orders + 1))  # (k,) i!
    return offsets[None, :] ** orders[:, None] / factorials[:, None]  # (k, k); 0**0 = 1


def kernel_to_moments(kernel: Tensor) -> Tensor:
    """Moment matrices ``M = P · w · Pᵀ`` of k×k kernels ``(..., k, k)`` → ``(..., k, k)``, differentiable.

    Computed in float64 (``u^i / i!`` spans orders of magnitude for k = 7) and cast back.
    """
    basis = moment_basis(kernel.shape[-1], device=kernel.device)  # (k, k)
    moments = torch.einsum("iu,...uv,jv->...ij", basis, kernel.double(), basis)  # (..., k, k)
    return moments.to(kernel.dtype)


def moments_to_kernel(moments: Tensor) -> Tensor:
    """Inverse of :func:`kernel_to_moments`: the k×k kernel ``(..., k, k)`` with these moments."""
    inverse = torch.linalg.inv(moment_basis(moments.shape[-1], device=moments.device))  # (k, k)
    kernel = torch.einsum("ui,...ij,vj->...uv", inverse, moments.double(), inverse)  # (..., k, k)
    return kernel.to(moments.dtype)


def derivative_targets(kernel_size: int, device: Any = None) -> Tensor:
    """``(k², k, k)`` moment targets: filter ``n = i·k + j`` gets ``Δ_ij``, i.e. ``∂^{i+j}/∂h^i ∂w^j``."""
    return torch.eye(kernel_size**2, device=device).reshape(kernel_size**2, kernel_size, kernel_size)


# ------------------------------------------------------------------------------ cells
class PhyCell(nn.Module):
    """Physically constrained cell: Euler prediction with a derivative filter bank, then a correction."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        n_filters = kernel_size**2
        self.derivatives = nn.Conv2d(channels, n_filters, kernel_size, padding=kernel_size // 2)
        self.norm = nn.GroupNorm(kernel_size, n_filters)  # as the authors: one group per derivative row
        self.combine = nn.Conv2d(n_filters, channels, 1)  # Φ = a learned mix of the derivatives
        self.gain = nn.Conv2d(2 * channels, channels, 3, padding=1)

    def forward(self, observed: Tensor, hidden: Tensor) -> Tensor:
        """``observed``, ``hidden`` ``(B, C, h, w)`` → next hidden ``(B, C, h, w)``."""
        predicted = hidden + self.combine(self.norm(self.derivatives(hidden)))  # h̃ = h + Φ(h)
        gain = torch.sigmoid(self.gain(torch.cat([observed, hidden], dim=1)))  # K in (0, 1)
        return predicted + gain * (observed - predicted)  # correction towards the observation

    def moment_loss(self) -> Tensor:
        """``Σ_c mean_{n,i,j} (M(w[n, c]) − Δ_n)²`` over the filter bank (scalar)."""
        weight = self.derivatives.weight  # (k², C, k, k)
        targets = derivative_targets(weight.shape[-1], weight.device)  # (k², k, k)
        error = kernel_to_moments(weight) - targets[:, None]  # (k², C, k, k)
        return error.square().mean(dim=(0, 2, 3)).sum()


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM cell (Shi et al. 2015): all four gates from one conv over ``[x, h]``."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """``x (B, C_in, h, w)``, ``state`` = ``(h, c)`` each ``(B, C_hid, h, w)`` → new ``(h, c)``."""
        h, c = state
        gates = self.conv(torch.cat([x, h], dim=1))  # (B, 4·C_hid, h, w)
        i, f, o, g = rearrange(gates, "b (k c) y x -> k b c y x", k=4)  # 4 × (B, C_hid, h, w)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


# ------------------------------------------------------------------------------ conv blocks
def conv_block(in_channels: int, out_channels: int, stride: int, groups: int) -> nn.Sequential:
    """3×3 conv (stride 1 or 2) → GroupNorm → LeakyReLU(0.2)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        nn.GroupNorm(groups, out_channels),
        nn.LeakyReLU(0.2),
    )


def upconv_block(in_channels: int, out_channels: int, stride: int, groups: int) -> nn.Sequential:
    """3×3 transposed conv (×``stride`` upsampling) → GroupNorm → LeakyReLU(0.2)."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 3, stride, padding=1, output_padding=stride - 1),
        nn.GroupNorm(groups, out_channels),
        nn.LeakyReLU(0.2),
    )


State = tuple[list[Tensor], list[tuple[Tensor, Tensor]]]  # PhyCell hiddens, ConvLSTM (h, c) pairs


class PhyDNet(BaselineForecaster):
    """PhyDNet forecaster (module docstring); build with ``PhyDNet(config)`` or ``PhyDNet(**overrides)``."""

    config_class: ClassVar[type[ShapeConfig]] = PhyDNetConfig
    accepts_targets: ClassVar[bool] = True
    config: PhyDNetConfig

    def __init__(self, config: PhyDNetConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        nf, latent, groups = c.base_channels, 2 * c.base_channels, c.norm_groups
        self.sampling = ScheduledSampling(c.sampling_mode, c.sampling_steps)
        self.encoder = nn.Sequential(  # E: (C_in, H, W) → (2nf, H/4, W/4)
            conv_block(c.channels_in, nf, 2, groups),
            conv_block(nf, nf, 1, groups),
            conv_block(nf, latent, 2, groups),
        )
        # branch-specific encoders/decoders: two stride-1 blocks each, at the latent resolution
        self.phys_encoder = nn.Sequential(*(conv_block(latent, latent, 1, groups) for _ in range(2)))
        self.res_encoder = nn.Sequential(*(conv_block(latent, latent, 1, groups) for _ in range(2)))
        self.phycells = nn.ModuleList(PhyCell(latent, c.phycell_kernel) for _ in range(c.phycell_layers))
        self.lstm = nn.ModuleList(
            ConvLSTMCell(w_in, w_out, c.lstm_kernel)
            for w_in, w_out in zip((latent, *c.lstm_hidden), c.lstm_hidden)
        )
        self.phys_decoder = nn.Sequential(*(upconv_block(latent, latent, 1, groups) for _ in range(2)))
        self.res_decoder = nn.Sequential(
            upconv_block(c.lstm_hidden[-1], latent, 1, groups), upconv_block(latent, latent, 1, groups)
        )
        self.decoder = nn.Sequential(  # D: (2nf, H/4, W/4) → (C_out, H, W)
            upconv_block(latent, nf, 2, groups),
            upconv_block(nf, nf, 1, groups),
            nn.ConvTranspose2d(nf, c.channels_out, 3, 2, padding=1, output_padding=1),
        )

    def auxiliary_loss(self) -> Tensor:
        """Moment penalty: ``moment_weight · Σ_cells Σ_c mean((M(w) − Δ)²)`` (scalar tensor).

        Pushes every PhyCell filter ``n = i·k + j`` (for every input channel) towards a
        finite-difference stencil of ``∂^{i+j}/∂h^i ∂w^j``; the training system adds it to the
        forecast loss. Independent of the data, so it can be evaluated at any time.
        """
        loss = torch.stack([cell.moment_loss() for cell in self.phycells]).sum()
        return self.config.moment_weight * loss

    def forward(self, x: Tensor, targets: Tensor | None = None, step: int = 0) -> Tensor:
        """Forecast ``x (B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)``.

        With ``targets (B, T_out, H, W, C_out)`` (training), true frames are fed instead of the
        model's forecasts with the teacher-forcing probability of ``sampling_mode`` at ``step``.
        """
        self.check_input(x)
        self.check_targets(targets)
        c = self.config
        context = rearrange(x, "b t h w c -> b t c h w")  # (B, T_in, C_in, H, W)
        # the true future, channels-first like the frames: (B, T_out, C_out, H, W)
        truth = None if targets is None else rearrange(targets, "b t h w c -> b t c h w")
        masks = self._sampling_masks(x, truth is not None, step)
        state = self._initial_state(x)
        frame, forecasts = context[:, 0], []  # (B, C_in, H, W)
        for t in range(c.in_len + c.out_len - 1):
            pred, state = self._step(frame, state)  # (B, C_out, H, W): forecast of frame t + 1
            if t + 1 >= c.in_len:
                forecasts.append(pred)
            if t + 2 < c.in_len + c.out_len:
                frame = self._next_input(t + 1, pred, context, truth, masks)  # (B, C_in, H, W)
        y = torch.stack(forecasts, dim=1)  # (B, T_out, C_out, H, W)
        return rearrange(y, "b t c h w -> b t h w c")  # (B, T_out, H, W, C_out)

    # -------------------------------------------------------------------------- stages
    def _step(self, frame: Tensor, state: State) -> tuple[Tensor, State]:
        """One recurrent step: frame ``(B, C_in, H, W)`` → forecast of the next ``(B, C_out, H, W)``."""
        height, width = frame.shape[-2:]
        pad_h, pad_w = (-height) % DOWNSAMPLE, (-width) % DOWNSAMPLE
        z = self.encoder(F.pad(frame, (0, pad_w, 0, pad_h)))  # (B, 2nf, H'/4, W'/4)
        phys, lstm_state = self._physical_branch(self.phys_encoder(z), state[0]), []
        residual = self.res_encoder(z)  # (B, 2nf, H'/4, W'/4)
        for cell, hc in zip(self.lstm, state[1]):
            lstm_state.append(cell(residual, hc))
            residual = lstm_state[-1][0]  # (B, lstm_hidden[i], H'/4, W'/4)
        z = self.phys_decoder(phys[-1]) + self.res_decoder(residual)  # (B, 2nf, H'/4, W'/4)
        out = self.decoder(z)[..., :height, :width]  # (B, C_out, H, W)
        return (torch.sigmoid(out) if self.config.output_sigmoid else out), (phys, lstm_state)

    def _physical_branch(self, observed: Tensor, hiddens: list[Tensor]) -> list[Tensor]:
        """Run the PhyCell stack: ``observed (B, 2nf, h, w)`` → the new hidden of every layer."""
        new = []
        for cell, hidden in zip(self.phycells, hiddens):
            observed = cell(observed, hidden)  # (B, 2nf, h, w); feeds the next layer
            new.append(observed)
        return new

    def _initial_state(self, x: Tensor) -> State:
        """Zero hidden states at the latent resolution ``⌈H/4⌉ × ⌈W/4⌉``."""
        c = self.config
        h, w = math.ceil(c.height / DOWNSAMPLE), math.ceil(c.width / DOWNSAMPLE)

        def zeros(channels: int) -> Tensor:
            return x.new_zeros(x.shape[0], channels, h, w)  # (B, channels, h, w)

        phys = [zeros(2 * c.base_channels) for _ in self.phycells]
        return phys, [(zeros(width), zeros(width)) for width in c.lstm_hidden]

    def _sampling_masks(self, x: Tensor, has_truth: bool, step: int) -> tuple[Tensor | None, Tensor | None]:
        """Where true frames replace feedback: context ``(B, T_in-1, 1, 1, 1)``, forecast ``(B, 1, 1, 1)``.

        ``None`` means "always the true frame" (context) or "never" (forecast, no targets).
        The forecast draw is one per sequence, as the paper decides once for the whole forecast.
        """
        if not has_truth:
            return None, None
        b, c = x.shape[0], self.config
        p_context = self.sampling.context_probability(step)
        context = None if p_context >= 1.0 else truth_mask(p_context, b, c.in_len - 1, x.device).to(x.dtype)
        forecast = truth_mask(self.sampling.forecast_probability(step), b, 1, x.device)[:, 0]  # (B, 1, 1, 1)
        return context, forecast.to(x.dtype)

    def _next_input(
        self,
        k: int,
        pred: Tensor,
        context: Tensor,
        truth: Tensor | None,
        masks: tuple[Tensor | None, Tensor | None],
    ) -> Tensor:
        """Input frame ``k`` ``(B, C_in, H, W)``: the true frame, the fed-back forecast, or a mix."""
        c, (context_mask, forecast_mask) = self.config, masks
        if k < c.in_len:  # context: true unless reverse scheduled sampling says otherwise
            true = context[:, k]  # (B, C_in, H, W)
            if context_mask is None:
                return true
            use = context_mask[:, k - 1]  # (B, 1, 1, 1)
            return use * true + (1 - use) * self._feed(pred, true)
        fed = self._feed(pred, context[:, -1])  # (B, C_in, H, W)
        if truth is None or forecast_mask is None:
            return fed
        true = self._feed(truth[:, k - c.in_len], context[:, -1])  # (B, C_in, H, W)
        return forecast_mask * true + (1 - forecast_mask) * fed

    def _feed(self, frame: Tensor, base: Tensor) -> Tensor:
        """Feed ``frame (B, C_out, H, W)``: it overwrites the leading channels of ``base (B, C_in, H, W)``."""
        m = min(self.config.channels_in, self.config.channels_out)
        return torch.cat([frame[:, :m], base[:, m:]], dim=1)  # (B, C_in, H, W)
