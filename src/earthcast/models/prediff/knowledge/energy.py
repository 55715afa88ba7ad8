"""``EnergyEstimator``: the total energy of an N-body MNIST clip, read from its frames.

Axis legend: ``b`` batch, ``t`` time, ``p`` consecutive frame pairs (``T − 1``), ``h``/``w`` space,
``c`` channel, ``d`` feature width, ``g`` cells of the pooled grid.

PreDiff's N-body knowledge (SPEC §5.7) asks a forecast to keep the energy of its context,
``E = Σ_i ½‖v_i‖² + Σ_{i<j} G·sqrt(‖x_i − x_j‖² + d²)`` (SPEC §3.3). A generated clip has no
positions or velocities, only pixels, so the energy is *estimated* from frames by this network,
trained on clips whose true energy is known (``training/estimator_module.py``).

Design, following the two terms of E:

1. **Velocities need two frames.** The network looks at consecutive frame pairs
   ``(x_t, x_{t+1})`` and their difference (3 channels per pair, ``T − 1`` pairs; ``T ≥ 2``): how
   far a digit's edges move between frames is its speed.
2. **Positions need coordinates.** Two coordinate channels (row, column in [−1, 1]) are appended
   (CoordConv, Liu et al. 2018), so filters can tell where mass sits, not only that it is there.
3. **Pair distances are global.** A strided convolutional trunk (GroupNorm, SiLU) is pooled to a
   fixed ``grid × grid`` map (adaptive average pooling; any frame size ≥ the grid works), and an
   MLP reads the flattened map, so the potential term can compare distant digits.
4. **Energy is conserved**, so the per-pair embeddings are averaged over the clip before the MLP:
   every pair votes for the same number, which averages out per-frame noise.
5. **Moment features** (``moment_features=True``, :func:`pair_moments`): six closed-form numbers
   per pair join the CNN embedding: the mass-weighted spatial variance of the later frame along
   rows and columns and its square root (how spread out the digits are, a proxy for the
   pairwise distances of the potential term), the mean |Δx| and mean Δx² per unit mass (how much
   the picture moves, a proxy for the kinetic term) and the mean intensity. On their own, a
   quadratic ridge fit of them explains ~80 % of the energy variance of 32×32 N-body clips, so
   the CNN starts from a good estimate and only learns the remainder, which matters on CPU
   budgets. They are averaged over pairs and standardised with training statistics (buffers):
   Adam's per-parameter step size would otherwise take thousands of steps to scale up the
   weights of features that are 10–100× smaller than the CNN's normalised activations.

The output is in physical units: the MLP predicts a standardised energy that is mapped back with
the training mean and std held in buffers (set by :meth:`EnergyEstimator.set_normalization`), so
the estimator saves and loads with its ``state_dict``.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import Tensor, nn


@dataclass(frozen=True)
class EnergyEstimatorConfig:
    """Options of :class:`EnergyEstimator`.

    Attributes:
        in_channels: channels ``C`` of a frame.
        widths: widths of the convolutional stages; each stage halves the resolution.
        grid: side of the pooled feature map read by the MLP.
        hidden: width of the MLP.
        norm_groups: GroupNorm groups (must divide every width).
        dropout: dropout before the MLP's output layer.
        moment_features: append the closed-form :func:`pair_moments` to the CNN embedding.
    """

    in_channels: int = 1
    widths: tuple[int, ...] = (32, 64, 64)
    grid: int = 4
    hidden: int = 128
    norm_groups: int = 8
    dropout: float = 0.0
    moment_features: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        bad = [w for w in self.widths if w % self.norm_groups]
        if not self.widths or bad or min(self.in_channels, self.grid, self.hidden) < 1:
            raise ValueError(f"invalid EnergyEstimatorConfig (norm_groups must divide the widths): {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")

    def replace(self, **changes: Any) -> EnergyEstimatorConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists), as stored in checkpoints."""
        return {**dataclasses.asdict(self), "widths": list(self.widths)}


