"""Cuboid self/cross attention numerics: full-attention equivalence, fast = eager, padding,
global-vector information flow, every registered pattern."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

import earthcast.nn.cuboid.self_attention as self_attention_module
from earthcast.nn.cuboid import (
    CROSS_PATTERNS,
    SELF_PATTERNS,
    CuboidCrossAttention,
    CuboidCrossAttentionBlock,
    CuboidSelfAttention,
    CuboidSelfAttentionBlock,
    get_cross_pattern,
    get_self_pattern,
)


def _plain_attention(layer: CuboidSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Ordinary multi-head attention over all T·H·W tokens with the layer's own weights."""
    _, t, h, _, _ = x.shape
    y = layer.norm(rearrange(x, "b t h w c -> b (t h w) c"))
    q, k, v = rearrange(layer.qkv(y), "b n (three h d) -> three b h n d", three=3, h=layer.heads)
    probs = torch.softmax(q @ k.transpose(-1, -2) * layer.scale, dim=-1)
    out = rearrange(probs @ v, "b h n d -> b n (h d)")
    return rearrange(layer.proj(out), "b (t h w) c -> b t h w c", t=t, h=h)


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_one_cuboid_equals_full_attention(backend):
    x = torch.randn(2, 3, 4, 5, 16)
    layer = CuboidSelfAttention(16, 4, cuboid_size=(3, 4, 5), use_relative_pos=False, backend=backend).eval()
    torch.testing.assert_close(layer(x), _plain_attention(layer, x), rtol=1e-5, atol=1e-5)
    # the `full` pattern requests exactly that cuboid
    assert get_self_pattern("full", (3, 4, 5)) == [((3, 4, 5), ("l", "l", "l"), (0, 0, 0))]


def test_relative_bias_enters_logits():
    x = torch.randn(1, 2, 2, 2, 8)
    layer = CuboidSelfAttention(8, 2, cuboid_size=(2, 2, 2)).eval()
    with torch.no_grad():
        layer.rel_bias.table.zero_()
        reference = layer(x)
        layer.rel_bias.table.normal_()
        assert not torch.allclose(layer(x), reference)


SELF_CASES = [
    dict(cuboid_size=(2, 2, 2), shift_size=(1, 1, 1), strategy="lll", padding_type="ignore"),
    dict(cuboid_size=(2, 3, 2), shift_size=(0, 1, 1), strategy="ldl", padding_type="zeros"),
    dict(cuboid_size=(4, 1, 1), shift_size=(0, 0, 0), strategy="lll", padding_type="nearest"),
    dict(
        cuboid_size=(2, 2, 2),
        shift_size=(1, 1, 1),
        strategy="lll",
        padding_type="ignore",
        num_global_vectors=3,
    ),
    dict(
        cuboid_size=(3, 2, 4),
        shift_size=(1, 1, 0),
        strategy="dll",
        padding_type="ignore",
        num_global_vectors=2,
        separate_global_qkv=True,
        use_global_self_attn=True,
        global_dim_ratio=2,
    ),
    dict(cuboid_size=(1, 4, 1), padding_type="zeros", num_global_vectors=4, use_global_self_attn=True),
]


