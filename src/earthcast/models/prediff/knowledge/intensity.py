"""``ContextIntensityRegressor``: the anticipated future mean intensity μ_τ ± σ_τ from the context alone.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel, ``f`` feature (``d`` = 1 +
number of features, the augmented design with its intercept column).

PreDiff's "anticipated intensity" knowledge (SPEC §5.7) asks the sampler for a future whose mean
intensity τ is ``F₀ = μ_τ + n·σ_τ``: n standard deviations above (n > 0, storms) or below (n < 0,
droughts) what is *expected given the context*. The public demo set ``F₀`` from the ground-truth
future (issue PD#39), which cannot be done when forecasting. Here μ_τ and σ_τ come from a model
of the training data that sees only the context:

1. **Features** of a context ``y (B, T_in, H, W, C)`` (:func:`context_features`), all on the data's
   normalised scale and independent of ``T_in``, so one fit serves any context length:
   mean of the last frame, mean of the whole context, least-squares trend of the per-frame means
   (intensity change per frame), spatial std of the last frame, and the fraction of last-frame
   pixels at or above each of ``levels``. NaN pixels (missing data) are skipped.
2. **Ridge regression** τ ≈ w·features + b, fitted in one streaming pass over the training split
   (``fit(train_loader)``): the sums Σxxᵀ, Σxτ, Στ² and the count are accumulated in float64, then
   the features are standardised from those sums (so ``ridge`` penalises every feature alike and
   the intercept not at all) and the normal equations are solved. Only the loader given to
   ``fit`` is read; pass the training loader, never validation or test.
3. **Residual σ**: homoscedastic by default (``sigma_bins = 1``): σ² = SSE / (n − d), with SSE read
   off the same sums (Σ(τ − xᵀw)² = Στ² − 2wᵀΣxτ + wᵀΣxxᵀw), so no second pass is needed. With
   ``sigma_bins > 1`` a second pass bins the training residuals by the predicted μ (equal-width
   bins over the range of training τ) and keeps one σ per bin; bins with fewer than
   ``min_bin_count`` samples use the global σ. Radar residuals grow with intensity, so binning
   keeps "+2σ" from asking a dry context for a storm-sized change.

Everything fitted lives in buffers, so the regressor saves and loads with its ``state_dict``;
``forward`` raises until it has been fitted. μ + nσ is not clipped at 0: the data scale need not
start at 0 (e.g. standardised fields), so the caller decides what a negative request means.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange, reduce
from torch import Tensor, nn

from earthcast.metrics.categorical import SEVIR_SCALE, SEVIR_THRESHOLDS

DEFAULT_LEVELS = tuple(float(t) / SEVIR_SCALE for t in SEVIR_THRESHOLDS[:3])
"""The three lowest SEVIR VIL thresholds (16, 74, 133) on the [0, 1] scale (SEVIR paper, Table 1)."""

_ANTICIPATE = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?:sigma|σ)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class IntensityRegressorConfig:
    """Options of :class:`ContextIntensityRegressor` (see the module docstring).

    Attributes:
        levels: exceedance levels of the last context frame, on the data's normalised scale.
        ridge: L2 penalty on the standardised feature weights (relative to the sample count).
        sigma_bins: 1 = one residual σ; > 1 = σ per bin of the predicted μ (second pass).
        min_bin_count: training samples a σ bin needs before it is trusted.
    """

    levels: tuple[float, ...] = DEFAULT_LEVELS
    ridge: float = 1e-3
    sigma_bins: int = 1
    min_bin_count: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))
        if self.ridge < 0 or self.sigma_bins < 1 or self.min_bin_count < 1:
            raise ValueError(f"need ridge >= 0, sigma_bins >= 1 and min_bin_count >= 1; got {self}")

    @property
    def num_features(self) -> int:
        return 4 + len(self.levels)

    def replace(self, **changes: Any) -> IntensityRegressorConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists), as stored in checkpoints."""
        return {**dataclasses.asdict(self), "levels": list(self.levels)}


def parse_anticipate(text: str) -> float:
    """``"+2sigma"`` → 2.0, ``"-1.5sigma"`` → −1.5, ``"0sigma"`` → 0.0 (``σ`` works too).

    Raises:
        ValueError: the text is not a signed number followed by ``sigma``.
    """
    match = _ANTICIPATE.match(str(text))
    if match is None:
        raise ValueError(
            f"cannot read anticipate={text!r}: write a signed number of standard deviations followed "
            "by 'sigma', e.g. '+2sigma', '-1.5sigma' or '0sigma'"
        )
    return float(match.group(1))


