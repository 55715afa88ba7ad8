"""Several radar composites side by side, with leave-one-source-out splits and fixed-size patches.

Axes: ``t`` time, ``h``/``w`` grid rows/columns (``p`` patch side), ``c`` channel (one: ``precip``),
``n`` tile.

The root is a folder of stores written by :func:`earthcast.data.radar.import_radar`, one per
weather service, named ``<source>.zarr`` (or ``.nc``); :func:`import_radar_sources` writes such a
folder from the pysteps example data in one call, every source pooled to about the same pixel
size. The stores must share ``transform``, ``threshold`` and ``zerovalue`` (their ``precip``
attributes); grids, projections and time steps may differ.

Splits (:func:`build_radar_sources`, options in :class:`SourcesConfig`):

* ``test``: every window of ``test_source``, the held-out service;
* ``val``: every window of ``val_source`` when it is set, else the windows in the last
  ``val_fraction`` of each training source's frames (windows across the boundary are dropped);
* ``train``: the remaining sources (and frames). The test source never reaches train or val.

Patches: each window is cut into ``patch_size`` × ``patch_size`` tiles so that sources with
different grids can be batched together. Tiles start every ``patch_stride`` pixels in training
(overlapping by default) and every ``patch_size`` pixels in validation and test; the last row and
column of tiles are aligned to the grid's edge so no border is lost. A tile is kept when at least
``min_valid`` of its pixels lie inside the radar domain over the window, and, in training only,
when at least ``min_wet`` of them are wet (above the dry floor).

Values: ``x = (v − offset) / scale`` with the min-max (or mean/std) statistics of the *training*
frames of the *training* sources, reused for val and test. NaN (outside the domain) becomes the
dry floor ``(zerovalue − offset) / scale`` in ``inputs`` and stays NaN in ``targets``, which the
loss and the metrics mask. Items::

    {"inputs":  float32 (in_len,  p, p, 1), "targets": float32 (out_len, p, p, 1),
     "meta": {"source", "time" (first input frame), "y0", "x0" (tile origin in the store's grid)}}

Each store is read once at construction (to find the tiles and the statistics) and then lazily,
one window per item, through :class:`~earthcast.data.gridded.GriddedDataset`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from einops import reduce
from torch.utils.data import Dataset

from earthcast.data.gridded import GriddedDataset, open_store

__all__ = [
    "EVENT_THRESHOLDS_MMH",
    "RadarSourcesDataset",
    "SourcesConfig",
    "build_radar_sources",
    "describe_radar_sources",
    "import_radar_sources",
    "list_sources",
    "sources_present",
    "tile_origins",
    "write_synthetic_sources",
]

EVENT_THRESHOLDS_MMH: tuple[float, ...] = (1.0, 5.0)
"""Rain rates (mm/h) of the categorical scores: light rain and moderate rain."""
VARIABLE = "precip"
_SUFFIXES = (".zarr", ".nc")
_ENCODING_KEYS = ("transform", "threshold", "zerovalue", "units")  # attributes of ``precip``
Normalization = Literal["minmax", "standard"] | None


@dataclass(frozen=True)
class SourcesConfig:
    """Options of the ``radar_sources`` data set (``data.options``; windows from ``data.in_len`` …).

    Attributes:
        test_source: the held-out source (a store name under the root): the whole test split.
        val_source: a source used whole as the validation split; ``None``: ``val_fraction``.
        val_fraction: share of each training source's frames (the last ones) used for validation
            when ``val_source`` is ``None``.
        sources: the sources to use (``None``: every store under the root).
        in_len, out_len: frames of ``inputs`` and ``targets``.
        stride: frames between training windows.
        eval_stride: frames between validation/test windows (``None``: ``out_len``, forecast
            periods that do not overlap).
        patch_size: side of the square tiles in pixels.
        patch_stride: pixels between training tiles (``None``: ``patch_size // 2``).
        min_valid: least share of a tile's pixels inside the radar domain (over the window).
        min_wet: least share of a training tile's pixels above the dry floor (over the window).
        normalization: ``"minmax"``, ``"standard"`` or ``None`` (stored values as they are).
    """

    test_source: str | None = None
    val_source: str | None = None
    val_fraction: float = 0.15
    sources: Sequence[str] | None = None
    in_len: int = 6
    out_len: int = 6
    stride: int = 2
    eval_stride: int | None = None
    patch_size: int = 64
    patch_stride: int | None = None
    min_valid: float = 0.5
    min_wet: float = 0.0
    normalization: Normalization = "minmax"

    def __post_init__(self) -> None:
        checks = {
            "in_len, out_len, stride >= 1": min(self.in_len, self.out_len, self.stride) >= 1,
            "eval_stride >= 1": self.eval_stride is None or self.eval_stride >= 1,
            "patch_size >= 4": self.patch_size >= 4,
            "patch_stride >= 1": self.patch_stride is None or self.patch_stride >= 1,
            "0 < val_fraction < 1": 0 < self.val_fraction < 1,
            "min_valid and min_wet in [0, 1]": 0 <= self.min_valid <= 1 and 0 <= self.min_wet <= 1,
            "normalization minmax|standard|null": self.normalization in ("minmax", "standard", None),
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid radar_sources options {self}: need {'; '.join(failed)}")

    @property
    def seq_len(self) -> int:
        return self.in_len + self.out_len


# ---------------------------------------------------------------------------------- stores


def list_sources(root: str | Path) -> dict[str, Path]:
    """``{source: store}`` of every ``<source>.zarr`` / ``<source>.nc`` directly under ``root``."""
    root = Path(root)
    found = [p for p in sorted(root.iterdir()) if p.suffix in _SUFFIXES] if root.is_dir() else []
    return {p.stem.lower(): p for p in found}


def sources_present(root: Path) -> bool:
    """At least two stores: one to hold out and one to train on."""
    return len(list_sources(root)) >= 2


@dataclass
class _Store:
    """One source: its lazy window reader, its frames (read once, for the scan) and its attributes."""

    name: str
    windows: GriddedDataset
    frames: np.ndarray  # (t, h, w) stored values, NaN outside the domain
    attrs: dict[str, Any]

    @property
    def shape(self) -> tuple[int, int]:
        return self.frames.shape[1], self.frames.shape[2]


def _open_store(name: str, path: Path, cfg: SourcesConfig) -> _Store:
    windows = GriddedDataset(path, [VARIABLE], cfg.in_len, cfg.out_len, nan_policy="keep")
    with open_store(path) as ds:
        var = ds[VARIABLE]
        missing = [k for k in _ENCODING_KEYS if k not in var.attrs]
        if missing:
            raise ValueError(f"{path}: '{VARIABLE}' lacks attribute(s) {missing}; write it with import_radar")
        frames = var.transpose("time", windows.y_dim, windows.x_dim).values.astype(np.float32)
        attrs = {**ds.attrs, **{k: var.attrs[k] for k in _ENCODING_KEYS}}
    if min(frames.shape[1:]) < cfg.patch_size:
        raise ValueError(f"source '{name}': grid {frames.shape[1:]} smaller than patch_size {cfg.patch_size}")
    return _Store(name, windows, frames, attrs)


def _check_compatible(stores: list[_Store]) -> dict[str, Any]:
    """The rain encoding every store shares (a mismatch would make one normalisation meaningless)."""
    first = {k: stores[0].attrs[k] for k in _ENCODING_KEYS}
    for store in stores[1:]:
        other = {k: store.attrs[k] for k in _ENCODING_KEYS}
        if other != first:
            raise ValueError(
                f"sources '{stores[0].name}' and '{store.name}' encode rain differently "
                f"({first} vs {other}); import every source with the same transform and threshold"
            )
    return {
        "transform": str(first["transform"]),
        "precip_threshold": float(first["threshold"]),
        "zerovalue": float(first["zerovalue"]),
        "units": str(first["units"]),
    }


def _frame_minutes(store: _Store) -> int | None:
    if store.attrs.get("timestep_units", "minutes") == "minutes" and "timestep" in store.attrs:
        return int(store.attrs["timestep"])
    step = store.windows.time_step
    return None if step is None else int(np.asarray(step).astype("timedelta64[m]").astype(np.int64))


def _pixel_km(attrs: dict[str, Any]) -> float | None:
    """Pixel size in km from ``import_radar``'s geo attributes (``None`` when they are absent)."""
    per_unit = {"m": 1e-3, "km": 1.0}.get(str(attrs.get("cartesian_unit", "m")))
    return None if per_unit is None or "xpixelsize" not in attrs else float(attrs["xpixelsize"]) * per_unit


# ----------------------------------------------------------------------------------- tiles


def tile_origins(height: int, width: int, patch: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners ``(y0, x0)`` of ``patch``-sided tiles every ``stride`` pixels.

    The last tile of each row and column is moved to touch the grid's far edge, so the tiles cover
    the whole grid (the last ones may overlap their neighbours).
    """

    def starts(size: int) -> list[int]:
        if size < patch:
            return []
        first = list(range(0, size - patch + 1, stride))
        return first if first[-1] == size - patch else [*first, size - patch]

    return [(y, x) for y in starts(height) for x in starts(width)]


def tile_fractions(frames: np.ndarray, origins: list[tuple[int, int]], patch: int, zerovalue: float):
    """Share of each tile's pixels that are valid, and that are wet, per frame.

    Args:
        frames: ``(t, h, w)`` stored values, NaN outside the domain.
        origins: tile corners from :func:`tile_origins`.
        patch: tile side.
        zerovalue: the dry floor; wet means strictly above it.

    Returns:
        ``(valid, wet)``, each ``(t, n)`` float64.
    """
    tiles = np.stack([frames[:, y : y + patch, x : x + patch] for y, x in origins], axis=1)  # (t, n, p, p)
    valid = reduce(np.isfinite(tiles).astype(np.float64), "t n h w -> t n", "mean")
    wet_pixels = np.nan_to_num(tiles, nan=zerovalue) > zerovalue  # NaN counts as dry
    wet = reduce(wet_pixels.astype(np.float64), "t n h w -> t n", "mean")
    return valid, wet


# ---------------------------------------------------------------------------------- data set


@dataclass(frozen=True)
class _Part:
    """The windows (by start frame) and tiling that one source contributes to one split."""

    store: int
    starts: tuple[int, ...]
    tile_stride: int
    min_wet: float


class RadarSourcesDataset(Dataset):
    """Patches of the windows of several radar stores (see the module docstring).

    Built by :func:`build_radar_sources`; not meant to be constructed by hand.

    Args:
        stores: the opened sources.
        parts: which windows and tiles of which store belong to this split.
        cfg: the options.
        stats: ``(offset, scale)`` of the normalisation.
        encoding: ``transform``, ``precip_threshold``, ``zerovalue``, ``units`` shared by the stores.
    """

    def __init__(
        self,
        stores: list[_Store],
        parts: list[_Part],
        cfg: SourcesConfig,
        stats: tuple[float, float],
        encoding: dict[str, Any],
    ) -> None:
        self.cfg, self.stats, self.encoding = cfg, stats, encoding
        self.in_len, self.out_len = cfg.in_len, cfg.out_len
        self._readers = {s.name: s.windows for s in stores}
        self.index: list[tuple[str, int, int, int]] = []  # (source, window index, y0, x0)
        for part in parts:
            self.index += self._select(stores[part.store], part)
        by_name = {s.name: s for s in stores}
        self.sources = list(dict.fromkeys(source for source, *_ in self.index))
        self.frame_minutes = {name: _frame_minutes(by_name[name]) for name in self.sources}
        self.km_per_pixel = {name: _pixel_km(by_name[name].attrs) for name in self.sources}

    def _select(self, store: _Store, part: _Part) -> list[tuple[str, int, int, int]]:
        """Every (window, tile) of ``part`` that passes the validity and wetness filters."""
        p = self.cfg.patch_size
        origins = tile_origins(*store.shape, p, part.tile_stride)
        valid, wet = tile_fractions(store.frames, origins, p, self.encoding["zerovalue"])  # (t, n) each
        position = {start: i for i, start in enumerate(store.windows.starts)}
        chosen = []
        for start in part.starts:
            frames = slice(start, start + self.cfg.seq_len)
            keep = (valid[frames].mean(0) >= self.cfg.min_valid) & (wet[frames].mean(0) >= part.min_wet)
            chosen += [(store.name, position[start], *origins[n]) for n in np.flatnonzero(keep)]
        return chosen

    @property
    def floor(self) -> float:
        """The dry floor in normalised units (what NaN inputs become)."""
        offset, scale = self.stats
        return (self.encoding["zerovalue"] - offset) / scale

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        source, window, y0, x0 = self.index[i]
        item = self._readers[source][window]  # whole frames: (t, h, w, 1) each
        p, (offset, scale) = self.cfg.patch_size, self.stats
        crop = (slice(None), slice(y0, y0 + p), slice(x0, x0 + p))
        inputs = (item["inputs"][crop] - offset) / scale  # (in_len, p, p, 1)
        targets = (item["targets"][crop] - offset) / scale  # (out_len, p, p, 1), NaN kept (masked)
        inputs = torch.nan_to_num(inputs, nan=self.floor)
        meta = {"source": source, "time": item["meta"]["time"], "y0": y0, "x0": x0}
        return {"inputs": inputs.contiguous(), "targets": targets.contiguous(), "meta": meta}


# ------------------------------------------------------------------------------------ splits


def _split_sources(names: list[str], cfg: SourcesConfig) -> tuple[list[str], str | None, str]:
    """(training sources, validation source or None, test source), with clear errors."""
    if cfg.test_source is None:
        raise ValueError(f"set data.options.test_source to the held-out source, one of {names}")
    held = [s.lower() for s in (cfg.test_source, cfg.val_source) if s is not None]
    unknown = [s for s in held if s not in names]
    if unknown:
        raise ValueError(f"source(s) {unknown} not among the stores {names}")
    if cfg.val_source is not None and cfg.val_source.lower() == cfg.test_source.lower():
        raise ValueError("val_source and test_source must differ (the test source is held out)")
    train = [s for s in names if s not in held]
    if not train:
        raise ValueError(f"no source left to train on: {names} minus {held}")
    return train, held[1] if len(held) > 1 else None, held[0]


def _training_stats(stores: list[_Store], ends: dict[str, int], kind: Normalization) -> tuple[float, float]:
    """(offset, scale) over the training frames of the training sources, NaN ignored."""
    if kind is None:
        return 0.0, 1.0
    values = np.concatenate([s.frames[: ends[s.name]][np.isfinite(s.frames[: ends[s.name]])] for s in stores])
    if values.size == 0:
        raise ValueError("the training frames hold no finite value")
    values = values.astype(np.float64)
    if kind == "minmax":
        return float(values.min()), float(values.max() - values.min()) or 1.0
    return float(values.mean()), float(values.std()) or 1.0


def _boundary(store: _Store, cfg: SourcesConfig) -> int:
    """First frame of the validation part of a training source (the part holds at least one window)."""
    frames = store.frames.shape[0]
    return max(0, min(round((1.0 - cfg.val_fraction) * frames), frames - cfg.seq_len))


def _every(starts: list[int], stride: int, first: int = 0, last: float = np.inf) -> tuple[int, ...]:
    """Window starts in ``[first, last]`` at least ``stride`` frames apart, from the earliest one on."""
    chosen: list[int] = []
    for start in starts:
        if first <= start <= last and (not chosen or start - chosen[-1] >= stride):
            chosen.append(start)
    return tuple(chosen)


def _parts(stores: list[_Store], cfg: SourcesConfig, roles: dict[str, str]) -> dict[str, list[_Part]]:
    """The windows and tilings of every split; ``roles`` maps source → train / val / test."""
    eval_stride = cfg.eval_stride or cfg.out_len
    val_by_time = "val" not in roles.values()  # no validation source: split the training sources in time
    evaluation = functools.partial(_Part, tile_stride=cfg.patch_size, min_wet=0.0)
    train_tiles = cfg.patch_stride or cfg.patch_size // 2
    parts: dict[str, list[_Part]] = {"train": [], "val": [], "test": []}
    for i, store in enumerate(stores):
        starts = store.windows.starts
        if roles[store.name] != "train":
            parts[roles[store.name]].append(evaluation(i, _every(starts, eval_stride)))
            continue
        end = _boundary(store, cfg) if val_by_time else store.frames.shape[0]
        parts["train"].append(
            _Part(i, _every(starts, cfg.stride, last=end - cfg.seq_len), train_tiles, cfg.min_wet)
        )
        if val_by_time:  # windows across the boundary belong to neither split
            parts["val"].append(evaluation(i, _every(starts, eval_stride, first=end)))
    return parts


def build_radar_sources(root: Path, splits: tuple[str, ...], options: dict[str, Any]) -> dict[str, Dataset]:
    """The requested splits of the stores under ``root`` (``options``: fields of :class:`SourcesConfig`).

    The statistics always come from the training split, whichever splits are requested.
    """
    from earthcast.data.specs import call_with

    cfg = call_with(SourcesConfig, "radar_sources options", **options)
    found = list_sources(root)
    if cfg.sources is not None:
        absent = [s for s in cfg.sources if s.lower() not in found]
        if absent:
            raise ValueError(f"source(s) {absent} not under {root}; found {sorted(found)}")
        found = {s.lower(): found[s.lower()] for s in cfg.sources}
    train_names, val_name, test_name = _split_sources(list(found), cfg)
    roles = {**dict.fromkeys(train_names, "train"), test_name: "test"}
    if val_name is not None:
        roles[val_name] = "val"
    stores = [_open_store(name, found[name], cfg) for name in roles]
    encoding = _check_compatible(stores)
    training = [s for s in stores if roles[s.name] == "train"]
    ends = {s.name: s.frames.shape[0] if val_name else _boundary(s, cfg) for s in training}
    stats = _training_stats(training, ends, cfg.normalization)
    parts = _parts(stores, cfg, roles)
    return {split: RadarSourcesDataset(stores, parts[split], cfg, stats, encoding) for split in splits}


def describe_radar_sources(dataset: RadarSourcesDataset) -> dict[str, Any]:
    """Contract fields of one split: scaling, rain encoding, thresholds, frame interval, pixel size."""
    from earthcast.models.classical.scaling import from_rainrate

    enc, (offset, scale) = dataset.encoding, dataset.stats
    thresholds = [
        float(from_rainrate(np.float64(r), enc["transform"], enc["precip_threshold"], enc["zerovalue"]))
        for r in EVENT_THRESHOLDS_MMH
    ]
    minutes = set(dataset.frame_minutes.values())
    km = {round(v, 3) if v is not None else None for v in dataset.km_per_pixel.values()}
    return {
        "variable": VARIABLE,
        "units": enc["units"],
        "scale": dataset.cfg.normalization or "none",
        "scale_factor": float(scale),
        "scale_offset": float(offset),
        "frame_interval_minutes": minutes.pop() if len(minutes) == 1 else None,  # None: sources differ
        "thresholds": thresholds,
        "rain_thresholds_mmh": list(EVENT_THRESHOLDS_MMH),
        "transform": enc["transform"],
        "precip_threshold": enc["precip_threshold"],
        "zerovalue": enc["zerovalue"],
        "km_per_pixel": km.pop() if len(km) == 1 else None,
        "sources": list(dataset.sources),
        "test_source": dataset.cfg.test_source.lower() if dataset.cfg.test_source else None,
    }


# ------------------------------------------------------------------------------- writers


def native_pixel_km(source: str, path: str | Path) -> float:
    """Pixel size in km of ``source``'s native grid (read from its first frame)."""
    from earthcast.data.radar import read_radar

    km = _pixel_km(read_radar(source, path, max_frames=1, progress=False).attrs)
    if km is None:
        raise ValueError(f"the '{source}' importer gives no pixel size in m or km; pool it with import_radar")
    return km


def import_radar_sources(
    path: str | Path,
    out: str | Path,
    sources: Sequence[str] | None = None,
    *,
    pixel_km: float = 4.0,
    transform: str = "dbr",
    threshold: float = 0.1,
    max_frames: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Import every source found under ``path`` into ``out/<source>.zarr``, pooled to ~``pixel_km``.

    Each source's pooling factor is ``round(pixel_km / native pixel size)`` (at least 1), so that
    motion in pixels per frame is comparable across services. Existing stores are kept unless
    ``overwrite``. Files are found recursively by each service's file-name pattern, so ``path``
    may be the whole ``shared/data/radar`` folder. Other arguments: those of ``import_radar``.

    Returns:
        ``{source: store}`` of the stores now under ``out``.
    """
    from earthcast.data.radar import RADAR_SOURCES, import_radar

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for source in [s.lower() for s in (sources or RADAR_SOURCES)]:
        store = out / f"{source}.zarr"
        if overwrite or not store.exists():
            factor = max(1, round(pixel_km / native_pixel_km(source, path)))
            import_radar(
                source,
                path,
                store,
                transform,  # type: ignore[arg-type]
                threshold,
                downsample=factor,
                max_frames=max_frames,
                overwrite=overwrite,
                progress=progress,
            )
        written[source] = store
    return written


def write_synthetic_sources(
    root: str | Path,
    sources: Sequence[str] = ("mch", "knmi", "fmi", "bom"),
    n_times: int = 48,
    size: int = 32,
    seed: int = 0,
) -> dict[str, Path]:
    """Synthetic stores named like real sources, each with its own seed and grid (``size + 8·i``)."""
    from earthcast.data.synthetic_radar import write_synthetic_radar

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return {
        name: write_synthetic_radar(root / f"{name}.zarr", n_times=n_times, size=size + 8 * i, seed=seed + i)
        for i, name in enumerate(sources)
    }
