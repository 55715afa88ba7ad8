"""Memory-lean fused operations compute exactly what their plain compositions compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from earthcast.nn.attention import _DropoutMatmul
from earthcast.nn.dropout import CHUNK, Dropout, DropoutMask, apply_dropout_, drop_mask, quantised
from earthcast.nn.mlp import PositionwiseFFN, _FusedPreNormMLP
from earthcast.nn.resample import Upsample2D, _NearestUpConv, nearest_upsample_conv3x3


def _plain_ffn(ffn: PositionwiseFFN, x, drop1=None, drop2=None, scale=1.0):
    h = ffn.act(ffn.fc1(ffn.norm(x)))
    if drop1 is not None:
        h = h.masked_fill(drop1, 0.0) * scale
    y = ffn.fc2(h)
    if drop2 is not None:
        y = y.masked_fill(drop2, 0.0) * scale
    return x + y


def fused_ffn(ffn: PositionwiseFFN, x, p: float, seed: int, keep_hidden: bool = True):
    """``_FusedPreNormMLP`` (GELU) on ``x (N, C)`` with ``ffn``'s parameters."""
    return _FusedPreNormMLP.apply(
        x, ffn.norm.weight, ffn.norm.bias, ffn.fc1.weight, ffn.fc1.bias, ffn.fc2.weight, ffn.fc2.bias,
        "gelu", p, seed, ffn.norm.eps, keep_hidden,
    )  # fmt: skip


