"""Knowledge control: constraint registry, context intensity regressor, energy estimator, guidance wiring."""

from __future__ import annotations

import inspect
import itertools
import math

import pytest
import torch
from einops import reduce
from torch import nn

from earthcast.models.prediff.denoiser import AlignmentNetwork, get_alignment_config
from earthcast.models.prediff.diffusion import DDIMSampler, NoiseSchedule, sample_latents
from earthcast.models.prediff.knowledge import (
    CONSTRAINTS,
    ContextIntensityRegressor,
    EnergyEstimator,
    MeanIntensity,
    NBodyEnergy,
    get_constraint,
    list_constraints,
    make_guidance,
    parse_anticipate,
)
from earthcast.models.prediff.knowledge.energy import pair_moments
from earthcast.models.prediff.knowledge.intensity import context_features

SCHEDULE = NoiseSchedule()


# ------------------------------------------------------------------------------ registry


def test_constraint_registry_lookup_and_clear_error():
    assert list_constraints() == ["mean_intensity", "nbody_energy"]
    assert isinstance(get_constraint("Mean_Intensity"), MeanIntensity)  # case-insensitive
    assert isinstance(get_constraint("nbody_energy"), NBodyEnergy)
    with pytest.raises(
        ValueError, match=r"unknown constraint 'energy'. Valid names: mean_intensity, nbody_energy"
    ):
        get_constraint("energy")


@pytest.mark.parametrize("name", ["mean_intensity", "nbody_energy"])
def test_constraints_rebuild_from_their_options_and_state(name):
    torch.manual_seed(0)
    original = get_constraint(name)
    if name == "mean_intensity":
        original.regressor.fit(_linear_batches(n_batches=4, seed=1))
    context, future = torch.rand(3, 4, 16, 16, 1), torch.rand(3, 4, 16, 16, 1)
    copy = CONSTRAINTS.create(name, **original.build_options())
    copy.load_state_dict(original.state_dict())
    assert torch.equal(copy.target(context), original.target(context))
    assert torch.equal(copy.statistic(future, context), original.statistic(future, context))


# --------------------------------------------------------------------------- mean intensity


def test_mean_intensity_statistic_by_hand():
    future = torch.zeros(2, 2, 2, 2, 1)
    future[0, 0] = 1.0  # sample 0: half its pixels are 1 → τ = 0.5
    future[1] = torch.tensor([[0.2, 0.4], [0.6, float("nan")]])[..., None]  # NaN = missing, skipped
    stat = get_constraint("mean_intensity").statistic(future, torch.rand(2, 3, 2, 2, 1))
    assert stat.shape == (2, 1)
    torch.testing.assert_close(stat, torch.tensor([[0.5], [(0.2 + 0.4 + 0.6) * 2 / 6]]))


