"""Decomposition, masks, relative bias and the allowed_attention view, against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from earthcast.nn.cuboid import allowed_attention
from earthcast.nn.cuboid.decomposition import clamp_cuboid, decompose, merge, pad, pad_amounts, roll, unpad
from earthcast.nn.cuboid.relative_bias import relative_index

SHAPES = [(4, 6, 8), (5, 7, 9), (3, 5, 4)]
CUBOIDS = [(2, 3, 4), (2, 2, 2), (4, 1, 3)]
STRATEGIES = [("l", "l", "l"), ("d", "d", "d"), ("l", "d", "l"), ("d", "l", "d")]
SHIFTS = [(0, 0, 0), (1, 1, 1), (1, 0, 2)]


@pytest.mark.parametrize("padding", ["ignore", "zeros", "nearest"])
@pytest.mark.parametrize("shape", SHAPES)
def test_decompose_merge_is_identity(shape, padding):
    x = torch.randn(2, *shape, 3)
    for cuboid, strategy, shift in itertools.product(CUBOIDS, STRATEGIES, SHIFTS):
        cub, sh = clamp_cuboid(shape, cuboid, shift, strategy)
        pads = pad_amounts(shape, cub)
        grid = tuple(s + p for s, p in zip(shape, pads))
        tokens = decompose(roll(pad(x, pads, padding), sh), cub, strategy)
        assert tokens.shape == (2, np.prod(grid) // np.prod(cub), np.prod(cub), 3)
        back = unpad(roll(merge(tokens, cub, strategy, grid), sh, inverse=True), pads, padding)
        torch.testing.assert_close(back, x, rtol=0, atol=0)


def test_dilated_cuboid_contains_strided_indices():
    t, h, w = 8, 6, 4
    idx = torch.arange(t * h * w).reshape(1, t, h, w, 1)
    tokens = decompose(idx, (2, 3, 2), ("d", "d", "d"))[0, ..., 0]  # (n, v)
    nt, nh, nw = 4, 2, 2
    for n_t, n_h, n_w in itertools.product(range(nt), range(nh), range(nw)):
        n = (n_t * nh + n_h) * nw + n_w
        expected = {
            ((n_t + i * nt) * h + (n_h + j * nh)) * w + (n_w + k * nw)
            for i in range(2)
            for j in range(3)
            for k in range(2)
        }
        assert set(tokens[n].tolist()) == expected


def test_clamping_rules():
    assert clamp_cuboid((3, 8, 8), (5, 4, 4), (1, 2, 2), "lll") == ((3, 4, 4), (0, 2, 2))
    assert clamp_cuboid((8, 8, 8), (4, 4, 4), (2, 2, 2), "ldl") == ((4, 4, 4), (2, 0, 2))
    assert clamp_cuboid((8, 4, 8), (4, 4, 4), (2, 2, 2), "lll") == ((4, 4, 4), (2, 0, 2))


def _brute_force_allowed(shape, cuboid, shift, strategy):
    """Pairs in the same cuboid of the rolled grid, on the same side of every wrap-around seam."""
    positions = list(itertools.product(*(range(s) for s in shape)))
    n = len(positions)
    out = np.zeros((n, n), dtype=bool)

    def cuboid_of(p):
        ids = []
        for x, s, b, L, strat in zip(p, shift, cuboid, shape, strategy):
            r = (x - s) % L  # rolled coordinate
            ids.append(r // b if strat == "l" else r % (L // b))
        return tuple(ids)

    for a, pa in enumerate(positions):
        for c, pc in enumerate(positions):
            same = cuboid_of(pa) == cuboid_of(pc)
            no_seam = all((xa < s) == (xc < s) for xa, xc, s in zip(pa, pc, shift) if s > 0)
            out[a, c] = same and no_seam
    return out


@pytest.mark.parametrize(
    "shape,cuboid,shift,strategy",
    [
        ((4, 4, 6), (2, 2, 3), (1, 1, 1), "lll"),
        ((4, 6, 6), (2, 3, 3), (0, 1, 2), "lll"),
        ((6, 4, 4), (3, 2, 2), (2, 0, 0), "lll"),
        ((4, 4, 4), (2, 2, 2), (1, 0, 0), "ldd"),
        ((4, 4, 4), (2, 2, 2), (0, 0, 0), "ddd"),
    ],
)
def test_shift_mask_forbids_exactly_wraparound_pairs(shape, cuboid, shift, strategy):
    got = allowed_attention(shape, cuboid, strategy, shift, "ignore")
    want = _brute_force_allowed(shape, cuboid, shift, strategy)
    np.testing.assert_array_equal(got, want)


def test_zero_shift_mask_is_plain_blocks():
    got = allowed_attention((4, 4, 4), (2, 2, 2), "lll", (0, 0, 0))
    assert got.sum() == 64 * 8  # every token sees the 8 tokens of its cuboid
    assert allowed_attention((3, 4, 5), (3, 4, 5)).all()  # one cuboid: full attention


def test_allowed_attention_axial_layers():
    t, h, w = 3, 4, 5
    flat = lambda a, b, c: (a * h + b) * w + c  # noqa: E731
    time_layer = allowed_attention((t, h, w), (t, 1, 1))
    assert time_layer[flat(0, 1, 2), flat(2, 1, 2)] and not time_layer[flat(0, 1, 2), flat(0, 2, 2)]
    assert time_layer.sum() == t * h * w * t


def test_ignore_padding_hides_pads_zeros_padding_keeps_real_pairs():
    # 5 frames in cuboids of 2: the third cuboid holds frame 4 and a pad
    ignore = allowed_attention((5, 1, 1), (2, 1, 1), "lll", (0, 0, 0), "ignore")
    zeros = allowed_attention((5, 1, 1), (2, 1, 1), "lll", (0, 0, 0), "zeros")
    np.testing.assert_array_equal(ignore, zeros)  # pads are not positions
    assert ignore[4, 4] and not ignore[4, 3]


def test_nearest_padding_reads_copies():
    # T=3 resized to 4 with nearest: slots hold frames 0,0,1,2; cuboids of 2 are {0,0} and {1,2}
    got = allowed_attention((3, 1, 1), (2, 1, 1), "lll", (0, 0, 0), "nearest")
    assert got[1, 2] and got[2, 1] and not got[0, 1]


def test_relative_index_mirrors_offsets():
    idx = relative_index((2, 3, 3), (2, 3, 3), (2, 3, 3))
    rows = (2 * 2 - 1) * (2 * 3 - 1) * (2 * 3 - 1)
    assert idx.min() >= 0 and idx.max() == rows - 1
    centre = rows // 2  # zero offset
    assert (idx.diagonal() == centre).all()
    # (a, b) and (b, a) sit symmetrically around the centre row
    torch.testing.assert_close(idx + idx.T, torch.full_like(idx, 2 * centre))


@pytest.mark.parametrize(
    "shape,cuboid,big,small",
    [
        ((4, 4, 6), (2, 2, 3), (5, 9, 7), (1, 1, 1)),  # divisible: remainder mod the axis
        ((5, 4, 4), (2, 2, 2), (7, 0, 4), (1, 0, 0)),  # T padded 5 → 6: remainder mod 6
    ],
)
def test_shift_of_a_whole_axis_or_more_is_its_remainder(shape, cuboid, big, small):
    np.testing.assert_array_equal(
        allowed_attention(shape, cuboid, "lll", big, "ignore"),
        allowed_attention(shape, cuboid, "lll", small, "ignore"),
    )


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(shift_size=(0, 0, -1)), "shift_size must be 3 whole numbers ≥ 0"),
        (dict(cuboid_size=(0, 2, 2)), "cuboid_size must be 3 whole numbers ≥ 1"),
        (dict(cuboid_size=(2, 2)), "one per axis"),
        (dict(cuboid_size=(1, 2.5, 2)), "whole numbers"),
        (dict(padding_type="reflect"), "padding_type must be one of"),
        (dict(padding_type="Zeros"), "padding_type must be one of"),
    ],
)
def test_allowed_attention_rejects_bad_layouts(kwargs, message):
    args = dict(
        shape=(2, 4, 4), cuboid_size=(1, 2, 2), strategy="l", shift_size=(0, 1, 1), padding_type="ignore"
    )
    with pytest.raises(ValueError, match=message):
        allowed_attention(**{**args, **kwargs})