def _stage(dim: int, out_dim: int, groups: int) -> nn.Sequential:
    """Stride-2 conv → GroupNorm → SiLU → conv → GroupNorm → SiLU (halves the resolution)."""
    return nn.Sequential(
        nn.Conv2d(dim, out_dim, 3, stride=2, padding=1),
        nn.GroupNorm(groups, out_dim),
        nn.SiLU(),
        nn.Conv2d(out_dim, out_dim, 3, padding=1),
        nn.GroupNorm(groups, out_dim),
        nn.SiLU(),
    )


def coordinate_channels(batch: int, height: int, width: int, like: Tensor) -> Tensor:
    """Row and column coordinates in [−1, 1], ``(batch, 2, height, width)``."""
    rows = torch.linspace(-1.0, 1.0, height, device=like.device, dtype=like.dtype)
    cols = torch.linspace(-1.0, 1.0, width, device=like.device, dtype=like.dtype)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))  # (2, H, W)
    return repeat(grid, "two h w -> b two h w", b=batch)


NUM_MOMENTS = 6


def pair_moments(frames: Tensor) -> Tensor:
    """Step 5 of the module docstring: ``(B, T, H, W, C)`` → ``(B, T − 1, 6)`` (channels summed).

    Coordinates run over [−1, 1] on both axes, so the features do not depend on the frame size.
    """
    x = reduce(frames, "b t h w c -> b t h w", "sum").clamp_min(0)  # intensity as mass
    _, _, h, w = x.shape
    rows = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
    cols = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
    mass = reduce(x, "b t h w -> b t", "sum").clamp_min(1e-6)  # (B, T)
    row_profile, col_profile = reduce(x, "b t h w -> b t h", "sum"), reduce(x, "b t h w -> b t w", "sum")
    var_r = (row_profile * rows**2).sum(-1) / mass - ((row_profile * rows).sum(-1) / mass) ** 2  # (B, T)
    var_c = (col_profile * cols**2).sum(-1) / mass - ((col_profile * cols).sum(-1) / mass) ** 2
    step = x[:, 1:] - x[:, :-1]  # (B, P, H, W)
    moved = reduce(step.abs(), "b p h w -> b p", "sum") / mass[:, 1:]  # (B, P)
    moved_sq = reduce(step.square(), "b p h w -> b p", "sum") / mass[:, 1:]
    spread = (var_r + var_c).clamp_min(0)[:, 1:]  # (B, P)
    features = [var_r[:, 1:], var_c[:, 1:], spread.sqrt(), moved, moved_sq, mass[:, 1:] / (h * w)]
    return torch.stack(features, dim=-1)  # (B, P, 6)