def _linear_batches(n_batches, seed, a=0.6, b=0.05, noise=0.03, hetero=False, batch=200):
    """Contexts with level m ~ U(0.1, 0.9) (+ pixel noise); futures of mean a·m + b + N(0, noise²)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n_batches):
        m = 0.1 + 0.8 * torch.rand(batch, generator=g)
        context = m[:, None, None, None, None] + 0.05 * torch.randn(batch, 3, 8, 8, 1, generator=g)
        scale = noise * (m / 0.5 if hetero else torch.ones_like(m))
        tau = a * m + b + scale * torch.randn(batch, generator=g)
        future = tau[:, None, None, None, None].expand(batch, 2, 8, 8, 1).clone()
        batches.append({"inputs": context, "targets": future, "meta": {"m": m}})
    return batches


def test_regressor_recovers_a_linear_relation_and_its_sigma():
    a, b, noise = 0.6, 0.05, 0.03
    regressor = ContextIntensityRegressor().fit(_linear_batches(20, seed=0, a=a, b=b, noise=noise))
    test = _linear_batches(1, seed=99, a=a, b=b, noise=noise)[0]
    mu, sigma = regressor(test["inputs"])
    assert mu.shape == sigma.shape == (200, 1)
    expected = a * test["meta"]["m"] + b  # the noise-free future mean
    assert float((mu[:, 0] - expected).abs().max()) < 0.01  # 1/3 of the noise std
    assert float(sigma[0]) == pytest.approx(noise, rel=0.05)  # 4000 training residuals
    assert int(regressor.num_samples) == 4000
    # the slope itself: two contexts 0.6 apart in level differ by a·0.6 in μ
    lo, hi = (torch.full((1, 3, 8, 8, 1), v) for v in (0.2, 0.8))
    assert float(regressor(hi)[0] - regressor(lo)[0]) == pytest.approx(a * 0.6, abs=0.02)


def test_regressor_never_sees_the_future_at_prediction_time():
    constraint = get_constraint("mean_intensity")
    constraint.regressor.fit(_linear_batches(5, seed=0))
    batch = _linear_batches(1, seed=3)[0]
    altered = {**batch, "targets": 1.0 - batch["targets"]}  # a very different future
    truth = constraint.statistic(batch["targets"], batch["inputs"])
    assert not torch.allclose(truth, constraint.statistic(altered["targets"], altered["inputs"]))
    assert list(inspect.signature(ContextIntensityRegressor.forward).parameters) == ["self", "context"]
    for n in ("-2sigma", "0sigma", "+2sigma"):
        assert torch.equal(
            constraint.target(batch["inputs"], anticipate=n),
            constraint.target(altered["inputs"], anticipate=n),
        )


def test_regressor_binned_sigma_follows_heteroscedastic_noise():
    batches = _linear_batches(20, seed=0, noise=0.04, hetero=True)  # noise std ∝ level
    regressor = ContextIntensityRegressor(sigma_bins=4).fit(batches)
    homoscedastic = ContextIntensityRegressor().fit(batches)
    low, high = torch.full((1, 3, 8, 8, 1), 0.15), torch.full((1, 3, 8, 8, 1), 0.85)
    s_low, s_high = float(regressor(low)[1]), float(regressor(high)[1])
    assert s_high > 2.5 * s_low  # true ratio 0.85 / 0.15 ≈ 5.7, binned coarsely
    assert s_low < float(homoscedastic(low)[1]) < s_high


def test_regressor_state_dict_round_trip_and_unfitted_error():
    context = torch.rand(4, 3, 8, 8, 1)
    fresh = ContextIntensityRegressor()
    with pytest.raises(RuntimeError, match="not fitted"):
        fresh(context)
    fitted = ContextIntensityRegressor().fit(_linear_batches(3, seed=0))
    fresh.load_state_dict(fitted.state_dict())
    for got, want in zip(fresh(context), fitted(context)):
        assert torch.equal(got, want)
    with pytest.raises(ValueError, match="more than"):
        ContextIntensityRegressor().fit(_linear_batches(1, seed=0, batch=4))


def test_context_features_by_hand():
    context = torch.zeros(1, 3, 2, 2, 1)
    context[0, 0] = 0.1
    context[0, 1] = 0.2
    context[0, 2] = torch.tensor([[0.0, 0.3], [0.5, 0.8]])[..., None]  # mean 0.4
    features = context_features(context, levels=(0.25, 0.6))[0]
    last_std = math.sqrt(((0.4**2) + 0.1**2 + 0.1**2 + 0.4**2) / 4)
    expected = [0.4, (0.1 + 0.2 + 0.4) / 3, 0.15, last_std, 0.75, 0.25]  # trend: slope of 0.1, 0.2, 0.4
    torch.testing.assert_close(features, torch.tensor(expected))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("+2sigma", 2.0),
        ("-1.5sigma", -1.5),
        ("0sigma", 0.0),
        ("2sigma", 2.0),
        (" +0.5 σ ", 0.5),
        ("-.5SIGMA", -0.5),
    ],
)
def test_parse_anticipate(text, value):
    assert parse_anticipate(text) == value


@pytest.mark.parametrize("text", ["2", "+2 sigmas", "two sigma", "", "+2sigma+", "nan sigma", "sigma"])
def test_parse_anticipate_rejects_bad_text(text):
    with pytest.raises(ValueError, match=r"cannot read anticipate=.*e\.g\. '\+2sigma'"):
        parse_anticipate(text)


def test_mean_intensity_target_is_mu_plus_n_sigma():
    constraint = get_constraint("mean_intensity")
    constraint.regressor.fit(_linear_batches(5, seed=0))
    context = _linear_batches(1, seed=4, batch=6)[0]["inputs"]
    mu, sigma = constraint.regressor(context)
    torch.testing.assert_close(constraint.target(context, anticipate="+2sigma"), mu + 2 * sigma)
    torch.testing.assert_close(constraint.target(context, n_sigma=-1.5), mu - 1.5 * sigma)
    assert torch.equal(constraint.target(context), mu)
    with pytest.raises(ValueError, match="not both"):
        constraint.target(context, anticipate="+1sigma", n_sigma=1.0)


# --------------------------------------------------------------------------- N-body energy


def test_energy_estimator_shapes_normalisation_and_errors():
    torch.manual_seed(0)
    estimator = EnergyEstimator(widths=(8, 16), grid=2, hidden=16)
    frames = torch.rand(3, 4, 16, 16, 1)
    raw = estimator(frames)
    assert raw.shape == (3, 1)
    estimator.set_normalization(mean=10.0, std=2.0)
    torch.testing.assert_close(estimator(frames), raw * 2.0 + 10.0)
    assert {"energy_mean", "energy_std", "normalized"} <= set(estimator.state_dict())
    assert estimator(torch.rand(2, 7, 24, 20, 1)).shape == (2, 1)  # any length ≥ 2 and frame size
    with pytest.raises(ValueError, match=r"T >= 2"):
        estimator(torch.rand(3, 1, 16, 16, 1))
    with pytest.raises(ValueError, match="std must be > 0"):
        estimator.set_normalization(0.0, 0.0)


def test_pair_moments_by_hand():
    frames = torch.zeros(1, 2, 3, 3, 1)  # coordinates −1, 0, 1 on both axes
    frames[0, 0, 0, 0] = 1.0
    frames[0, 1, 0, 0] = frames[0, 1, 2, 2] = 1.0  # a second unit mass appears in the far corner
    moments = pair_moments(frames)
    assert moments.shape == (1, 1, 6)
    expected = [1.0, 1.0, math.sqrt(2.0), 0.5, 0.5, 2.0 / 9.0]  # var_r, var_c, spread, |Δ|, Δ², mean
    torch.testing.assert_close(moments[0, 0], torch.tensor(expected))


def test_moment_features_flag_changes_the_head_input():
    torch.manual_seed(0)
    with_moments = EnergyEstimator(widths=(8, 16), grid=2, hidden=16)
    without = EnergyEstimator(widths=(8, 16), grid=2, hidden=16, moment_features=False)
    assert with_moments.head[0].in_features == without.head[0].in_features + 6
    frames = torch.rand(2, 3, 16, 16, 1)
    assert without(frames).shape == with_moments(frames).shape == (2, 1)


def test_nbody_constraint_reads_both_clips_with_one_estimator():
    torch.manual_seed(0)
    estimator = EnergyEstimator(widths=(8, 16), grid=2, hidden=16)
    estimator.set_normalization(5.0, 3.0)
    constraint = NBodyEnergy(estimator)
    context, future = torch.rand(2, 5, 16, 16, 1), torch.rand(2, 3, 16, 16, 1)
    assert torch.equal(constraint.statistic(future, context), estimator(future))
    assert torch.equal(constraint.target(context), estimator(context))
    constraint.train()
    assert not constraint.estimator.training  # fixed knowledge stays in eval mode


# ------------------------------------------------------------------------------- guidance


class FrameMean(nn.Module):
    """Toy linear U_φ: the per-frame mean of the latent, ``(b, t, h, w, c) -> (b, t, 1)``."""

    def forward(self, z_t, t):
        return reduce(z_t, "b t h w c -> b t 1", "mean")


def _oracle(z_t, t):
    # ε̂ = E[ε | z_t] for data z_0 ~ N(0, I): z_t ~ N(0, I), so E[ε | z_t] = √(1 − ᾱ_t) z_t
    b = SCHEDULE.sqrt_one_minus_alphas_cumprod.to(z_t)[t]
    return b[:, None, None, None, None] * z_t


def _guided(mean_shift, shape=(4, 2, 4, 4, 2), seed=5, steps=25):
    generator = torch.Generator().manual_seed(seed)
    return sample_latents(
        _oracle, shape, DDIMSampler(SCHEDULE), steps, generator=generator, mean_shift=mean_shift
    )


def _fitted_intensity_constraint():
    constraint = get_constraint("mean_intensity")
    constraint.regressor.fit(_linear_batches(5, seed=0))
    return constraint


def test_make_guidance_scale_zero_is_bit_identical_to_unguided():
    constraint = _fitted_intensity_constraint()
    context = _linear_batches(1, seed=2, batch=4)[0]["inputs"]
    plain = _guided(None)
    guidance = make_guidance(FrameMean(), constraint, context, scale=0.0, anticipate="+2sigma")
    assert torch.equal(_guided(guidance), plain)
    nudged = make_guidance(FrameMean(), constraint, context, scale=0.1, anticipate="+2sigma")
    assert not torch.equal(_guided(nudged), plain)  # so the equality above could fail


def test_make_guidance_moves_the_aligned_statistic_toward_f0():
    constraint = _fitted_intensity_constraint()
    context = _linear_batches(1, seed=2, batch=4)[0]["inputs"]
    target = constraint.target(context, anticipate="+2sigma")  # (4, 1), 0.35 … 0.47 here
    distances = []
    for scale in (0.0, 0.5, 1.0, 2.0, 4.0):
        guidance = make_guidance(FrameMean(), constraint, context, scale=scale, anticipate="+2sigma")
        torch.testing.assert_close(guidance.target, target)
        stat = FrameMean()(_guided(guidance), None).mean(dim=1)  # (4, 1): what U_φ reports
        distances.append((stat - target).abs())
    assert float(distances[0].min()) > 0.3  # unguided: about the data mean 0
    assert all(bool((b < a).all()) for a, b in itertools.pairwise(distances[:4])), distances
    assert float(distances[-1].max()) < 0.03  # reached: the fixed-size steps only chatter around F₀


def test_make_guidance_repeats_targets_for_ensemble_members():
    constraint = _fitted_intensity_constraint()
    context = _linear_batches(1, seed=2, batch=2)[0]["inputs"]
    guidance = make_guidance(FrameMean(), constraint, context, scale=1.0, num_samples=3, n_sigma=1.0)
    target = constraint.target(context, n_sigma=1.0)
    assert torch.equal(guidance.target, target.repeat_interleave(3, dim=0))  # (b s) order
    with pytest.raises(ValueError, match="num_samples"):
        make_guidance(FrameMean(), constraint, context, scale=1.0, num_samples=0)


def test_make_guidance_with_the_alignment_network():
    torch.manual_seed(0)
    net = AlignmentNetwork(get_alignment_config("alignment_tiny")).eval()
    constraint = _fitted_intensity_constraint()
    context = _linear_batches(1, seed=2, batch=2)[0]["inputs"]
    shape = (2, 2, 8, 8, 4)  # alignment_tiny latents
    plain = _guided(None, shape=shape, steps=5)
    off = make_guidance(net, constraint, context, scale=0.0, anticipate="+2sigma")
    on = make_guidance(net, constraint, context, scale=5.0, anticipate="+2sigma")
    assert torch.equal(_guided(off, shape=shape, steps=5), plain)
    assert not torch.equal(_guided(on, shape=shape, steps=5), plain)
    assert all(p.grad is None for p in net.parameters())  # guidance differentiates z_t only