@pytest.mark.parametrize("case", SELF_CASES)
def test_sdpa_equals_eager_self(case):
    x = torch.randn(2, 5, 6, 7, 16, dtype=torch.float64)
    fast = CuboidSelfAttention(16, 4, backend="sdpa", **case).double().eval()
    slow = CuboidSelfAttention(16, 4, backend="eager", **case).double().eval()
    slow.load_state_dict(fast.state_dict())
    args = (x,)
    if case.get("num_global_vectors"):
        args += (
            torch.randn(2, case["num_global_vectors"], 16 * case.get("global_dim_ratio", 1), dtype=x.dtype),
        )
    out_fast, out_slow = fast(*args), slow(*args)
    if isinstance(out_fast, tuple):
        for a, b in zip(out_fast, out_slow):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    else:
        torch.testing.assert_close(out_fast, out_slow, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("global_vectors", [0, 2])
@pytest.mark.parametrize("shift", [(0, 0), (1, 1)])
def test_sdpa_equals_eager_cross(shift, global_vectors):
    x, mem = (
        torch.randn(2, 5, 6, 5, 16, dtype=torch.float64),
        torch.randn(2, 7, 6, 5, 16, dtype=torch.float64),
    )
    kw = dict(
        n_temporal=2,
        cuboid_hw=(4, 4),
        shift_hw=shift,
        strategy="dll",
        padding_type="ignore",
        max_temporal_relative=13,
        use_global_vector=bool(global_vectors),
        separate_global_qkv=True,
    )
    fast = CuboidCrossAttention(16, 4, backend="sdpa", **kw).double().eval()
    slow = CuboidCrossAttention(16, 4, backend="eager", **kw).double().eval()
    slow.load_state_dict(fast.state_dict())
    g = torch.randn(2, global_vectors, 16, dtype=x.dtype) if global_vectors else None
    torch.testing.assert_close(fast(x, mem, g), slow(x, mem, g), rtol=1e-10, atol=1e-10)


def test_cross_1x1_reads_every_memory_frame_at_the_same_pixel():
    x, mem = torch.randn(1, 3, 4, 4, 8), torch.randn(1, 5, 4, 4, 8, requires_grad=True)
    layer = CuboidCrossAttention(8, 2, cuboid_hw=(1, 1), strategy="lll", max_temporal_relative=9).eval()
    layer(x, mem)[0, :, 1, 2].sum().backward()
    touched = mem.grad.abs().sum(dim=(0, 4)) > 0  # (T_mem, H, W)
    assert touched[:, 1, 2].all() and touched.sum() == 5


def test_cross_memory_is_padded_on_the_left():
    # with 2 temporal groups and 5 memory frames, the last memory frame must land in a full group
    x, mem = torch.randn(1, 2, 2, 2, 8), torch.randn(1, 5, 2, 2, 8, requires_grad=True)
    layer = CuboidCrossAttention(
        8, 2, n_temporal=2, cuboid_hw=(2, 2), strategy="lll", padding_type="ignore", max_temporal_relative=8
    ).eval()
    layer(x, mem)[0, 1].sum().backward()  # second query frame = second temporal group
    touched = mem.grad.abs().sum(dim=(0, 2, 3, 4)) > 0
    assert touched.tolist() == [False, False, True, True, True]


def _pad_with(value):
    def fill(x, pads, padding_type, time_pad_left=False):
        pt, ph, pw = pads
        if pt == ph == pw == 0:
            return x
        return F.pad(x, (0, 0, 0, pw, 0, ph, 0, pt), value=value)

    return fill


@pytest.mark.parametrize("globals_", [0, 3])
def test_ignore_padding_is_independent_of_pad_content(globals_):
    x = torch.randn(2, 5, 5, 3, 16)
    layer = CuboidSelfAttention(
        16,
        4,
        cuboid_size=(2, 2, 2),
        shift_size=(1, 1, 1),
        padding_type="ignore",
        num_global_vectors=globals_,
        use_global_self_attn=True,
    ).eval()
    args = (x,) if not globals_ else (x, torch.randn(2, globals_, 16))
    with mock.patch.object(self_attention_module, "pad", _pad_with(0.0)):
        a = layer(*args)
    with mock.patch.object(self_attention_module, "pad", _pad_with(1e3)):
        b = layer(*args)
    for u, v in zip(a if globals_ else [a], b if globals_ else [b]):
        assert torch.isfinite(u).all()
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5)


def test_ignore_padding_fully_padded_rows_never_nan():
    # dilated T with 3 frames in cuboids of 4: most slots are padding; gradients must stay finite
    x = torch.randn(1, 3, 2, 2, 8, requires_grad=True)
    for backend in ("sdpa", "eager"):
        layer = CuboidSelfAttention(
            8, 2, cuboid_size=(2, 2, 2), strategy="ddd", padding_type="ignore", backend=backend
        )
        out = CuboidSelfAttentionBlock(8, 2, [((2, 2, 2), "ddd", (0, 0, 0))], padding_type="ignore")(x)
        out.sum().backward()
        assert torch.isfinite(layer(x)).all() and torch.isfinite(x.grad).all()