def _grads(module, x, fn):
    module.zero_grad()
    x = x.detach().requires_grad_()
    out = fn(x)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return [out, x.grad] + [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("gated", [False, True])
def test_ffn_recomputing_its_hidden_layer_keeps_only_its_input(gated):
    """``recompute_hidden`` (checkpoint_level ≥ 1): same outputs and gradients, and nothing of the
    hidden width (4·C per row) is kept for backward."""
    torch.manual_seed(0)
    lean = PositionwiseFFN(8, 32, dropout=0.0, activation="gelu", gated=gated, recompute_hidden=True).double()
    plain = PositionwiseFFN(8, 32, dropout=0.0, activation="gelu", gated=gated).double()
    plain.load_state_dict(lean.state_dict())
    x = torch.randn(6, 5, 8, dtype=torch.float64)
    for a, b in zip(_grads(lean, x, lean), _grads(plain, x, plain)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)

    def saved_numels(module) -> list[int]:
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            module(x.clone().requires_grad_())
        return sizes

    hidden = 6 * 5 * 32
    assert hidden not in saved_numels(lean)
    assert hidden in saved_numels(plain)


@pytest.mark.parametrize("act", ["gelu", "leaky", "relu", "silu", "identity"])
def test_inference_ffn_in_place_path_equals_plain(act):
    ffn = PositionwiseFFN(8, 32, dropout=0.3, activation=act).double().eval()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    x_before = x.clone()
    with torch.no_grad():
        got = ffn(x)
        want = _plain_ffn(ffn, x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.equal(x, x_before)  # the residual input is left alone


@pytest.mark.parametrize("act", ["gelu", "leaky", "relu", "silu"])
def test_fused_ffn_equals_plain_without_dropout(act):
    ffn = PositionwiseFFN(8, 32, dropout=0.0, activation=act).double().train()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    assert ffn.fusable
    fused = _grads(ffn, x, ffn)
    plain = _grads(ffn, x, lambda t: _plain_ffn(ffn, t))
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("keep_hidden", [True, False])
def test_fused_ffn_equals_plain_with_the_same_dropout_masks(keep_hidden):
    ffn = PositionwiseFFN(8, 32, dropout=0.3, activation="gelu").double()
    x = torch.randn(20, 8, dtype=torch.float64)
    seed, p = 1234, 0.3
    drop1, drop2 = drop_mask((20, 32), p, seed, x.device), drop_mask((20, 8), p, seed + 1, x.device)
    scale = quantised(p)[1]

    def fused(t):
        return fused_ffn(ffn, t, p, seed, keep_hidden)

    for a, b in zip(_grads(ffn, x, fused), _grads(ffn, x, lambda t: _plain_ffn(ffn, t, drop1, drop2, scale))):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_dropout_is_unbiased_reproducible_and_consistent_in_backward():
    x = torch.ones(200_000, requires_grad=True)
    layer = Dropout(0.1)
    torch.manual_seed(7)
    y = layer(x)
    assert abs((y == 0).float().mean().item() - 0.1) < 0.005
    assert abs(y.mean().item() - 1.0) < 0.01  # rescaled: unbiased
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0)  # backward applies exactly the forward mask
    torch.manual_seed(7)
    assert torch.equal(layer(x), y)
    assert torch.equal(layer.eval()(x), x)


def test_chunked_in_place_dropout_matches_the_mask_across_chunks_and_layouts():
    """apply_dropout_ (chunked float multiplier) drops exactly drop_mask's elements, also past a
    chunk boundary, on non-contiguous tensors (masked fallback), and for tensors sharing a mask."""
    shape = (3, CHUNK // 2 + 7)  # 1.5 chunks + a ragged tail
    x = torch.randn(shape, dtype=torch.float64)
    drop = drop_mask(shape, 0.25, 11, x.device)
    expected = x.masked_fill(drop, 0.0) * 1.5
    torch.testing.assert_close(apply_dropout_(x.clone(), 0.25, 11, 1.5), expected, rtol=0, atol=0)
    strided = x.t().contiguous().t()  # same values, column-major
    torch.testing.assert_close(apply_dropout_(strided, 0.25, 11, 1.5), expected, rtol=0, atol=0)
    a, b = torch.ones(shape), torch.full(shape, 2.0)
    apply_dropout_((a, b), 0.25, 11, (1.0, 3.0))
    assert torch.equal(a == 0, drop) and torch.equal(b == 0, drop)
    assert torch.all(b[~drop] == 6.0)
    assert abs(drop.float().mean().item() - 0.25) < 0.002


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_with_folded_rescale_is_bitwise_the_separate_multiply(dtype):
    """The keep bytes are widened into a scratch buffer with the float32 rescale folded in:
    bit for bit ``masked_fill`` then ``* scale``, for an inexact scale, several scales sharing
    one mask, and bf16 (whose rescale stays a separate multiply)."""
    p = 0.1
    scale = quantised(p)[1]  # 1/(1 − p): not exactly representable
    shape = (2, CHUNK + 5)
    x, y = torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)
    drop = drop_mask(shape, p, 3, x.device)
    got_x, got_y = apply_dropout_((x.clone(), y.clone()), p, 3, (scale, scale * scale))
    assert torch.equal(got_x, x.masked_fill(drop, 0.0).mul_(scale))
    assert torch.equal(got_y, y.masked_fill(drop, 0.0).mul_(scale * scale))


def test_dropout_mask_keeps_its_draw_packed_and_reapplies_it_exactly():
    """The first application draws the seed's stream and keeps one bit per element; later ones
    (backward) unpack those bits: the same mask as regenerating it from the seed, on any layout."""
    shape = (2, CHUNK // 2 + 13)  # past a chunk boundary, ragged tail
    mask = DropoutMask(0.3, 21)
    first = mask.apply_(torch.ones(shape), 2.0)
    assert mask.packed is not None and mask.packed.nbytes == (first.numel() + 7) // 8
    drop = drop_mask(shape, 0.3, 21, first.device)
    assert torch.equal(first == 0, drop) and torch.all(first[~drop] == 2.0)
    packed = mask.packed.copy()
    again = mask.apply_(torch.full(shape, 3.0, dtype=torch.float64))
    assert np.array_equal(mask.packed, packed)  # reused, not redrawn
    assert torch.equal(again == 0, drop) and torch.all(again[~drop] == 3.0)
    strided = mask.apply_(torch.ones(shape).t().contiguous().t())  # regenerated from the seed
    assert torch.equal(strided == 0, drop)


def test_dropout_matmul_gradcheck():
    probs = torch.softmax(torch.randn(2, 3, 4, 5, dtype=torch.float64), -1).requires_grad_()
    v = torch.randn(2, 1, 5, 3, dtype=torch.float64, requires_grad=True)  # broadcast over heads
    assert torch.autograd.gradcheck(lambda a, b: _DropoutMatmul.apply(a, b, 0.25, 99), (probs, v))


@pytest.mark.parametrize(
    ("small", "size"),
    [
        ((5, 7), (10, 14)),
        ((4, 3), (12, 9)),
        ((3, 5), (6, 15)),
        ((1, 1), (4, 2)),
        ((5, 7), (11, 14)),
        ((5, 7), (5, 7)),
    ],
    ids=["x2", "x3", "x2-x3", "x4-x2-one-pixel", "not-whole", "same-size"],
)
def test_upsample_equals_interpolate_then_conv(small, size):
    """Sub-pixel form (whole factors) and the fallback both equal resize + 3×3 conv, grads too."""
    up = Upsample2D(6, 4, size).double()
    x = torch.randn(2, 3, *small, 6, dtype=torch.float64)

    def plain(t):
        frames = t.permute(0, 1, 4, 2, 3).reshape(-1, 6, *small)
        out = up.conv(F.interpolate(frames, size=size, mode="nearest"))
        return out.reshape(2, 3, 4, *size).permute(0, 1, 3, 4, 2)

    for a, b in zip(_grads(up, x, up), _grads(up, x, plain)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(up(x), plain(x), rtol=1e-10, atol=1e-10)


def test_upsample_kernels_gradcheck():
    w = torch.randn(4, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    frames = torch.randn(2, 6, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: _NearestUpConv.apply(a, b, c, (7, 8)), (frames, w, bias))
    assert torch.autograd.gradcheck(
        lambda a, b, c: nearest_upsample_conv3x3(a, b, c, (3, 2)), (frames, w, bias)
    )


def test_upsample_sub_pixel_form_needs_fewer_flops():
    from torch.utils.flop_counter import FlopCounterMode

    up = Upsample2D(16, 16, (48, 48))
    x = torch.randn(1, 2, 16, 16, 16)

    def count(fn):  # convolution FLOPs only (folding the 3×3 weights costs a few more)
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_flop_counts()["Global"][torch.ops.aten.convolution]

    frames = x.permute(0, 1, 4, 2, 3).reshape(-1, 16, 16, 16)
    direct = count(lambda: up.conv(F.interpolate(frames, size=(48, 48), mode="nearest")))
    folded = count(lambda: up(x))
    # 4·s² taps on (h+1)(w+1) source pixels instead of 9·s² on h·w
    assert folded / direct == pytest.approx(4 / 9 * (17 / 16) ** 2, rel=1e-3)


@pytest.mark.parametrize(
    "preset", ["earthformer_sevirlr_tiny", "earthformer_nbody_tiny", "earthformer_enso_tiny"]
)
def test_bf16_autocast_forward_backward_matches_fp32(preset):
    """Under autocast the fused functions step aside (their backward would meet bf16 activations
    next to fp32 weights); gradients stay finite and point where the fp32 ones do."""
    from earthcast.models.earthformer import Earthformer, get_preset

    torch.manual_seed(0)
    cfg = get_preset(preset)
    model = Earthformer(cfg).eval()  # no dropout: both runs compute the same function
    x = torch.randn(2, *cfg.input_shape)

    def gradients(autocast: bool) -> torch.Tensor:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(x)
        assert out.dtype == (torch.bfloat16 if autocast else torch.float32)
        out.float().square().mean().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    reference, mixed = gradients(False), gradients(True)
    assert torch.isfinite(mixed).all()
    assert F.cosine_similarity(reference, mixed, dim=0) > 0.98


@pytest.mark.parametrize("num_convs", [1, 3])
def test_conv_stack_lean_backward_equals_plain_sequential(num_convs):
    """ConvStack recomputes GroupNorm + LeakyReLU in backward: same outputs and gradients as the
    plain Sequential, and one saved full-size tensor per conv instead of two."""
    from earthcast.nn.stems import conv_stack

    torch.manual_seed(0)
    stack = conv_stack(3, 8, num_convs, 2, "leaky").double()
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    for a, b in zip(
        _grads(stack, x, stack), _grads(stack, x, lambda t: torch.nn.Sequential.forward(stack, t))
    ):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(stack, (x[:1, :, :5, :4].clone().requires_grad_(),))

    def saved_full_size(fn) -> int:
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            fn(x.clone().requires_grad_())
        return sum(1 for n in sizes if n == 2 * 8 * 9 * 7)

    lean, plain = saved_full_size(stack), saved_full_size(lambda t: torch.nn.Sequential.forward(stack, t))
    assert lean == num_convs  # each GroupNorm input, nothing else
    assert plain >= 2 * num_convs
