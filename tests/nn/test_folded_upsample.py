"""Nearest upsampling → conv → conv folded into one small-grid convolution equals the two steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import earthcast.nn.stems as stems
from earthcast.nn.folded_upsample import fold_kernels, upsample_conv_conv
from earthcast.nn.stems import ConvHead, StackHeadStage, per_frame


def _two_steps(x, w1, b1, w2, b2, factors):
    up = F.interpolate(x, scale_factor=factors, mode="nearest")
    return F.conv2d(F.conv2d(up, w1, b1, padding=1), w2, b2, padding=1)


def _params(c_in, c_mid, c_out, bias1=True, bias2=True):
    def leaf(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    return (
        leaf(c_mid, c_in, 3, 3),
        leaf(c_mid) if bias1 else None,
        leaf(c_out, c_mid, 3, 3),
        leaf(c_out) if bias2 else None,
    )


@pytest.mark.parametrize(
    ("small", "factors", "biases"),
    [
        ((5, 7), (2, 2), (True, True)),
        ((4, 3), (3, 3), (True, False)),
        ((3, 5), (2, 3), (False, True)),
        ((1, 1), (4, 2), (True, True)),
        ((2, 6), (5, 4), (False, False)),
    ],
    ids=["x2", "x3-no-bias2", "x2-x3-no-bias1", "one-pixel", "x5-x4-no-bias"],
)
def test_folded_equals_two_convolutions_with_gradients(small, factors, biases):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *small, dtype=torch.float64, requires_grad=True)
    w1, b1, w2, b2 = _params(3, 5, 4, *biases)
    folded = upsample_conv_conv(x, w1, b1, w2, b2, factors)
    plain = _two_steps(x, w1, b1, w2, b2, factors)
    assert folded.shape == plain.shape == (2, 4, small[0] * factors[0], small[1] * factors[1])
    torch.testing.assert_close(folded, plain, rtol=1e-10, atol=1e-10)
    inputs = [t for t in (x, w1, b1, w2, b2) if t is not None]
    grad_out = torch.randn_like(plain)
    for a, b in zip(
        torch.autograd.grad(folded, inputs, grad_out), torch.autograd.grad(plain, inputs, grad_out)
    ):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_folded_gradcheck():
    torch.manual_seed(1)
    x = torch.randn(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    w1, b1, w2, b2 = _params(2, 3, 2)
    assert torch.autograd.gradcheck(lambda *a: upsample_conv_conv(*a, (2, 3)), (x, w1, b1, w2, b2))


def test_border_needs_the_ring_correction():
    """Without the correction the folded kernel is wrong exactly on the border pixels: the
    second convolution zero-pads the intermediate image, not the input."""
    torch.manual_seed(2)
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    w1, b1, w2, b2 = (t.detach() for t in _params(3, 5, 4))
    kernel, bias = fold_kernels(w1, b1, w2, b2, (2, 2))
    blocks = F.conv2d(x, kernel, bias, padding=1)
    uncorrected = F.pixel_shuffle(blocks.unflatten(1, (2, 2, 4)).permute(0, 3, 1, 2, 4, 5).flatten(1, 3), 2)
    wrong = (uncorrected - _two_steps(x, w1, b1, w2, b2, (2, 2))).abs().amax(dim=1)[0]
    interior = wrong[1:-1, 1:-1]
    assert interior.max() < 1e-10
    for edge in (wrong[0], wrong[-1], wrong[:, 0], wrong[:, -1]):
        assert (edge > 1e-6).all()


def test_factor_below_two_is_refused():
    w1, b1, w2, b2 = _params(2, 2, 2)
    with pytest.raises(ValueError, match="factors >= 2"):
        upsample_conv_conv(torch.randn(1, 2, 3, 3, dtype=torch.float64), w1, b1, w2, b2, (1, 2))


def _unfolded(stage, x):
    return per_frame(stage.convs, stage.upsample(x))


@pytest.mark.parametrize(
    ("make", "small"),
    [
        (lambda: StackHeadStage(8, 4, (12, 10), 2, "leaky"), (6, 5)),
        (lambda: StackHeadStage(8, 8, (12, 10), 1, "leaky"), (6, 5)),
        (lambda: ConvHead(16, (12, 12), 1, "leaky"), (4, 4)),
        (lambda: StackHeadStage(8, 4, (12, 10), 2, "gelu"), (6, 5)),
    ],
    ids=["stack-2-convs", "stack-1-conv", "conv-head", "gelu-unfused-stack"],
)
def test_head_stages_fold_and_match_the_unfolded_path(make, small):
    torch.manual_seed(3)
    stage = make().double()
    x = torch.randn(2, 3, *small, stage.upsample.conv.in_channels, dtype=torch.float64)

    def grads(fn):
        stage.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_()
        out = fn(xi)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        return [out.detach(), xi.grad] + [p.grad for p in stage.parameters()]

    for a, b in zip(grads(stage), grads(lambda t: _unfolded(stage, t))):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        torch.testing.assert_close(stage(x), _unfolded(stage, x), rtol=1e-9, atol=1e-9)


def test_head_stage_not_by_whole_factors_falls_back():
    stage = StackHeadStage(8, 4, (13, 10), 1, "leaky").double()  # 6 → 13 is not a whole factor
    x = torch.randn(1, 2, 6, 5, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(stage(x), _unfolded(stage, x), rtol=1e-12, atol=1e-12)


def _conv_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_flop_counts()["Global"][torch.ops.aten.convolution]


def test_folding_makes_the_upsampling_convolution_free(monkeypatch):
    """The folded stage costs what the stack's first convolution alone costs on the large grid
    (plus the 1-D ring corrections); unfolded it also pays the sub-pixel upsampling conv."""
    stage = StackHeadStage(32, 16, (64, 64), 1, "leaky")
    x = torch.randn(1, 2, 32, 32, 32)
    with torch.no_grad():
        folded = _conv_flops(lambda: stage(x))
        monkeypatch.setattr(stems, "_is_plain_conv3x3", lambda layer: False)
        unfolded = _conv_flops(lambda: stage(x))
    frames, c_in, c_mid, c_out, side = 2, 32, 32, 16, 64
    large_grid_conv = 2 * frames * side * side * 9 * c_in * c_out  # FLOPs = 2 × multiply-adds
    # ring: rows −1 and H hold side+2 pixels (corners), columns −1 and W side pixels; 3 taps each
    ring_rows = (side + 2) * 3 * c_in * c_mid + side * 3 * c_mid * c_out
    ring_cols = side * 3 * c_in * c_mid + side * 3 * c_mid * c_out
    assert folded == large_grid_conv + 2 * frames * 2 * (ring_rows + ring_cols)
    assert folded < 1.07 * large_grid_conv
    assert unfolded > 1.5 * folded


def test_folded_head_under_bf16_autocast_forward_and_backward(monkeypatch):
    """Under bf16 autocast the folded stage runs forward *and* backward (its convolution backward
    in bf16, gradients returned in fp32), as close to the fp32 result as the two-step stage."""
    torch.manual_seed(4)
    stage = StackHeadStage(16, 8, (16, 16), 2, "leaky")
    x = torch.randn(1, 2, 8, 8, 16)

    def run(autocast: bool) -> list[torch.Tensor]:
        stage.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = stage(xi)
        y.float().square().mean().backward()
        return [y.float(), xi.grad] + [p.grad.clone() for p in stage.parameters()]

    def worst_relative_error(got, want) -> float:
        return max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(got, want))

    reference = run(autocast=False)
    folded = run(autocast=True)
    assert all(g.dtype == torch.float32 for g in folded[1:])
    monkeypatch.setattr(stems, "_is_plain_conv3x3", lambda layer: False)
    two_steps = run(autocast=True)
    assert worst_relative_error(folded, reference) < 0.15
    assert worst_relative_error(folded, reference) < 1.5 * worst_relative_error(two_steps, reference)