def test_zeros_padding_depends_on_pad_content():
    # sanity check of the test above: without masking, pads do matter
    x = torch.randn(1, 5, 2, 2, 8)
    layer = CuboidSelfAttention(8, 2, cuboid_size=(2, 2, 2), padding_type="zeros").eval()
    with mock.patch.object(self_attention_module, "pad", _pad_with(0.0)):
        a = layer(x)
    with mock.patch.object(self_attention_module, "pad", _pad_with(1e3)):
        b = layer(x)
    assert not torch.allclose(a, b)


def _residual(layer, x, g=None):
    if g is None:
        return x + layer(x)
    dx, dg = layer(x, g)
    return x + dx, g + dg


def test_global_vectors_are_the_only_path_between_cuboids():
    torch.manual_seed(1)
    x = torch.randn(1, 1, 4, 4, 8)
    x_pert = x.clone()
    x_pert[0, 0, 0, 0] += 3.0 * torch.randn(8)  # cuboid (0, 0) of a 2×2 split (not a constant: LN removes it)
    probe = (0, 0, 3, 3)  # a token of cuboid (1, 1)

    isolated = [CuboidSelfAttention(8, 2, cuboid_size=(1, 2, 2)).eval() for _ in range(2)]
    out = isolated[1](_residual(isolated[0], x))
    out_pert = isolated[1](_residual(isolated[0], x_pert))
    torch.testing.assert_close(out[probe], out_pert[probe], rtol=0, atol=0)

    kw = dict(cuboid_size=(1, 2, 2), num_global_vectors=2, use_global_self_attn=True)
    linked = [CuboidSelfAttention(8, 2, **kw).eval() for _ in range(2)]
    g = torch.randn(1, 2, 8)
    x1, g1 = _residual(linked[0], x, g)
    x1p, g1p = _residual(linked[0], x_pert, g)
    torch.testing.assert_close(x1[probe], x1p[probe], rtol=0, atol=0)  # one layer: globals not yet updated
    assert not torch.allclose(g1, g1p)  # the globals saw the perturbation
    out, _ = linked[1](x1, g1)
    out_pert, _ = linked[1](x1p, g1p)
    assert not torch.allclose(out[probe], out_pert[probe])  # second layer: it reaches the other cuboid
    out_fixed_g, _ = linked[1](x1p, g1)
    torch.testing.assert_close(out[probe], out_fixed_g[probe], rtol=0, atol=0)  # and only via the globals


@pytest.mark.parametrize("name", sorted(SELF_PATTERNS.names()))
def test_every_self_pattern_runs_forward_backward(name):
    shape = (4, 8, 8)
    layers = get_self_pattern(name, shape)
    block = CuboidSelfAttentionBlock(16, 2, layers, padding_type="ignore", num_global_vectors=1)
    x = torch.randn(1, *shape, 16, requires_grad=True)
    out, g = block(x, torch.randn(1, 1, 16))
    (out.square().mean() + g.square().mean()).backward()
    assert torch.isfinite(out).all()
    for pname, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", sorted(CROSS_PATTERNS.names()))
def test_every_cross_pattern_runs_forward_backward(name):
    mem_shape = (5, 8, 6)
    block = CuboidCrossAttentionBlock(
        16, 2, get_cross_pattern(name, mem_shape), padding_type="zeros", max_temporal_relative=10
    )
    out = block(torch.randn(1, 4, 8, 6, 16), torch.randn(1, *mem_shape, 16))
    out.square().mean().backward()
    for pname, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_unknown_pattern_lists_valid_names():
    with pytest.raises(ValueError, match="axial"):
        get_self_pattern("axail", (4, 4, 4))
    from earthcast.nn.cuboid.patterns import list_patterns

    with pytest.raises(ValueError, match="'self' or 'cross'"):
        list_patterns("selff")