def _nanmean(x: Tensor, pattern: str) -> Tensor:
    """Mean over finite values (einops-style reduction pattern); NaN where none is finite."""
    valid = torch.isfinite(x)
    total = reduce(torch.where(valid, x, 0.0), pattern, "sum")
    count = reduce(valid.to(x.dtype), pattern, "sum")
    return total / count  # 0/0 → NaN marks an all-missing slice


def frame_means(frames: Tensor) -> Tensor:
    """Per-frame spatial mean over finite pixels: ``(B, T, H, W, C)`` → ``(B, T)``."""
    return _nanmean(frames.float(), "b t h w c -> b t")


def future_mean(future: Tensor) -> Tensor:
    """τ: mean intensity of a clip over its finite pixels, ``(B, T, H, W, C)`` → ``(B, 1)``."""
    return rearrange(_nanmean(future.float(), "b t h w c -> b"), "b -> b 1")


def context_features(context: Tensor, levels: Iterable[float]) -> Tensor:
    """Step 1 of the module docstring: ``(B, T_in, H, W, C)`` → ``(B, 4 + len(levels))``."""
    context = context.float()
    means = frame_means(context)  # (B, T_in)
    last = context[:, -1]  # (B, H, W, C)
    valid = torch.isfinite(last)
    n_valid = reduce(valid.float(), "b h w c -> b", "sum").clamp_min(1)
    last_mean = means[:, -1]  # (B,)
    centred = torch.where(valid, last - rearrange(last_mean, "b -> b 1 1 1"), 0.0)
    last_std = (reduce(centred.square(), "b h w c -> b", "sum") / n_valid).sqrt()  # (B,)
    exceed = [reduce((valid & (last >= lv)).float(), "b h w c -> b", "sum") / n_valid for lv in levels]
    features = [last_mean, means.nanmean(dim=1), _trend(means), last_std, *exceed]
    return torch.stack(features, dim=1)  # (B, F)


def _trend(means: Tensor) -> Tensor:
    """Least-squares slope of the per-frame means against the frame index, ``(B, T)`` → ``(B,)``."""
    t = torch.arange(means.shape[1], dtype=means.dtype, device=means.device)
    valid = torch.isfinite(means)
    w = valid.to(means.dtype)
    n = w.sum(dim=1).clamp_min(1)
    t_bar = (w * t).sum(dim=1) / n  # (B,)
    y = torch.where(valid, means, 0.0)
    y_bar = y.sum(dim=1) / n
    dt = (t - t_bar[:, None]) * w  # (B, T)
    return (dt * (y - y_bar[:, None])).sum(dim=1) / dt.square().sum(dim=1).clamp_min(1e-12)


