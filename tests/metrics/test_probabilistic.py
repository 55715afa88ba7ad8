"""Tests for CRPS, rank histogram, spread–skill and Brier score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from earthcast.metrics.probabilistic import CRPS, BrierScore, RankHistogram, SpreadSkill, crps_ensemble


def gaussian_ensemble(seed: int, members: int, spread: float, shape=(4, 5, 32, 32, 1)):
    """Truth and members drawn around a per-pixel mean: members N(μ, spread²), truth N(μ, 1)."""
    g = torch.Generator().manual_seed(seed)
    mean = 3 * torch.randn(shape, generator=g)
    truth = mean + torch.randn(shape, generator=g)
    ensemble = mean[:, None] + spread * torch.randn((shape[0], members, *shape[1:]), generator=g)
    return ensemble, truth


def brute_force_crps(ensemble: np.ndarray, target: np.ndarray, fair: bool) -> np.ndarray:
    """O(M²) pair-sum formula, ensemble (B, S, ...) and target (B, ...)."""
    m = ensemble.shape[1]
    skill = np.abs(ensemble - target[:, None]).mean(axis=1)
    pairs = np.abs(ensemble[:, :, None] - ensemble[:, None, :]).sum(axis=(1, 2))
    return skill - pairs / (2 * m * (m - 1) if fair else 2 * m * m)


def test_single_member_crps_is_mae():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 1, 3, 6, 6, 1, generator=g), torch.rand(2, 3, 6, 6, 1, generator=g)
    metric = CRPS()
    metric.update(pred, target)
    expected = (pred[:, 0].double() - target.double()).abs().mean()
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("estimator", ["ecdf", "fair"])
def test_sorted_formula_matches_brute_force(estimator):
    g = torch.Generator().manual_seed(1)
    ensemble = torch.randn(2, 7, 3, 5, 4, 1, generator=g, dtype=torch.float64)
    target = torch.randn(2, 3, 5, 4, 1, generator=g, dtype=torch.float64)
    crps = crps_ensemble(ensemble, target, estimator)
    expected = brute_force_crps(ensemble.numpy(), target.numpy(), fair=estimator == "fair")
    np.testing.assert_allclose(crps.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_fair_is_at_most_ecdf():
    ensemble, truth = gaussian_ensemble(2, members=4, spread=1.0, shape=(2, 2, 8, 8, 1))
    ecdf, fair = crps_ensemble(ensemble, truth, "ecdf"), crps_ensemble(ensemble, truth, "fair")
    assert torch.all(fair <= ecdf + 1e-7)
    assert torch.any(fair < ecdf - 1e-3)
    # the gap is exactly the pair sum times 1/(2M(M-1)) - 1/(2M²)
    m = 4
    pairs = (ensemble[:, :, None] - ensemble[:, None, :]).abs().sum(dim=(1, 2))
    torch.testing.assert_close(
        ecdf - fair, pairs * (1 / (2 * m * (m - 1)) - 1 / (2 * m * m)), atol=1e-5, rtol=1e-5
    )


def test_crps_metric_streams_and_skips_nan_targets():
    ensemble, truth = gaussian_ensemble(3, members=5, spread=1.0, shape=(4, 2, 6, 6, 1))
    truth_nan = truth.clone()
    truth_nan[:, :, 4:] = torch.nan
    masked, cropped = CRPS("fair"), CRPS("fair")
    masked.update(ensemble[:2], truth_nan[:2])
    masked.update(ensemble[2:], truth_nan[2:])
    cropped.update(ensemble[:, :, :, :4], truth[:, :, :4])
    assert masked.compute().item() == pytest.approx(cropped.compute().item(), rel=1e-6)


def test_fair_crps_needs_two_members():
    with pytest.raises(ValueError, match="2 members"):
        crps_ensemble(torch.zeros(1, 1, 1, 2, 2, 1), torch.zeros(1, 1, 2, 2, 1), "fair")
    with pytest.raises(ValueError, match="estimator"):
        CRPS("pwm")


def chi_square_uniform(frequencies: torch.Tensor, n: int) -> float:
    expected = 1 / frequencies.numel()
    return float(n * ((frequencies - expected) ** 2 / expected).sum())


def test_rank_histogram_of_calibrated_ensemble_is_flat():
    members = 9
    ensemble, truth = gaussian_ensemble(4, members=members, spread=1.0)
    metric = RankHistogram(seed=0)
    metric.update(ensemble, truth)
    freq = metric.compute()
    assert freq.shape == (members + 1,)
    assert freq.sum().item() == pytest.approx(1.0)
    # 20480 independent ranks, 9 degrees of freedom: 99.9 % quantile is 27.9; allow 40
    assert chi_square_uniform(freq, truth.numel()) < 40


def test_rank_histogram_of_underdispersive_ensemble_is_u_shaped():
    ensemble, truth = gaussian_ensemble(5, members=9, spread=0.3)
    metric = RankHistogram()
    metric.update(ensemble, truth)
    freq = metric.compute()
    middle = freq[1:-1].mean()
    assert freq[0] > 3 * middle and freq[-1] > 3 * middle
    assert chi_square_uniform(freq, truth.numel()) > 1000


def test_rank_histogram_breaks_ties_randomly_and_reproducibly():
    # every member equals the truth: all ranks are ties and must spread evenly over 0..M
    truth = torch.zeros(2, 4, 32, 32, 1)
    ensemble = torch.zeros(2, 4, 4, 32, 32, 1)
    first, second = RankHistogram(seed=7), RankHistogram(seed=7)
    first.update(ensemble, truth)
    second.update(ensemble, truth)
    freq = first.compute()
    torch.testing.assert_close(freq, second.compute())
    assert chi_square_uniform(freq, truth.numel()) < 30
    first.reset()
    first.update(ensemble, truth)
    torch.testing.assert_close(first.compute(), freq)


def test_rank_histogram_merge_and_nan():
    ensemble, truth = gaussian_ensemble(6, members=5, spread=1.0, shape=(4, 2, 8, 8, 1))
    truth[0, 0, 0, 0, 0] = torch.nan
    rank0, rank1 = RankHistogram(), RankHistogram()
    rank0.update(ensemble[:2], truth[:2])
    rank1.update(ensemble[2:], truth[2:])
    rank0.merge_state(rank1)
    assert int(rank0.counts.sum()) == truth.numel() - 1


def test_spread_skill_of_calibrated_ensemble_is_one():
    members = 5
    ensemble, truth = gaussian_ensemble(7, members=members, spread=1.0)
    metric = SpreadSkill()
    metric.update(ensemble, truth)
    out = metric.compute()
    assert out["spread_skill_corrected"].item() == pytest.approx(1.0, abs=0.03)
    assert out["spread_skill"].item() == pytest.approx(np.sqrt(members / (members + 1)), abs=0.03)
    assert out["spread"].item() == pytest.approx(1.0, abs=0.03)


def test_spread_skill_of_underdispersive_ensemble_is_below_one():
    ensemble, truth = gaussian_ensemble(8, members=5, spread=0.5)
    metric = SpreadSkill()
    metric.update(ensemble, truth)
    assert metric.compute()["spread_skill_corrected"].item() == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="member count changed"):
        metric.update(ensemble[:, :3], truth)


def test_brier_score_hand_example():
    # one pixel, 4 members, 3 exceed τ = 0.5 → p = 0.75; outcome 1 → BS = 0.0625
    ensemble = torch.tensor([0.9, 0.6, 0.2, 0.7]).reshape(1, 4, 1, 1, 1, 1)
    target = torch.ones(1, 1, 1, 1, 1)
    metric = BrierScore([0.5], n_bins=4)
    metric.update(ensemble, target)
    out = metric.compute()
    assert out["brier@0.5"].item() == pytest.approx(0.0625)
    assert out["bin_count@0.5"].tolist() == [0, 0, 0, 1]  # 0.75 lands in the last of 4 bins
    assert out["bin_freq@0.5"][3].item() == 1.0


def test_brier_decomposition_is_exact_when_bins_separate_probabilities():
    # 4 members → probabilities 0, .25, .5, .75, 1 fall in distinct bins of 10
    ensemble, truth = gaussian_ensemble(9, members=4, spread=1.0, shape=(2, 2, 16, 16, 1))
    metric = BrierScore([0.0, 2.0], n_bins=10)
    metric.update(ensemble, truth)
    out = metric.compute()
    for tau in ("0", "2"):
        rebuilt = out[f"reliability@{tau}"] - out[f"resolution@{tau}"] + out[f"uncertainty@{tau}"]
        assert out[f"brier@{tau}"].item() == pytest.approx(rebuilt.item(), abs=1e-10)
        assert out[f"bin_count@{tau}"].sum().item() == truth.numel()
        assert 0 < out[f"brier@{tau}"].item() < 0.25