class EnergyEstimator(nn.Module):
    """Frames ``(B, T, H, W, C)`` (``T ≥ 2``) → total energy ``(B, 1)`` (see the module docstring).

    Args:
        config: architecture (default :class:`EnergyEstimatorConfig`); ``overrides`` replace fields.
    """

    def __init__(self, config: EnergyEstimatorConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = (config or EnergyEstimatorConfig()).replace(**overrides)
        self.config = cfg
        dims = [3 * cfg.in_channels + 2, *cfg.widths]  # pair (x_t, x_t+1, Δx) + coordinates
        self.trunk = nn.Sequential(*(_stage(a, b, cfg.norm_groups) for a, b in itertools.pairwise(dims)))
        self.pool = nn.AdaptiveAvgPool2d(cfg.grid)
        self.head = nn.Sequential(
            nn.Linear(cfg.widths[-1] * cfg.grid**2 + NUM_MOMENTS * cfg.moment_features, cfg.hidden),
            nn.SiLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, 1),
        )
        self.register_buffer("energy_mean", torch.zeros(()))
        self.register_buffer("energy_std", torch.ones(()))
        self.register_buffer("moment_mean", torch.zeros(NUM_MOMENTS))
        self.register_buffer("moment_std", torch.ones(NUM_MOMENTS))
        self.register_buffer("normalized", torch.zeros((), dtype=torch.bool))  # set_normalization called

    def set_normalization(self, mean: float, std: float, moments: Tensor | None = None) -> None:
        """Training statistics: the head predicts ``(E − mean) / std`` from standardised moments.

        Args:
            mean, std: of the training energies.
            moments: ``(N, 6)`` :meth:`clip_moments` of training clips; their mean and std
                standardise the moment features (``None``: leave them as they are).
        """
        if not std > 0:
            raise ValueError(f"energy std must be > 0, got {std}")
        self.energy_mean.fill_(float(mean))
        self.energy_std.fill_(float(std))
        if moments is not None:
            moments = moments.to(self.moment_mean)
            self.moment_mean.copy_(moments.mean(dim=0))
            self.moment_std.copy_(moments.std(dim=0).nan_to_num(1.0).clamp_min(1e-6))
        self.normalized.fill_(True)

    @staticmethod
    def clip_moments(frames: Tensor) -> Tensor:
        """Moment features averaged over a clip's pairs: ``(B, T, H, W, C)`` → ``(B, 6)``."""
        return reduce(pair_moments(torch.nan_to_num(frames.float())), "b p f -> b f", "mean")

    def normalize(self, energy: Tensor) -> Tensor:
        """``(E − mean) / std`` (any shape)."""
        return (energy - self.energy_mean) / self.energy_std

    def forward_normalized(self, frames: Tensor) -> Tensor:
        """Standardised energy: ``(B, T, H, W, C)`` → ``(B, 1)``."""
        if frames.ndim != 5 or frames.shape[1] < 2 or frames.shape[-1] != self.config.in_channels:
            raise ValueError(
                f"frames must be (B, T >= 2, H, W, {self.config.in_channels}), got {tuple(frames.shape)}"
            )
        frames = torch.nan_to_num(frames.float())
        features = self._embed_pairs(frames)  # (B, D·g²)
        if self.config.moment_features:
            moments = (self.clip_moments(frames) - self.moment_mean) / self.moment_std  # (B, 6)
            features = torch.cat([features, moments], dim=1)  # (B, D·g² + 6)
        return self.head(features)  # (B, 1)

    def _embed_pairs(self, frames: Tensor) -> Tensor:
        """Steps 1–4: CNN embedding of every frame pair, averaged over pairs, ``(B, D·g²)``."""
        b = frames.shape[0]
        before, after = frames[:, :-1], frames[:, 1:]  # (B, P, H, W, C) each
        x = torch.cat([before, after, after - before], dim=-1)  # (B, P, H, W, 3C)
        x = rearrange(x, "b p h w c -> (b p) c h w")  # (B·P, 3C, H, W)
        x = torch.cat([x, coordinate_channels(x.shape[0], x.shape[2], x.shape[3], x)], dim=1)
        x = self.pool(self.trunk(x))  # (B·P, D, grid, grid)
        return reduce(x, "(b p) d gh gw -> b (d gh gw)", "mean", b=b)  # (B, D·g²): average over pairs

    def forward(self, frames: Tensor) -> Tensor:
        """Total energy of each clip.

        Args:
            frames: ``(B, T, H, W, C)`` with ``T ≥ 2``, on the scale the estimator was trained on.

        Returns:
            ``(B, 1)`` energies in physical units (SPEC §3.3).
        """
        return self.forward_normalized(frames) * self.energy_std + self.energy_mean  # (B, 1)


def energy_mse_loss(estimator: EnergyEstimator, frames: Tensor, energy: Tensor) -> Tensor:
    """MSE between the standardised prediction and the standardised true energies ``(B,)``."""
    pred = estimator.forward_normalized(frames)[:, 0]  # (B,)
    return F.mse_loss(pred, estimator.normalize(energy.to(pred)))
