"""Moving MNIST (SPEC 3.4): bouncing digits, a seeded generator and two readable layouts.

Axis letters: ``n`` sequence, ``t`` frame, ``k`` digit, ``h w`` pixels.

Generator (Srivastava et al. 2015 style): ``num_digits`` full 28×28 MNIST digits on a
``size``×``size`` frame. Each digit starts at a top-left offset ``U[0, size-28]`` per axis and
moves with a uniform random direction and a speed ``U[speed_range]`` px/frame (the original
fixes the speed; the range here makes the task slightly richer and degenerates to it when both
ends are equal). Frame ``t+1 = t + v``; a digit that would leave the frame is clamped onto the
edge and that velocity component flips, so digits are always fully visible. Digits are
composited with pixel-wise max.

Layouts read by ``MovingMNISTDataset``:

* ``moving_mnist_{split}.h5`` files from ``write_moving_mnist`` (same style as N-body:
  ``frames`` uint8 ``(N, T, H, W)`` + ``positions`` / ``velocities`` ``(N, T, K, 2)`` + attrs).
* The standard ``mnist_test_seq.npy`` (uint8 ``(T=20, N=10000, 64, 64)``, time first) with the
  reference split: the last ``n_test = 1000`` sequences are test; the first ``N - n_test`` are
  split by a ``RandomState(123)`` permutation into val (the first ``ceil(0.1 · (N - n_test))``
  permuted indices) and train (the rest). This is exactly scikit-learn's
  ``train_test_split(test_size=0.1, random_state=123)``, giving 8,100 / 900 / 1,000.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from earthcast.data.mnist_digits import atomic_output, composite_max, load_digits

Rescale = Literal["01", "255"]

FORMAT = "earthcast-moving-mnist-v1"
SPLITS = ("train", "val", "test")
STANDARD_FILE = "mnist_test_seq.npy"
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class MovingMNISTConfig:
    """Generator parameters.

    Attributes:
        size: frame side (pixels).
        num_digits: digits per sequence.
        seq_len: frames per sequence.
        speed_range: ``(low, high)`` speed in px/frame.
    """

    size: int = 64
    num_digits: int = 2
    seq_len: int = 20
    speed_range: tuple[float, float] = (2.0, 5.0)


def bounce_trajectories(
    top_left: np.ndarray, velocity: np.ndarray, seq_len: int, limit: float
) -> tuple[np.ndarray, np.ndarray]:
    """Straight-line motion with elastic bounces inside ``[0, limit]`` per axis.

    Args:
        top_left, velocity: ``(N, K, 2)`` start offsets and px/frame velocities.

    Returns:
        ``(positions, velocities)``, float64 ``(N, seq_len, K, 2)``; frame 0 is the start.
    """
    x = np.asarray(top_left, dtype=np.float64).copy()
    v = np.asarray(velocity, dtype=np.float64).copy()
    xs, vs = [x.copy()], [v.copy()]
    for _ in range(seq_len - 1):
        x = x + v
        outside = (x < 0) | (x > limit)
        v = np.where(outside, -v, v)
        x = np.clip(x, 0.0, limit)
        xs.append(x.copy())
        vs.append(v.copy())
    return np.stack(xs, axis=1), np.stack(vs, axis=1)


def generate_moving_mnist(
    n: int,
    seed: Any = 0,
    config: MovingMNISTConfig | None = None,
    digits: tuple[np.ndarray, np.ndarray, str] | None = None,
    digit_split: Literal["train", "test"] = "train",
) -> dict[str, Any]:
    """Generate ``n`` Moving MNIST sequences; equal seeds give identical bytes.

    Returns:
        dict with ``frames`` uint8 ``(N, T, size, size)``, ``positions`` / ``velocities``
        float64 ``(N, T, K, 2)`` (top-left, row/col), ``digit_indices`` / ``digit_labels``
        int64 ``(N, K)`` and ``digit_source`` (str).
    """
    config = config or MovingMNISTConfig()
    images, labels, source = digits or load_digits(digit_split)
    images = np.asarray(images, dtype=np.uint8)
    limit = config.size - images.shape[-1]
    if limit < 0:
        raise ValueError(f"frame size {config.size} is smaller than the {images.shape[-1]}-px digits")
    rng = np.random.default_rng(seed)
    k = config.num_digits
    idx = rng.integers(0, len(images), size=(n, k))
    top_left = rng.uniform(0.0, limit, size=(n, k, 2))
    angle = rng.uniform(0.0, 2.0 * np.pi, size=(n, k))
    speed = rng.uniform(*config.speed_range, size=(n, k))
    velocity = np.stack([speed * np.sin(angle), speed * np.cos(angle)], axis=-1)
    positions, velocities = bounce_trajectories(top_left, velocity, config.seq_len, limit)
    frames = composite_max(images[idx], np.rint(positions).astype(np.int64), (config.size,) * 2)
    return {
        "frames": frames,
        "positions": positions,
        "velocities": velocities,
        "digit_indices": idx,
        "digit_labels": np.asarray(labels, dtype=np.int64)[idx],
        "digit_source": source,
    }


def write_moving_mnist(
    out_dir: str | os.PathLike,
    n_train: int = 8100,
    n_val: int = 900,
    n_test: int = 1000,
    seed: int = 0,
    config: MovingMNISTConfig | None = None,
    digit_split: Literal["train", "test"] = "train",
    chunk_size: int = 512,
    progress: bool = True,
) -> dict[str, Path]:
    """Write ``moving_mnist_{train,val,test}.h5`` into ``out_dir`` atomically (temp + rename).

    Chunk ``i`` of split ``s`` is ``generate_moving_mnist(.., seed=[seed, code(s), i])``;
    attributes record ``format``, ``split``, ``seed``, ``digit_source``, ``digit_split`` and
    ``config`` (JSON). Splits with ``n = 0`` are skipped.
    """
    import h5py
    from tqdm.auto import tqdm

    config = config or MovingMNISTConfig()
    digits = load_digits(digit_split)
    out_dir = Path(out_dir)
    written = {}
    t, k, s = config.seq_len, config.num_digits, config.size
    for split, n in zip(SPLITS, (n_train, n_val, n_test)):
        if n <= 0:
            continue
        path = out_dir / f"moving_mnist_{split}.h5"
        with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
            f.attrs.update(format=FORMAT, split=split, seed=seed, digit_source=digits[2])
            f.attrs.update(digit_split=digit_split, config=json.dumps(dataclasses.asdict(config)))
            frames = f.create_dataset(
                "frames", (n, t, s, s), np.uint8, chunks=(1, t, s, s), compression="lzf"
            )
            positions = f.create_dataset("positions", (n, t, k, 2), np.float32)
            velocities = f.create_dataset("velocities", (n, t, k, 2), np.float32)
            labels = f.create_dataset("digit_labels", (n, k), np.int64)
            with tqdm(total=n, desc=f"moving-mnist {split}", unit="seq", disable=not progress) as bar:
                for i, start in enumerate(range(0, n, chunk_size)):
                    stop = min(start + chunk_size, n)
                    chunk_seed = [seed, _SPLIT_CODE[split], i]
                    out = generate_moving_mnist(stop - start, chunk_seed, config, digits)
                    frames[start:stop] = out["frames"]
                    positions[start:stop] = out["positions"]
                    velocities[start:stop] = out["velocities"]
                    labels[start:stop] = out["digit_labels"]
                    bar.update(stop - start)
        written[split] = path
    return written


def reference_split_indices(
    n_total: int,
    split: Literal["train", "val", "test"],
    n_test: int = 1000,
    val_fraction: float = 0.1,
    seed: int = 123,
) -> np.ndarray:
    """Sequence indices of one split of the standard file (module docstring).

    For 1,100 sequences: test = 1,000 (indices 1000..1099), val = 10, train = 90.
    """
    n_rest = n_total - n_test
    if split == "test":
        if n_rest < 0:
            raise ValueError(f"{n_total} sequences are fewer than the {n_test} test sequences")
        return np.arange(n_rest, n_total)
    if n_rest < 2:
        raise ValueError(f"{n_total} sequences leave nothing for train/val after the last {n_test} for test")
    n_val = math.ceil(val_fraction * n_rest)
    # RandomState (not Generator) on purpose: it reproduces the reference's sklearn split.
    perm = np.random.RandomState(seed).permutation(n_rest)
    return perm[:n_val] if split == "val" else perm[n_val:]


class MovingMNISTDataset(Dataset):
    """Map-style Moving MNIST dataset.

    Args:
        path: a directory holding ``moving_mnist_{split}.h5`` or ``mnist_test_seq.npy``, or the
            path of one such file (a ``.npy`` path is read in the standard time-first layout).
        split: ``"train"``, ``"val"`` or ``"test"``.
        in_len, out_len: context and forecast lengths (reference: 10 → 10).
        rescale: ``"01"`` (default, /255 as the reference) or ``"255"``.
        n_test, val_fraction, split_seed: reference split of the standard file (ignored for h5).

    Sample: ``inputs`` float32 ``(in_len, H, W, 1)``, ``targets`` float32 ``(out_len, H, W, 1)``,
    ``meta`` ``{"index": int}`` (sequence index in the underlying file).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: Literal["train", "val", "test"] = "train",
        in_len: int = 10,
        out_len: int = 10,
        rescale: Rescale = "01",
        n_test: int = 1000,
        val_fraction: float = 0.1,
        split_seed: int = 123,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if rescale not in ("01", "255"):
            raise ValueError(f"rescale must be '01' or '255', got {rescale!r}")
        self.path = self._resolve(Path(path), split)
        self.is_standard = self.path.suffix == ".npy"
        if self.is_standard:
            arr = np.load(self.path, mmap_mode="r")
            if arr.ndim != 4:
                raise ValueError(f"{self.path}: expected (T, N, H, W), got shape {arr.shape}")
            seq_len, n_total = arr.shape[:2]
            self.indices = reference_split_indices(n_total, split, n_test, val_fraction, split_seed)
        else:
            import h5py

            with h5py.File(self.path, "r") as f:
                seq_len, n_total = f["frames"].shape[1], f["frames"].shape[0]
            self.indices = np.arange(n_total)
        if in_len < 1 or out_len < 1 or in_len + out_len > seq_len:
            raise ValueError(f"need 1 <= in_len, out_len and in_len + out_len <= {seq_len}")
        self.in_len, self.out_len, self.rescale = in_len, out_len, rescale
        self._source, self._pid = None, None

    @staticmethod
    def _resolve(path: Path, split: str) -> Path:
        if path.is_file():
            return path
        for candidate in (path / f"moving_mnist_{split}.h5", path / STANDARD_FILE):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"no Moving MNIST data at {path}: expected moving_mnist_{split}.h5 "
            f"(earthcast.data.moving_mnist.write_moving_mnist) or {STANDARD_FILE} "
            "(the standard Srivastava et al. test sequences)"
        )

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_source": None, "_pid": None}

    def _frames(self, seq: int, t_total: int) -> np.ndarray:
        if self._source is None or self._pid != os.getpid():  # one handle per worker process
            if self.is_standard:
                self._source = np.load(self.path, mmap_mode="r")
            else:
                import h5py

                self._source = h5py.File(self.path, "r")["frames"]
            self._pid = os.getpid()
        if self.is_standard:
            return np.array(self._source[:t_total, seq])  # (T, H, W), copied out of the memmap
        return self._source[seq, :t_total]  # (T, H, W)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.indices):
            raise IndexError(index)
        seq = int(self.indices[index])
        frames = torch.from_numpy(self._frames(seq, self.in_len + self.out_len)).float()[
            ..., None
        ]  # (T, H, W, 1)
        if self.rescale == "01":
            frames = frames / 255.0
        return {"inputs": frames[: self.in_len], "targets": frames[self.in_len :], "meta": {"index": seq}}