def test_pattern_table_matches_spec():
    T, H, W = 6, 16, 16
    assert [c for c, _, _ in get_self_pattern("axial", (T, H, W))] == [(T, 1, 1), (1, H, 1), (1, 1, W)]
    assert [s for _, _, s in get_self_pattern("video_swin_2x8", (T, H, W))] == [(0, 0, 0), (1, 4, 4)]
    lg = get_self_pattern("spatial_lg_4", (T, H, W))
    assert [st for _, st, _ in lg] == [("l",) * 3, ("l",) * 3, ("d",) * 3]
    assert [c for c, _, _ in get_self_pattern("axial_space_dilate_4", (T, H, W))][1] == (1, 4, 1)
    heter = get_cross_pattern("cross_4x4_heter", (T, H, W))
    assert [s for _, s, _, _ in heter] == [(0, 0), (0, 0), (2, 2)]
    assert get_cross_pattern("cross_8x8", (T, 4, 6))[0][0] == (4, 4)  # K clamped to H, W


def test_shift_of_a_whole_axis_or_more_equals_its_remainder_in_the_layers():
    x = torch.randn(1, 2, 4, 6, 8)
    torch.manual_seed(0)
    small = CuboidSelfAttention(8, 2, (1, 2, 3), (0, 1, 1), padding_type="zeros").eval()
    big = CuboidSelfAttention(8, 2, (1, 2, 3), (0, 5, 13), padding_type="zeros").eval()
    big.load_state_dict(small.state_dict())
    torch.testing.assert_close(big(x), small(x))
    mem = torch.randn(1, 3, 4, 6, 8)
    small = CuboidCrossAttention(8, 2, 1, (2, 3), (1, 1), strategy="lll").eval()
    big = CuboidCrossAttention(8, 2, 1, (2, 3), (5, 7), strategy="lll").eval()
    big.load_state_dict(small.state_dict())
    torch.testing.assert_close(big(x, mem), small(x, mem))


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: CuboidSelfAttention(8, 2, (1, 2, 2), (0, -1, 0)), "shift_size must be 3 whole numbers ≥ 0"),
        (lambda: CuboidSelfAttention(8, 2, (0, 2, 2)), "cuboid_size must be 3 whole numbers ≥ 1"),
        (
            lambda: CuboidSelfAttention(8, 2, (1, 2, 2), num_global_vectors=-1),
            "num_global_vectors must be ≥ 0",
        ),
        (lambda: CuboidCrossAttention(8, 2, n_temporal=0), "n_temporal must be a whole number ≥ 1"),
        (lambda: CuboidCrossAttention(8, 2, cross_last_n_frames=0), "cross_last_n_frames must be ≥ 1"),
        (lambda: CuboidCrossAttention(8, 2, cuboid_hw=(2, 2, 2)), "cuboid_hw must be 2 whole numbers"),
        (lambda: CuboidCrossAttention(8, 2, shift_hw=(-1, 0)), "shift_hw must be 2 whole numbers ≥ 0"),
        (lambda: get_self_pattern(None, (4, 4, 4)), "named by a string"),
    ],
)
def test_bad_layer_arguments_name_the_fix(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_layer_inputs_name_the_fix():
    plain = CuboidSelfAttention(8, 2, (1, 2, 2))
    with_globals = CuboidSelfAttention(8, 2, (1, 2, 2), num_global_vectors=2)
    x, g = torch.randn(1, 2, 4, 4, 8), torch.randn(1, 2, 8)
    with pytest.raises(ValueError, match=r"must be \(B, T, H, W, C\), got shape \(2, 4, 4, 8\)"):
        plain(x[0])
    with pytest.raises(ValueError, match="built for dim=8; channels go last"):
        plain(x.movedim(-1, 1)[:, :, :2, :4, :4])
    with pytest.raises(ValueError, match="pass the global vectors"):
        with_globals(x)
    with pytest.raises(ValueError, match="num_global_vectors=0"):
        plain(x, g)
    with pytest.raises(ValueError, match=r"must be \(B, P=2, Cg\)"):
        with_globals(x, g[:, :1])
    cross = CuboidCrossAttention(8, 2, cuboid_hw=(2, 2))
    with pytest.raises(ValueError, match="memory must be"):
        cross(x, x[0])