class ContextIntensityRegressor(nn.Module):
    """Predicts the future mean intensity μ_τ and its residual σ_τ from the context only.

    Args:
        config: options (default :class:`IntensityRegressorConfig`); ``overrides`` replace fields.
    """

    def __init__(self, config: IntensityRegressorConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = (config or IntensityRegressorConfig()).replace(**overrides)
        d, bins = self.config.num_features + 1, self.config.sigma_bins
        f64 = torch.float64
        self.register_buffer("weights", torch.zeros(d, dtype=f64))  # [intercept, w_1 … w_F]
        self.register_buffer("sigma", torch.zeros(bins, dtype=f64))  # one σ per μ bin
        self.register_buffer("bin_range", torch.zeros(2, dtype=f64))  # (lo, hi) of the bins
        self.register_buffer("num_samples", torch.zeros((), dtype=torch.int64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self._reset_sums()

    # ------------------------------------------------------------------------------- fitting
    def _reset_sums(self) -> None:
        d = self.config.num_features + 1
        self._xx = torch.zeros(d, d, dtype=torch.float64)
        self._xy = torch.zeros(d, dtype=torch.float64)
        self._yy = torch.zeros((), dtype=torch.float64)
        self._y_range = [math.inf, -math.inf]

    def _design(self, context: Tensor) -> Tensor:
        """``[1, features]`` in float64 on the buffers' device, ``(B, d)``."""
        features = context_features(context, self.config.levels).to(self.weights.device, torch.float64)
        return torch.cat([torch.ones_like(features[:, :1]), features], dim=1)  # (B, d)

    def update(self, context: Tensor, future: Tensor) -> None:
        """Accumulate one batch of training pairs (rows with a non-finite feature or τ are skipped)."""
        x = self._design(context).cpu()  # (B, d); the sums stay on the CPU
        y = future_mean(future).double().cpu()[:, 0]  # (B,)
        keep = torch.isfinite(x).all(dim=1) & torch.isfinite(y)
        x, y = x[keep], y[keep]
        self._xx += x.T @ x
        self._xy += x.T @ y
        self._yy += y.square().sum()
        if len(y):
            self._y_range = [min(self._y_range[0], float(y.min())), max(self._y_range[1], float(y.max()))]

    def solve(self) -> None:
        """Steps 2–3 of the module docstring from the accumulated sums (homoscedastic σ)."""
        n = float(self._xx[0, 0])
        d = self._xx.shape[0]
        if n < d + 1:
            raise ValueError(f"the regressor needs more than {d} training samples, got {int(n)}")
        mean = self._xx[0] / n  # (d,) first entry 1
        cov = self._xx[1:, 1:] / n - torch.outer(mean[1:], mean[1:])  # (F, F)
        cross = self._xy[1:] / n - mean[1:] * (self._xy[0] / n)  # (F,)
        scale = cov.diagonal().clamp_min(0).sqrt().clamp_min(1e-12)  # constant features get no weight
        gram = cov / torch.outer(scale, scale) + self.config.ridge * torch.eye(d - 1, dtype=torch.float64)
        slope = torch.linalg.solve(gram, cross / scale) / scale  # (F,)
        intercept = self._xy[0] / n - (mean[1:] * slope).sum()
        w = torch.cat([intercept[None], slope])  # (d,)
        sse = self._yy - 2 * w @ self._xy + w @ self._xx @ w
        sigma = (sse.clamp_min(0) / (n - d)).sqrt()
        self.weights.copy_(w)
        self.sigma.fill_(float(sigma))
        self.bin_range.copy_(torch.tensor(self._y_range, dtype=torch.float64))
        self.num_samples.fill_(int(n))
        self.fitted.fill_(True)

    @torch.no_grad()
    def fit(
        self, loader: Iterable[dict[str, Any]], max_batches: int | None = None
    ) -> ContextIntensityRegressor:
        """Fit on the *training* batches of ``loader`` (``inputs`` = context, ``targets`` = future).

        Args:
            loader: iterable of forecasting batches; only its ``inputs`` and ``targets`` are read.
            max_batches: stop after this many batches (per pass).

        Returns:
            ``self``, fitted.
        """
        self._reset_sums()
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            self.update(batch["inputs"], batch["targets"])
        self.solve()
        if self.config.sigma_bins > 1:
            self._fit_binned_sigma(loader, max_batches)
        return self

    def _fit_binned_sigma(self, loader: Iterable[dict[str, Any]], max_batches: int | None) -> None:
        bins = self.config.sigma_bins
        sq, count = torch.zeros(bins, dtype=torch.float64), torch.zeros(bins, dtype=torch.float64)
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            mu = self._mu(batch["inputs"]).cpu()[:, 0]  # (B,)
            y = future_mean(batch["targets"]).double().cpu()[:, 0]
            keep = torch.isfinite(mu) & torch.isfinite(y)
            index = self._bin_index(mu[keep])
            sq.index_add_(0, index, (y[keep] - mu[keep]).square())
            count.index_add_(0, index, torch.ones_like(index, dtype=torch.float64))
        trusted = count >= self.config.min_bin_count
        binned = (sq / count.clamp_min(1)).sqrt()
        self.sigma.copy_(torch.where(trusted, binned, self.sigma.cpu()))  # sparse bins keep the global σ

    def _bin_index(self, mu: Tensor) -> Tensor:
        """Index of the σ bin of each predicted μ, ``(B,)`` → ``(B,)`` (outside the range: end bins)."""
        lo, hi = float(self.bin_range[0]), float(self.bin_range[1])
        width = max(hi - lo, 1e-12) / self.config.sigma_bins
        return ((mu - lo) / width).floor().long().clamp(0, self.config.sigma_bins - 1)

    # ---------------------------------------------------------------------------- prediction
    def _mu(self, context: Tensor) -> Tensor:
        return (self._design(context) @ self.weights)[:, None]  # (B, 1) float64

    def forward(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """μ_τ and σ_τ of the future mean intensity, from the context only.

        Args:
            context: ``(B, T_in, H, W, C)`` on the data's normalised scale.

        Returns:
            ``(mu, sigma)``, each ``(B, 1)`` in the context's dtype and device.
        """
        if not bool(self.fitted):
            raise RuntimeError("ContextIntensityRegressor is not fitted: call fit(train_loader) first")
        mu = self._mu(context)  # (B, 1)
        sigma = self.sigma[self._bin_index(mu[:, 0])][:, None]  # (B, 1)
        dtype = context.dtype if context.is_floating_point() else torch.float32
        return mu.to(context.device, dtype), sigma.to(context.device, dtype)

    def anticipated(self, context: Tensor, n_sigma: float | str) -> Tensor:
        """F₀ = μ_τ + n·σ_τ, ``(B, 1)``; ``n_sigma`` is a number or a string like ``"+2sigma"``."""
        n = parse_anticipate(n_sigma) if isinstance(n_sigma, str) else float(n_sigma)
        mu, sigma = self(context)  # (B, 1) each
        return mu + n * sigma
