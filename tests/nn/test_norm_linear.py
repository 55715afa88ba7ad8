"""``norm_linear`` (LayerNorm → Linear keeping only its input) and the attention paths that
project before padding compute what the plain compositions compute."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from earthcast.nn.cuboid.cross_attention import CuboidCrossAttention
from earthcast.nn.cuboid.self_attention import CuboidSelfAttention
from earthcast.nn.norm_linear import norm_linear
from earthcast.nn.resample import PatchMerging3D


def _out_and_grads(module: nn.Module, inputs, fn):
    module.zero_grad()
    inputs = [t.detach().requires_grad_() for t in inputs]
    out = fn(*inputs)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    (out * weights).sum().backward()
    return [out] + [t.grad for t in inputs] + [p.grad.clone() for p in module.parameters()]


def _assert_all_close(got, want, atol=1e-10):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-9)


@pytest.mark.parametrize("bias", [True, False])
def test_norm_linear_equals_plain_composition_with_gradients(bias):
    pair = nn.Sequential(nn.LayerNorm(12), nn.Linear(12, 7, bias=bias)).double()
    with torch.no_grad():  # non-trivial affine parameters
        pair[0].weight.uniform_(0.5, 1.5)
        pair[0].bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, 5, 12, dtype=torch.float64).transpose(1, 2)  # non-contiguous input
    fused = _out_and_grads(pair, [x], lambda t: norm_linear(t, pair[0], pair[1]))
    plain = _out_and_grads(pair, [x], lambda t: pair[1](pair[0](t)))
    assert fused[0].shape == (2, 5, 3, 7)
    _assert_all_close(fused, plain)


def test_norm_linear_passes_gradcheck():
    norm, linear = nn.LayerNorm(6).double(), nn.Linear(6, 4).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: norm_linear(t, norm, linear), (x,))


def test_norm_linear_keeps_only_the_input_for_backward():
    norm, linear = nn.LayerNorm(16), nn.Linear(16, 48, bias=False)
    x = torch.randn(64, 16, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        norm_linear(x, norm, linear)
    big = [t for t in saved if t.numel() >= x.numel()]
    # the input only: the normalised copy (same size) is recomputed in backward
    assert len(big) == 1 and big[0].data_ptr() == x.data_ptr()


def test_norm_linear_falls_back_to_the_plain_pair_for_other_norms():
    from earthcast.nn.norm import RMSNorm

    norm, linear = RMSNorm(8), nn.Linear(8, 3)
    x = torch.randn(4, 8, requires_grad=True)
    torch.testing.assert_close(norm_linear(x, norm, linear), linear(norm(x)))


def test_patch_merging_gradients_equal_plain_layers():
    merge = PatchMerging3D(4, 8, (1, 2, 2), padding_type="nearest").double()
    x = torch.randn(1, 2, 5, 6, 4, dtype=torch.float64)

    def plain(t):
        from einops import rearrange

        from earthcast.nn.cuboid.decomposition import pad, pad_amounts

        t = pad(t, pad_amounts(t.shape[1:4], (1, 2, 2)), "nearest")
        t = rearrange(t, "b t (h dh) (w dw) c -> b t h w (dh dw c)", dh=2, dw=2)
        return merge.reduction(merge.norm(t))

    _assert_all_close(_out_and_grads(merge, [x], merge), _out_and_grads(merge, [x], plain))


def _project_after_padding(monkeypatch, cls):
    monkeypatch.setattr(cls, "_project_before_padding", lambda self, pads: False)


@pytest.mark.parametrize("padding_type", ["zeros", "nearest", "ignore"])
@pytest.mark.parametrize("shift", [(0, 0, 0), (1, 2, 1)])
def test_self_attention_projecting_before_padding_equals_the_padded_projection(
    monkeypatch, padding_type, shift
):
    torch.manual_seed(0)
    layer = CuboidSelfAttention(8, 2, (2, 3, 2), shift, padding_type=padding_type).double().train()
    layer.attn_drop = 0.0
    x = torch.randn(2, 3, 5, 5, 8, dtype=torch.float64)  # pads every axis
    assert layer._project_before_padding((1, 1, 1))
    fused = _out_and_grads(layer, [x], layer)
    _project_after_padding(monkeypatch, CuboidSelfAttention)
    plain = _out_and_grads(layer, [x], layer)
    _assert_all_close(fused, plain)


def test_zero_padding_with_a_qkv_bias_projects_the_padded_grid():
    layer = CuboidSelfAttention(8, 2, (2, 3, 2), padding_type="zeros", qkv_bias=True)
    # W·0 + b ≠ 0: projecting before zero padding would change the padded keys
    assert not layer._project_before_padding((1, 0, 0))
    assert layer._project_before_padding((0, 0, 0))


@pytest.mark.parametrize("padding_type", ["zeros", "ignore"])
def test_cross_attention_projecting_before_padding_equals_the_padded_projection(monkeypatch, padding_type):
    torch.manual_seed(0)
    layer = CuboidCrossAttention(8, 2, 1, (3, 2), (1, 1), padding_type=padding_type).double().train()
    layer.attn_drop = 0.0
    x = torch.randn(1, 3, 5, 5, 8, dtype=torch.float64)
    mem = torch.randn(1, 4, 5, 5, 8, dtype=torch.float64)
    fused = _out_and_grads(layer, [x, mem], layer)
    _project_after_padding(monkeypatch, CuboidCrossAttention)
    plain = _out_and_grads(layer, [x, mem], layer)
    _assert_all_close(fused, plain)
