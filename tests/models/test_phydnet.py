"""PhyDNet numerics: moment matrices, the moment penalty and teacher forcing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from earthcast.models import create_model
from earthcast.models.baselines.phydnet import (
    PhyDNet,
    PhyDNetConfig,
    derivative_targets,
    kernel_to_moments,
    moments_to_kernel,
)


def _tiny(**overrides) -> PhyDNet:
    torch.manual_seed(0)
    shape = {"in_len": 3, "out_len": 3, "height": 16, "width": 16}
    return create_model("phydnet_tiny", **{**shape, **overrides})


def test_central_difference_has_the_first_derivative_moment():
    stencil = torch.zeros(3, 3, dtype=torch.float64)
    stencil[0, 1], stencil[2, 1] = -0.5, 0.5  # (f(y+1) - f(y-1)) / 2 along h
    expected = torch.zeros(3, 3, dtype=torch.float64)
    expected[1, 0] = 1.0
    torch.testing.assert_close(kernel_to_moments(stencil), expected)


def test_moments_to_kernel_inverts_kernel_to_moments():
    kernel = torch.randn(4, 2, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(moments_to_kernel(kernel_to_moments(kernel)), kernel)


@pytest.mark.parametrize(("i", "j"), [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)])
def test_derivative_target_kernels_differentiate_polynomials(i, j):
    # f(y, x) = y^2 x + 3 x y + x^2: a k = 5 stencil is exact on polynomials of degree < 5
    k = 5
    y, x = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    y, x = y.double(), x.double()
    field = y**2 * x + 3 * x * y + x**2
    derivatives = {
        (0, 0): field,
        (1, 0): 2 * y * x + 3 * x,
        (0, 1): y**2 + 3 * y + 2 * x,
        (2, 0): 2 * x,
        (1, 1): 2 * y + 3,
        (0, 2): 2 + 0 * x,
    }
    kernel = moments_to_kernel(derivative_targets(k).double()[i * k + j])  # (k, k)
    out = F.conv2d(field[None, None], kernel[None, None])[0, 0]  # valid part: centres 2 … 9
    torch.testing.assert_close(out, derivatives[(i, j)][2:-2, 2:-2])


def test_auxiliary_loss_is_zero_for_exact_stencils_and_weighted():
    model = _tiny(moment_weight=0.5)
    assert model.auxiliary_loss().ndim == 0
    assert model.auxiliary_loss() > 1e-3  # random filters are not derivative stencils
    filters = model.phycells[0].derivatives.weight  # (k², C, k, k)
    with torch.no_grad():
        exact = moments_to_kernel(derivative_targets(3).double()).float()  # (k², k, k)
        filters.copy_(exact[:, None].expand_as(filters))
    assert model.auxiliary_loss() < 1e-10
    unweighted = _tiny(moment_weight=1.0).auxiliary_loss()
    torch.testing.assert_close(_tiny(moment_weight=0.5).auxiliary_loss(), 0.5 * unweighted)


def test_auxiliary_loss_only_trains_the_phycell_filter_bank():
    model = _tiny()
    model.auxiliary_loss().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == {"phycells.0.derivatives.weight"}


def test_teacher_forcing_feeds_the_truth_only_when_asked():
    x, y = torch.randn(2, 3, 16, 16, 1), torch.randn(2, 3, 16, 16, 1)
    y_changed = y.clone()
    y_changed[:, 1] += 1.0  # the true frame fed at forecast step 2
    forced = _tiny(sampling_mode="teacher_forcing")
    with torch.no_grad():
        a, b = forced(x, targets=y), forced(x, targets=y_changed)
    torch.testing.assert_close(a[:, :2], b[:, :2])  # steps before the changed truth: untouched
    assert (a[:, 2] - b[:, 2]).abs().max() > 1e-4  # step 2 sees the changed truth
    free = _tiny(sampling_mode="none")
    with torch.no_grad():
        torch.testing.assert_close(free(x, targets=y), free(x, targets=y_changed))
        torch.testing.assert_close(free(x, targets=y), free(x))


def test_linear_schedule_is_free_running_once_decayed():
    model = _tiny(sampling_mode="linear", sampling_steps=10)
    x, y = torch.randn(2, 3, 16, 16, 1), torch.randn(2, 3, 16, 16, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x, targets=y, step=10), model(x))  # p = 0
        assert not torch.allclose(model(x, targets=y, step=0), model(x))  # p = 1


def test_fed_back_forecast_keeps_extra_input_channels():
    model = _tiny(channels_in=2, channels_out=1)
    pred, base = torch.full((1, 1, 16, 16), 7.0), torch.randn(1, 2, 16, 16)
    fed = model._feed(pred, base)
    assert fed.shape == base.shape
    assert torch.equal(fed[:, 0], pred[:, 0]) and torch.equal(fed[:, 1], base[:, 1])


def test_frames_not_divisible_by_four_are_padded_and_cropped():
    model = _tiny(height=18, width=13)
    out = model(torch.randn(1, 3, 18, 13, 1))
    assert out.shape == (1, 3, 18, 13, 1)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("phycell_kernel", 4, "phycell_kernel"),
        ("base_channels", 12, r"base_channels=12 must be a multiple of norm_groups=16 and at least 2·norm"),
        ("base_channels", 24, r"base_channels=24 must be a multiple of norm_groups=16"),
        ("sampling_mode", "x", "sampling_mode"),
    ],
)
def test_invalid_config_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        PhyDNetConfig(**{field: value})
    if field == "base_channels":  # the rule the message states is the rule applied
        assert PhyDNetConfig(base_channels=12, norm_groups=4).base_channels == 12
