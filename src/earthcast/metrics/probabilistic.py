"""Ensemble verification: CRPS, rank histogram, spread–skill ratio and Brier score.

Axis legend: ``b`` batch, ``s`` ensemble member (``M`` members), ``t`` lead time, ``h``/``w``
space, ``c`` channel, ``k`` threshold, ``j`` probability bin.

Ensembles are ``(B, S, T, H, W, C)`` and targets ``(B, T, H, W, C)``. Target pixels that are NaN
are excluded from every score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from einops import einsum, rearrange, reduce
from torch import Tensor

from earthcast.metrics._base import COUNT_DTYPE, SUM_DTYPE, StreamingMetric, check_ensemble

CrpsEstimator = Literal["ecdf", "fair"]


def crps_ensemble(ensemble: Tensor, target: Tensor, estimator: CrpsEstimator = "ecdf") -> Tensor:
    """Per-pixel CRPS of an ensemble forecast.

    Steps:
        1. Skill term ``(1/M) Σ_m |x̂_m − x|``.
        2. Spread term from the sorted members ``x̂_(1) ≤ … ≤ x̂_(M)``:
           ``Σ_{m,m'} |x̂_m − x̂_m'| = 2 Σ_i (2i − M − 1) x̂_(i)``, O(M log M) time and O(M)
           memory per pixel instead of the O(M²) pair sum.
        3. ``"ecdf"`` divides the pair sum by ``2M²`` (CRPS of the empirical distribution, SPEC
           §4.5); ``"fair"`` divides by ``2M(M − 1)`` (unbiased for the underlying distribution,
           Ferro 2014), which gives a value ≤ the ecdf one.

    Args:
        ensemble: ``(B, S, T, H, W, C)`` members.
        target: ``(B, T, H, W, C)`` observation.
        estimator: ``"ecdf"`` or ``"fair"`` (needs at least 2 members).

    Returns:
        ``(B, T, H, W, C)`` CRPS.
    """
    check_ensemble(ensemble, target, "crps_ensemble")
    m = ensemble.shape[1]
    if estimator not in ("ecdf", "fair"):
        raise ValueError(f"crps_ensemble: estimator must be 'ecdf' or 'fair', got {estimator!r}")
    if estimator == "fair" and m < 2:
        raise ValueError("crps_ensemble: the 'fair' estimator needs at least 2 members; use 'ecdf'")
    skill = reduce(
        (ensemble - rearrange(target, "b t h w c -> b 1 t h w c")).abs(), "b s t h w c -> b t h w c", "mean"
    )
    ranks = torch.arange(1, m + 1, device=ensemble.device, dtype=ensemble.dtype)
    sorted_members = ensemble.sort(dim=1).values
    pair_sum = 2 * einsum(sorted_members, 2 * ranks - m - 1, "b s t h w c, s -> b t h w c")
    denominator = 2 * m * m if estimator == "ecdf" else 2 * m * (m - 1)
    return skill - pair_sum / denominator


class CRPS(StreamingMetric):
    """Streaming mean CRPS over all valid pixels (see :func:`crps_ensemble`).

    Args:
        estimator: ``"ecdf"`` (default, reduces to MAE for one member) or ``"fair"``.
    """

    higher_is_better = False

    def __init__(self, estimator: CrpsEstimator = "ecdf", **kwargs) -> None:
        super().__init__(**kwargs)
        if estimator not in ("ecdf", "fair"):
            raise ValueError(f"CRPS: estimator must be 'ecdf' or 'fair', got {estimator!r}")
        self.estimator = estimator
        self.add_state("total", torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")

    def update(self, ensemble: Tensor, target: Tensor) -> None:
        """Accumulate CRPS.

        Args:
            ensemble: ``(B, S, T, H, W, C)`` members.
            target: ``(B, T, H, W, C)`` observation; NaN marks missing pixels.
        """
        valid = ~torch.isnan(target)
        crps = crps_ensemble(ensemble.float(), target.float(), self.estimator)
        self.total += crps[valid].to(SUM_DTYPE).sum()
        self.count += valid.sum()

    def compute(self) -> Tensor:
        """Return the mean CRPS."""
        return self.total / self.count


class RankHistogram(StreamingMetric):
    """Streaming rank (Talagrand) histogram.

    The rank of the observation among ``M`` members is the number of members below it; ties
    with members are broken uniformly at random (Hamill 2001) with a generator seeded by
    ``seed`` and re-seeded on :meth:`reset`, so results are reproducible.

    Args:
        seed: seed of the tie-breaking generator.
    """

    def __init__(self, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._generator_device: torch.device | None = None
        self._add_lazy_state("counts", COUNT_DTYPE)  # (M + 1,)

    def reset(self) -> None:
        super().reset()
        self._generator = None

    def _uniform(self, shape: torch.Size, device: torch.device) -> Tensor:
        if self._generator is None or self._generator_device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
            self._generator_device = device
        return torch.rand(shape, generator=self._generator, device=device)

    def update(self, ensemble: Tensor, target: Tensor) -> None:
        """Accumulate observation ranks.

        Args:
            ensemble: ``(B, S, T, H, W, C)`` members.
            target: ``(B, T, H, W, C)`` observation; NaN marks missing pixels.
        """
        check_ensemble(ensemble, target, "RankHistogram")
        m = ensemble.shape[1]
        truth = rearrange(target, "b t h w c -> b 1 t h w c")
        n_below = reduce((ensemble < truth).to(COUNT_DTYPE), "b s t h w c -> b t h w c", "sum")
        n_tied = reduce((ensemble == truth).to(COUNT_DTYPE), "b s t h w c -> b t h w c", "sum")
        u = self._uniform(target.shape, target.device)
        rank = n_below + torch.floor(u * (n_tied + 1)).to(COUNT_DTYPE)  # in [n_below, n_below + n_tied]
        valid = ~(torch.isnan(target) | reduce(torch.isnan(ensemble), "b s t h w c -> b t h w c", "max"))
        counts = torch.bincount(rank[valid], minlength=m + 1)
        self._sized_state("counts", (m + 1,), counts.device).add_(counts)

    def compute(self) -> Tensor:
        """Return the relative frequency of each rank ``0 … M`` (``(M + 1,)``, sums to 1)."""
        return self.counts.to(SUM_DTYPE) / self.counts.sum()


class SpreadSkill(StreamingMetric):
    """Streaming spread–skill ratio of an ensemble.

    ``spread = sqrt(mean_pixels var_s(x̂))`` (unbiased member variance) and ``rmse`` is the RMSE
    of the ensemble mean. The spread is the root of the *mean variance*, not the mean of the
    per-pixel standard deviations (which is biased low; Fortin et al. 2014). For a calibrated
    ensemble of ``M`` members, ``E[rmse²] = (1 + 1/M) E[spread²]``, so the corrected ratio
    ``sqrt((M + 1)/M) · spread / rmse`` is ≈ 1; the raw ratio is ≈ ``sqrt(M/(M + 1))``.

    The member count is kept as a ``max``-reduced state and must stay the same across updates.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("sum_var", "sum_sq_err", "count"):
            self.add_state(name, torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")
        self.add_state("members", torch.zeros((), dtype=COUNT_DTYPE), dist_reduce_fx="max")

    def update(self, ensemble: Tensor, target: Tensor) -> None:
        """Accumulate ensemble variance and ensemble-mean error.

        Args:
            ensemble: ``(B, S, T, H, W, C)`` members, ``S >= 2``.
            target: ``(B, T, H, W, C)`` observation; NaN marks missing pixels.
        """
        check_ensemble(ensemble, target, "SpreadSkill")
        m = ensemble.shape[1]
        if m < 2:
            raise ValueError("SpreadSkill: needs an ensemble of at least 2 members")
        if self.members.item() not in (0, m):
            raise ValueError(f"SpreadSkill: member count changed from {self.members.item()} to {m}")
        self.members.fill_(m)
        valid = ~torch.isnan(target)
        ensemble = ensemble.to(SUM_DTYPE)
        variance = ensemble.var(dim=1, correction=1)  # (B, T, H, W, C)
        sq_err = (ensemble.mean(dim=1) - target.to(SUM_DTYPE)).square()
        self.sum_var += variance[valid].sum()
        self.sum_sq_err += sq_err[valid].sum()
        self.count += valid.sum()

    def compute(self) -> dict[str, Tensor]:
        """Return ``spread``, ``rmse``, ``spread_skill`` and ``spread_skill_corrected``."""
        spread = torch.sqrt(self.sum_var / self.count)
        rmse = torch.sqrt(self.sum_sq_err / self.count)
        m = self.members.to(SUM_DTYPE)
        ratio = spread / rmse
        return {
            "spread": spread,
            "rmse": rmse,
            "spread_skill": ratio,
            "spread_skill_corrected": torch.sqrt((m + 1) / m) * ratio,
        }


class BrierScore(StreamingMetric):
    """Streaming Brier score for threshold exceedance, with reliability-diagram bins.

    The forecast probability is the fraction of members with ``x · scale >= τ``; the outcome is
    ``target · scale >= τ``. Probabilities are grouped into ``n_bins`` equal bins on [0, 1] for
    the reliability diagram and the Murphy decomposition
    ``BS ≈ reliability − resolution + uncertainty`` (exact when every bin holds a single
    probability value, e.g. ``n_bins >= M + 1`` with members spread over distinct bins).

    Args:
        thresholds: event thresholds in threshold units.
        n_bins: number of probability bins.
        scale: inputs are multiplied by this to reach threshold units.
    """

    higher_is_better = False

    def __init__(self, thresholds: Sequence[float], n_bins: int = 10, scale: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if len(thresholds) == 0 or n_bins < 1:
            raise ValueError("BrierScore: give at least one threshold and n_bins >= 1")
        self.thresholds = tuple(float(tau) for tau in thresholds)
        self.n_bins, self.scale = int(n_bins), float(scale)
        k = len(self.thresholds)
        self.add_state("sq_err", torch.zeros(k, dtype=SUM_DTYPE), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=SUM_DTYPE), dist_reduce_fx="sum")
        for name in ("bin_count", "bin_prob", "bin_obs"):
            self.add_state(name, torch.zeros(k, self.n_bins, dtype=SUM_DTYPE), dist_reduce_fx="sum")

    def update(self, ensemble: Tensor, target: Tensor) -> None:
        """Accumulate squared probability errors and reliability bins.

        Args:
            ensemble: ``(B, S, T, H, W, C)`` members.
            target: ``(B, T, H, W, C)`` observation; NaN marks missing pixels.
        """
        check_ensemble(ensemble, target, "BrierScore")
        valid = ~torch.isnan(target)
        members = rearrange(ensemble, "b s t h w c -> s b t h w c")[:, valid] * self.scale  # (S, P)
        observed = target[valid] * self.scale  # (P,)
        self.count += observed.numel()
        for i, tau in enumerate(self.thresholds):
            prob = (members >= tau).to(SUM_DTYPE).mean(dim=0)  # (P,)
            outcome = (observed >= tau).to(SUM_DTYPE)  # (P,)
            self.sq_err[i] += (prob - outcome).square().sum()
            bins = (prob * self.n_bins).long().clamp_max(self.n_bins - 1)
            self.bin_count[i] += torch.bincount(bins, minlength=self.n_bins).to(SUM_DTYPE)
            self.bin_prob[i] += torch.bincount(bins, weights=prob, minlength=self.n_bins)
            self.bin_obs[i] += torch.bincount(bins, weights=outcome, minlength=self.n_bins)

    def compute(self) -> dict[str, Tensor]:
        """Return per threshold ``brier``, ``reliability``, ``resolution``, ``uncertainty`` and the
        reliability-diagram vectors ``bin_prob`` (mean forecast probability), ``bin_freq``
        (observed frequency) and ``bin_count`` (NaN/0 for empty bins), keyed ``name@τ``."""
        result: dict[str, Tensor] = {}
        occupied = self.bin_count > 0
        safe_count = self.bin_count.clamp_min(1)
        bin_prob = torch.where(occupied, self.bin_prob / safe_count, torch.nan)  # (K, J)
        bin_freq = torch.where(occupied, self.bin_obs / safe_count, torch.nan)  # (K, J)
        climatology = self.bin_obs.sum(dim=1) / self.count  # (K,)
        reliability = (self.bin_count * (bin_prob - bin_freq).nan_to_num().square()).sum(1) / self.count
        resolution = (
            self.bin_count * (bin_freq - rearrange(climatology, "k -> k 1")).nan_to_num().square()
        ).sum(1) / self.count
        for i, tau in enumerate(self.thresholds):
            key = f"{tau:g}"
            result[f"brier@{key}"] = self.sq_err[i] / self.count
            result[f"reliability@{key}"] = reliability[i]
            result[f"resolution@{key}"] = resolution[i]
            result[f"uncertainty@{key}"] = climatology[i] * (1 - climatology[i])
            result[f"bin_prob@{key}"] = bin_prob[i]
            result[f"bin_freq@{key}"] = bin_freq[i]
            result[f"bin_count@{key}"] = self.bin_count[i]
        return result


def ensemble_skill_metrics() -> dict[str, StreamingMetric]:
    """The two scores every ensemble gets: ``crps`` (eCDF form) and ``spread_skill``; each is fed
    the members ``(B, S, T, H, W, C)`` and the targets (``training.scoring``, ``metrics.score``)."""
    return {"crps": CRPS("ecdf"), "spread_skill": SpreadSkill()}
