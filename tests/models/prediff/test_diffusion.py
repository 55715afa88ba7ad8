"""Noise schedule, DDPM / DDIM samplers, the sampling loop and the knowledge-guidance rule.

Known answers used throughout:

* point-mass data z_0 = c: the exact ε is (z_t − √ᾱ c)/√(1−ᾱ), so every sampler must return c;
* Gaussian data z_0 ~ N(m, s²) elementwise: z_t ~ N(√ᾱ m, ᾱ s² + 1 − ᾱ) and the optimal
  ε-predictor is E[ε | z_t] = √(1−ᾱ)(z_t − √ᾱ m)/(ᾱ s² + 1 − ᾱ), so samples must be N(m, s²).

Axis legend: ``b`` batch; latents are ``(b, ...)``; ``t`` is the diffusion step.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from earthcast.models.prediff.diffusion import (
    DDIMSampler,
    DDPMSampler,
    KnowledgeGuidance,
    NoiseSchedule,
    create_sampler,
    make_timesteps,
    sample_latents,
)

SCHEDULE = NoiseSchedule()
T = SCHEDULE.num_train_timesteps
DATA_MEAN, DATA_STD = 1.5, 0.5
N_TOY = 8192  # Gaussian toy sample count: sampling error of the mean = s/√N ≈ 0.0055


def _coef(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return table[t].to(like.dtype).reshape(-1, *[1] * (like.ndim - 1))


def point_mass_oracle(c: float):
    def eps(z_t, t):
        a, b = (
            _coef(SCHEDULE.sqrt_alphas_cumprod, t, z_t),
            _coef(SCHEDULE.sqrt_one_minus_alphas_cumprod, t, z_t),
        )
        return (z_t - a * c) / b

    return eps


def gaussian_oracle(m: float = DATA_MEAN, s: float = DATA_STD):
    def eps(z_t, t):
        a, b = (
            _coef(SCHEDULE.sqrt_alphas_cumprod, t, z_t),
            _coef(SCHEDULE.sqrt_one_minus_alphas_cumprod, t, z_t),
        )
        return b * (z_t - a * m) / (a**2 * s**2 + b**2)

    return eps


def _sample(sampler, steps, shape=(N_TOY,), seed=0, denoiser=None, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    return sample_latents(denoiser or gaussian_oracle(), shape, sampler, steps, generator=generator, **kwargs)


# ----------------------------------------------------------------------------- schedule


def _numpy_tables(kind: str) -> dict[str, np.ndarray]:
    if kind == "linear_sqrt":
        betas = np.linspace(np.sqrt(1e-4), np.sqrt(2e-2), T) ** 2
    elif kind == "linear":
        betas = np.linspace(1e-4, 2e-2, T)
    else:
        f = np.cos((np.arange(T + 1) / T + 0.008) / 1.008 * np.pi / 2) ** 2
        betas = np.minimum(1 - f[1:] / f[:-1], 0.999)
    abar = np.cumprod(1 - betas)
    abar_prev = np.append(1.0, abar[:-1])
    var = betas * (1 - abar_prev) / (1 - abar)
    return {
        "betas": betas,
        "alphas_cumprod": abar,
        "alphas_cumprod_prev": abar_prev,
        "posterior_variance": var,
    }


@pytest.mark.parametrize("kind", ["linear_sqrt", "linear", "cosine"])
def test_schedule_tables_match_numpy(kind):
    schedule = NoiseSchedule(kind=kind)
    for name, expected in _numpy_tables(kind).items():
        np.testing.assert_allclose(
            getattr(schedule, name).numpy(), expected, rtol=1e-10, atol=1e-14, err_msg=name
        )
    abar = schedule.alphas_cumprod
    assert bool((abar[1:] < abar[:-1]).all()) and 0 < float(abar[-1]) < float(abar[0]) < 1
    np.testing.assert_allclose(
        schedule.posterior_log_variance_clipped.numpy(),
        np.log(np.maximum(schedule.posterior_variance.numpy(), 1e-20)),
    )


def test_linear_sqrt_endpoints_and_clipped_log_variance():
    assert math.isclose(float(SCHEDULE.betas[0]), 1e-4, rel_tol=1e-12)
    assert math.isclose(float(SCHEDULE.betas[-1]), 2e-2, rel_tol=1e-12)
    assert float(SCHEDULE.posterior_variance[0]) == 0.0  # β̃_0 = 0 …
    assert math.isclose(float(SCHEDULE.posterior_log_variance_clipped[0]), math.log(1e-20))  # … log clipped


def test_schedule_config_validation_and_replace():
    with pytest.raises(ValueError, match="kind"):
        NoiseSchedule(kind="quadratic")
    with pytest.raises(ValueError, match="beta_start"):
        NoiseSchedule(beta_start=0.1, beta_end=0.01)
    short = SCHEDULE.replace(num_train_timesteps=10)
    assert short.betas.shape == (10,) and short.to_dict()["num_train_timesteps"] == 10
    assert NoiseSchedule(**SCHEDULE.to_dict()) == SCHEDULE
    with pytest.raises(ValueError, match="valid keys"):
        SCHEDULE.replace(steps=3)


def test_add_noise_inverts_to_z0_and_eps():
    z0, eps = torch.randn(6, 3, 4, 4, 2), torch.randn(6, 3, 4, 4, 2)  # (b, t, h, w, c)
    t = torch.tensor([0, 1, 250, 500, 900, T - 1])
    z_t = SCHEDULE.add_noise(z0, eps, t)
    torch.testing.assert_close(SCHEDULE.predict_z0(z_t, eps, t), z0, atol=1e-5, rtol=0)
    torch.testing.assert_close(SCHEDULE.predict_eps(z_t, z0, t), eps, atol=1e-5, rtol=0)
    # float64 latents get float64 coefficients: the inversion is then exact to round-off
    z0d, epsd = z0.double(), eps.double()
    torch.testing.assert_close(
        SCHEDULE.predict_z0(SCHEDULE.add_noise(z0d, epsd, t), epsd, t), z0d, atol=1e-12, rtol=0
    )


def test_add_noise_values_and_broadcast():
    z0, eps = torch.randn(3, 2, 5), torch.randn(3, 2, 5)
    t = torch.tensor([7, 7, 7])
    expected = (
        math.sqrt(float(SCHEDULE.alphas_cumprod[7])) * z0
        + math.sqrt(1 - float(SCHEDULE.alphas_cumprod[7])) * eps
    )
    torch.testing.assert_close(SCHEDULE.add_noise(z0, eps, t), expected)
    assert torch.equal(SCHEDULE.add_noise(z0, eps, 7), SCHEDULE.add_noise(z0, eps, t))  # scalar t broadcasts
    assert SCHEDULE.add_noise(z0.bfloat16(), eps.bfloat16(), t).dtype == torch.bfloat16


def test_posterior_mean_variance_formula():
    z0, z_t = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    t = torch.tensor([0, 600])
    post = SCHEDULE.posterior_mean_variance(z0, z_t, t)
    ref = _numpy_tables("linear_sqrt")
    for i, step in enumerate(t.tolist()):
        beta, abar, abar_prev = (
            ref["betas"][step],
            ref["alphas_cumprod"][step],
            ref["alphas_cumprod_prev"][step],
        )
        mean = (beta * np.sqrt(abar_prev) * z0[i] + (1 - abar_prev) * np.sqrt(1 - beta) * z_t[i]) / (1 - abar)
        torch.testing.assert_close(post.mean[i], mean)
        assert math.isclose(float(post.variance[i, 0]), beta * (1 - abar_prev) / (1 - abar), abs_tol=1e-15)
    assert post.variance.shape == (2, 1) and float(post.log_variance[0, 0]) == pytest.approx(math.log(1e-20))


def test_snr_is_monotone():
    snr = SCHEDULE.snr(torch.arange(T))
    abar = SCHEDULE.alphas_cumprod
    torch.testing.assert_close(snr.double(), abar / (1 - abar), rtol=1e-6, atol=0)
    assert bool((snr[1:] < snr[:-1]).all())


# ----------------------------------------------------------------------------- timesteps


def test_timestep_spacings():
    assert make_timesteps(T, 50, "leading").tolist() == list(range(980, -1, -20))
    assert make_timesteps(T, 50, "trailing").tolist() == list(range(999, 0, -20))
    for spacing in ("leading", "trailing"):
        full = make_timesteps(T, T, spacing)
        assert full.dtype == torch.long and full.tolist() == list(range(T - 1, -1, -1))
    with pytest.raises(ValueError, match="num_inference_steps"):
        make_timesteps(T, T + 1, "leading")


def test_step_rejects_unscheduled_timestep_and_unknown_sampler():
    sampler = DDIMSampler(SCHEDULE)
    sampler.set_timesteps(10)
    with pytest.raises(ValueError, match="set_timesteps"):
        sampler.step(torch.zeros(1, 2), 5, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="ddim"):
        create_sampler("euler", SCHEDULE)
    assert isinstance(create_sampler("DDIM", SCHEDULE, eta=0.5), DDIMSampler)
    assert create_sampler("ddim", SCHEDULE, eta=0.5).to_dict()["eta"] == 0.5


# ----------------------------------------------------------------------------- samplers: known answers


@pytest.mark.parametrize(
    ("sampler", "steps"),
    [
        (DDPMSampler(SCHEDULE), T),
        (DDIMSampler(SCHEDULE), 50),
        (DDIMSampler(SCHEDULE, timestep_spacing="trailing"), 50),
        (DDIMSampler(SCHEDULE, eta=1.0), 20),
    ],
)
def test_point_mass_oracle_returns_z0(sampler, steps):
    shape = (2, 3, 4, 4, 2)  # (b, t, h, w, c)
    out = _sample(sampler, steps, shape=shape, denoiser=point_mass_oracle(0.7))
    assert out.shape == shape
    torch.testing.assert_close(out, torch.full(shape, 0.7), atol=1e-4, rtol=0)


def test_ddpm_step_mean_is_the_schedule_posterior():
    sampler = DDPMSampler(SCHEDULE)
    z_t, eps = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    for t in (T - 1, 500, 1):
        out = sampler.step(eps, t, z_t, generator=torch.Generator().manual_seed(0))
        post = SCHEDULE.posterior_mean_variance(SCHEDULE.predict_z0(z_t, eps, t), z_t, t)
        torch.testing.assert_close(out.mean, post.mean, atol=1e-12, rtol=0)
        torch.testing.assert_close(out.std**2, post.variance, atol=1e-15, rtol=1e-9)
    last = sampler.step(eps, 0, z_t)
    assert torch.equal(last.prev_sample, last.mean) and float(last.std.abs().max()) == 0.0  # no noise at t=0


def test_ddpm_reproduces_gaussian_data():
    out = _sample(DDPMSampler(SCHEDULE), T)
    # tolerance: 4 sampling standard errors (mean s/√N, std s/√(2N)) + 0.005 discretisation
    assert abs(float(out.mean()) - DATA_MEAN) < 4 * DATA_STD / math.sqrt(N_TOY)
    assert abs(float(out.std()) - DATA_STD) < 4 * DATA_STD / math.sqrt(2 * N_TOY) + 5e-3


def test_ddim_eta1_all_steps_is_ddpm():
    ddpm, ddim = DDPMSampler(SCHEDULE), DDIMSampler(SCHEDULE, eta=1.0)
    # same noise draws → the same path (the transitions are algebraically identical)
    torch.testing.assert_close(_sample(ddim, T, seed=1), _sample(ddpm, T, seed=1), atol=1e-4, rtol=0)
    # and, with independent noise, the same distribution: 4 standard errors of a difference
    a, b = _sample(ddpm, T, seed=2), _sample(ddim, T, seed=3)
    se_mean, se_std = DATA_STD * math.sqrt(2 / N_TOY), DATA_STD / math.sqrt(N_TOY)
    assert abs(float(a.mean() - b.mean())) < 4 * se_mean
    assert abs(float(a.std() - b.std())) < 4 * se_std
    for x in (a, b):
        assert abs(float(x.mean()) - DATA_MEAN) < 4 * DATA_STD / math.sqrt(N_TOY)
        assert abs(float(x.std()) - DATA_STD) < 4 * DATA_STD / math.sqrt(2 * N_TOY) + 5e-3


def test_strided_ddpm_equals_ddim_eta1():
    # both use β' = 1 − ᾱ_t/ᾱ_t' for the strided chain, so with the same noise they agree
    torch.testing.assert_close(
        _sample(DDPMSampler(SCHEDULE), 50, seed=4),
        _sample(DDIMSampler(SCHEDULE, eta=1.0), 50, seed=4),
        atol=1e-4,
        rtol=0,
    )


def _ddim_error(steps: int) -> tuple[float, float]:
    """|mean − m|, |std − s| of DDIM(η=0) started from the exact marginal at its first step.

    Starting from the exact q(z_t) rather than N(0, I) isolates the sampler's discretisation error
    from the schedule's non-zero terminal signal (ᾱ_999 ≈ 7e-4).
    """
    sampler = DDIMSampler(SCHEDULE)
    sampler.set_timesteps(steps)
    abar = float(SCHEDULE.alphas_cumprod[int(sampler.timesteps[0])])
    noise = torch.randn(N_TOY, generator=torch.Generator().manual_seed(5))
    z_start = math.sqrt(abar) * DATA_MEAN + math.sqrt(abar * DATA_STD**2 + 1 - abar) * noise
    out = _sample(sampler, steps, noise=z_start)
    return abs(float(out.mean()) - DATA_MEAN), abs(float(out.std()) - DATA_STD)


def test_ddim50_deterministic_reproduces_gaussian_data():
    mean_err, std_err = _ddim_error(50)
    # mean: 4 sampling standard errors; std: 6 % (DDIM-50's first-order bias is ≈ 3 % here)
    assert mean_err < 4 * DATA_STD / math.sqrt(N_TOY)
    assert std_err < 0.06 * DATA_STD
    assert std_err < _ddim_error(10)[1]  # the bias shrinks with more steps


def test_sampling_is_reproducible_with_a_seeded_generator():
    for sampler, steps in ((DDPMSampler(SCHEDULE), 100), (DDIMSampler(SCHEDULE, eta=0.5), 20)):
        first = _sample(sampler, steps, shape=(2, 8), seed=11, progress=True)
        assert torch.equal(first, _sample(sampler, steps, shape=(2, 8), seed=11))
        assert not torch.equal(first, _sample(sampler, steps, shape=(2, 8), seed=12))


# ----------------------------------------------------------------------------- mean shift + guidance


def _mean_statistic(z_t, t):
    return z_t.flatten(1).mean(dim=1, keepdim=True)  # (b, 1)


def test_mean_shift_contract():
    seen = {}

    def shift(z_t, t, mean, std):
        seen.update(t=t, std=std)
        return torch.full_like(mean, 0.25)

    z_t, eps = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    ddim = DDIMSampler(SCHEDULE)  # η = 0: no noise, but guidance still sees the posterior std
    ddim.set_timesteps(10)
    t = int(ddim.timesteps[2])
    plain = ddim.step(eps, t, z_t)
    shifted = ddim.step(eps, t, z_t, mean_shift=shift)
    torch.testing.assert_close(shifted.prev_sample, plain.prev_sample + 0.25)
    torch.testing.assert_close(shifted.mean, plain.mean + 0.25)
    assert seen["t"].dtype == torch.long and seen["t"].tolist() == [t] * 3
    abar_t, abar_prev = (
        float(SCHEDULE.alphas_cumprod[t]),
        float(SCHEDULE.alphas_cumprod[ddim.previous_timestep(t)]),
    )
    posterior_var = (1 - abar_t / abar_prev) * (1 - abar_prev) / (1 - abar_t)
    assert seen["std"].shape == (3, 1, 1) and float(seen["std"][0]) == pytest.approx(math.sqrt(posterior_var))
    assert float(plain.std.abs().max()) == 0.0


@pytest.mark.parametrize("sampler", [DDPMSampler(SCHEDULE), DDIMSampler(SCHEDULE, eta=1.0)])
def test_guidance_scale_zero_is_bit_identical(sampler):
    target = torch.full((4, 1), 5.0)
    guidance = KnowledgeGuidance(_mean_statistic, target, scale=0.0)
    assert (
        guidance(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), torch.zeros(4, 3), torch.ones(4, 1))
        is None
    )
    plain = _sample(sampler, 200, shape=(4, 3), seed=7)
    guided = _sample(sampler, 200, shape=(4, 3), seed=7, mean_shift=guidance)
    assert torch.equal(plain, guided)
    nudged = _sample(
        sampler, 200, shape=(4, 3), seed=7, mean_shift=KnowledgeGuidance(_mean_statistic, target, 1e-3)
    )
    assert not torch.equal(plain, nudged)  # the comparison above can fail


@pytest.mark.parametrize(
    ("sampler", "steps", "step_scale", "scales"),
    [
        (DDPMSampler(SCHEDULE), T, "std", (0.0, 0.1, 0.3, 1.0, 3.0)),
        (DDIMSampler(SCHEDULE), 50, "variance", (0.0, 0.3, 1.0, 3.0, 10.0)),
    ],
)
def test_guidance_moves_statistic_toward_target_monotonically(sampler, steps, step_scale, scales):
    # data N(0, 1); the statistic is the sample mean; ask for F₀ = 2 (≈ 8 standard errors away)
    target = 2.0
    stats = []
    for scale in scales:
        guidance = KnowledgeGuidance(
            _mean_statistic, torch.full((16, 1), target), scale, step_scale=step_scale
        )
        out = _sample(
            sampler, steps, shape=(16, 16), seed=3, denoiser=gaussian_oracle(0.0, 1.0), mean_shift=guidance
        )
        stats.append(float(_mean_statistic(out, None).mean()))
    assert abs(stats[0]) < 0.2  # unguided: the data mean
    assert all(b > a for a, b in itertools.pairwise(stats)), stats
    assert abs(stats[-1] - target) < 0.05, stats  # reaches F₀ without overshooting


def test_guidance_uses_per_sample_norm():
    z_t = torch.randn(2, 3, 4)
    t = torch.tensor([400, 400])
    std = torch.full((2, 1, 1), 0.3)
    target = torch.tensor([[1.0, -2.0], [4.0, 0.5]])

    def two_statistics(z, t):
        return torch.stack([z.flatten(1).mean(1), z.flatten(1).pow(2).mean(1)], dim=1)  # (b, 2)

    per_sample = KnowledgeGuidance(two_statistics, target, scale=5.0)
    together = per_sample(z_t, t, z_t, std)
    for i in range(2):
        alone = KnowledgeGuidance(two_statistics, target[i : i + 1], scale=5.0)(
            z_t[i : i + 1], t[i : i + 1], z_t, std[:1]
        )
        torch.testing.assert_close(together[i : i + 1], alone, atol=1e-7, rtol=1e-6)
    # the reference's batch-global norm couples the samples: the same comparison fails
    batch = KnowledgeGuidance(two_statistics, target, scale=5.0, norm="batch")(z_t, t, z_t, std)
    alone0 = KnowledgeGuidance(two_statistics, target[:1], scale=5.0, norm="batch")(
        z_t[:1], t[:1], z_t, std[:1]
    )
    assert not torch.allclose(batch[:1], alone0, atol=1e-4)


def test_guidance_gradient_scaling_and_no_graph_leak():
    net = nn.Linear(6, 1)
    z_t = torch.randn(3, 6)
    t = torch.full((3,), 100)
    std = torch.full((3, 1), 0.2)
    target = net(z_t).detach() + 1.0  # every prediction is 1 below F₀: L = F₀ − U(z), ∇L = −w
    with torch.no_grad():  # the sampling loop runs under no_grad
        shift_std = KnowledgeGuidance(lambda z, t: net(z), target, scale=2.0)(z_t, t, z_t, std)
        shift_var = KnowledgeGuidance(lambda z, t: net(z), target, scale=2.0, step_scale="variance")(
            z_t, t, z_t, std
        )
    expected = 2.0 * 0.2 * net.weight.detach().expand(3, 6)  # −λ σ (−w)
    torch.testing.assert_close(shift_std, expected)
    torch.testing.assert_close(shift_var, expected * 0.2)
    assert not shift_std.requires_grad and net.weight.grad is None  # no parameter gradients accumulate
