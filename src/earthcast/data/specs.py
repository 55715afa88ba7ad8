"""What ``ForecastDataModule`` needs to know about each registered data set.

A :class:`DatasetSpec` says how to build the train/val/test splits from a root, whether data are
present there, how to write a synthetic look-alike, and the data contract: its static part
(variable, units, frame interval, thresholds) and what is read from the data (scale; for
geographic grids ``row_order``, whether row 0 is the northern- or southernmost row, so plots can
put north up). The registry in ``earthcast.data`` maps names to zero-argument factories
returning a spec; plug-ins add theirs through the ``earthcast.datasets`` entry-point group.
Keyword arguments reach the data set classes and writers unchanged, so their defaults stay in one
place (the classes themselves).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from earthcast.data.config import DataConfig

SPLITS = ("train", "val", "test")
CONTRACT_KEYS: tuple[str, ...] = (
    "dataset",
    "in_len",
    "out_len",
    "height",
    "width",
    "channels_in",
    "channels_out",
    "scale",
    "units",
    "variable",
    "frame_interval_minutes",
    "thresholds",
)
"""Keys every data contract has (``earthcast.training.checkpoint`` documents their meaning).

Optional keys include ``row_order`` (``"north_first"``/``"south_first"``, see
``earthcast.io.forecast.row_order``; absent when unknown, and the grid is drawn as stored) and
``grid_latitude``/``grid_longitude`` (ENSO: row and column coordinates, degrees)."""


@dataclass(frozen=True)
class DatasetSpec:
    """Recipe of one data set.

    Attributes:
        name: registry name.
        build: ``(root, splits, config) -> {split: Dataset}`` for the requested splits.
        present: ``root -> bool``: are the data there?
        synthesize: ``(root, config) -> None`` writes synthetic data, or ``None`` if impossible.
        describe: ``(dataset) -> dict`` data-dependent contract fields (e.g. ``scale``).
        info: static contract fields: ``variable``, ``units``, ``scale``,
            ``frame_interval_minutes``, ``thresholds`` (and optionally ``scale_factor``/``_offset``).
        source_hint: how to obtain the real data (shown when they are missing).
    """

    name: str
    build: Callable[[Path, tuple[str, ...], DataConfig], dict[str, Dataset]]
    present: Callable[[Path], bool]
    synthesize: Callable[[Path, DataConfig], None] | None = None
    describe: Callable[[Dataset], dict[str, Any]] = lambda dataset: {}
    info: dict[str, Any] = field(default_factory=dict)
    source_hint: str = ""


def call_with(fn: Callable[..., Any], what: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``, turning an unknown keyword into a ValueError that lists the accepted ones."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        accepted = [n for n, p in params.items() if p.kind is not p.VAR_POSITIONAL][len(args) :]
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ValueError(f"{what} does not take {unknown}; it accepts {accepted}")
    return fn(*args, **kwargs)


def window_kwargs(config: DataConfig, stride: bool = True) -> dict[str, int]:
    """``in_len``/``out_len`` (and ``stride``) that the config sets; unset ones keep class defaults."""
    keys = ("in_len", "out_len", "stride") if stride else ("in_len", "out_len")
    if not stride and config.stride is not None:
        raise ValueError(f"data set '{config.name}' has one window per sequence: data.stride cannot be set")
    return {k: getattr(config, k) for k in keys if getattr(config, k) is not None}


def _split_generator_kwargs(config_cls: type, synthetic: dict[str, Any]) -> tuple[dict, dict]:
    """Separate the generator-config fields (e.g. ``size``) from the writer arguments (``n_train``)."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    return {k: v for k, v in synthetic.items() if k in names}, {
        k: v for k, v in synthetic.items() if k not in names
    }


# ----------------------------------------------------------------------------- MNIST family


def _digits_describe(dataset: Any) -> dict[str, Any]:
    scaled = dataset.rescale == "01"
    return {"scale": dataset.rescale, "scale_factor": 255.0 if scaled else 1.0, "scale_offset": 0.0}


_DIGITS_INFO = {
    "variable": "intensity",
    "units": "grey level (0-255)",
    "frame_interval_minutes": None,
    "thresholds": [],
}


def nbody() -> DatasetSpec:
    """N-body MNIST (SPEC §3.3): ``nbody_{train,val,test}.h5`` written by ``write_nbody``."""
    from earthcast.data import nbody as nb

    def build(root: Path, splits: tuple[str, ...], config: DataConfig) -> dict[str, Dataset]:
        kwargs = {**window_kwargs(config, stride=False), **config.options}
        return {s: call_with(nb.NBodyDataset, "NBodyDataset", root, s, **kwargs) for s in splits}

    def synthesize(root: Path, config: DataConfig) -> None:
        generator, writer = _split_generator_kwargs(nb.NBodyConfig, config.synthetic)
        call_with(
            nb.write_nbody, "write_nbody", root, config=nb.NBodyConfig(**generator), progress=False, **writer
        )

    return DatasetSpec(
        name="nbody",
        build=build,
        present=lambda root: root.is_dir() and any(root.glob("nbody_*.h5")),
        synthesize=synthesize,
        describe=_digits_describe,
        info={**_DIGITS_INFO, "scale": "01"},
        source_hint="the paper's files are nbody_paper.zip (S3 bucket 'earthformer'); "
        "earthcast.data.nbody.write_nbody generates new ones",
    )


def moving_mnist() -> DatasetSpec:
    """Moving MNIST (SPEC §3.4): ``moving_mnist_{split}.h5`` or the standard ``mnist_test_seq.npy``."""
    from earthcast.data import moving_mnist as mm

    def build(root: Path, splits: tuple[str, ...], config: DataConfig) -> dict[str, Dataset]:
        kwargs = {**window_kwargs(config, stride=False), **config.options}
        return {s: call_with(mm.MovingMNISTDataset, "MovingMNISTDataset", root, s, **kwargs) for s in splits}

    def synthesize(root: Path, config: DataConfig) -> None:
        generator, writer = _split_generator_kwargs(mm.MovingMNISTConfig, config.synthetic)
        call_with(
            mm.write_moving_mnist,
            "write_moving_mnist",
            root,
            config=mm.MovingMNISTConfig(**generator),
            progress=False,
            **writer,
        )

    def present(root: Path) -> bool:
        return (
            root.is_file()
            or (root.is_dir() and any(root.glob("moving_mnist_*.h5")))
            or (root / mm.STANDARD_FILE).is_file()
        )

    return DatasetSpec(
        name="moving_mnist",
        build=build,
        present=present,
        synthesize=synthesize,
        describe=_digits_describe,
        info={**_DIGITS_INFO, "scale": "01"},
        source_hint="the standard file is mnist_test_seq.npy (Srivastava et al. 2015)",
    )


# ----------------------------------------------------------------------------------- SEVIR


def sevir(variant: str = "sevir") -> DatasetSpec:
    """SEVIR VIL (SPEC §3.1) or SEVIR-LR (§3.2), read from ``CATALOG.csv`` + ``data/vil``."""
    from earthcast.data.sevir import SEVIRDataset, write_synthetic_sevir
    from earthcast.data.sevir.constants import CATALOG_NAME, VIL_SCALE, VIL_THRESHOLDS

    def build(root: Path, splits: tuple[str, ...], config: DataConfig) -> dict[str, Dataset]:
        kwargs = {**window_kwargs(config), **config.options}
        return {
            s: call_with(SEVIRDataset, "SEVIRDataset", root, s, variant=variant, **kwargs) for s in splits
        }

    def synthesize(root: Path, config: DataConfig) -> None:
        call_with(
            write_synthetic_sevir, "write_synthetic_sevir", root, **{"progress": False, **config.synthetic}
        )

    def describe(dataset: Any) -> dict[str, Any]:
        scaled = dataset.scale == "01"
        return {
            "scale": dataset.scale,
            "scale_factor": VIL_SCALE if scaled else 1.0,
            "scale_offset": 0.0,
            "frame_interval_minutes": dataset.frame_interval_minutes,
        }

    return DatasetSpec(
        name=variant,
        build=build,
        present=lambda root: (root / CATALOG_NAME).is_file(),
        synthesize=synthesize,
        describe=describe,
        info={
            "variable": "vil",
            "units": "VIL byte code (0-254; kg m-2 via the SEVIR decoding)",
            "scale": "01",
            "frame_interval_minutes": 5 if variant == "sevir" else 10,
            "thresholds": list(VIL_THRESHOLDS),
        },
        source_hint="download with `aws s3 cp --no-sign-request s3://sevir/CATALOG.csv <root>/` and "
        "`aws s3 sync --no-sign-request s3://sevir/data/vil <root>/data/vil`",
    )


def sevirlr() -> DatasetSpec:
    """SEVIR-LR (SPEC §3.2): 10-minute frames, 3×3 max-pooled, derived on the fly from SEVIR."""
    return sevir("sevirlr")


# ------------------------------------------------------------------------------------ ENSO


def enso() -> DatasetSpec:
    """ICAR-ENSO SST anomalies (SPEC §3.5): ``CMIP_train.nc`` + ``CMIP_label.nc``."""
    from earthcast.data import enso as en

    def build(root: Path, splits: tuple[str, ...], config: DataConfig) -> dict[str, Dataset]:
        kwargs = {**window_kwargs(config), **config.options}
        return {s: call_with(en.ENSODataset, "ENSODataset", root, s, **kwargs) for s in splits}

    def synthesize(root: Path, config: DataConfig) -> None:
        call_with(en.write_synthetic_enso, "write_synthetic_enso", root, **config.synthetic)

    return DatasetSpec(
        name="enso",
        build=build,
        present=lambda root: (root / en.TRAIN_FILE).is_file(),
        synthesize=synthesize,
        describe=_enso_grid,
        info={
            "variable": "sst",
            "units": "K (SST anomaly)",
            "scale": "minmax",
            "scale_factor": en.SST_MAX - en.SST_MIN,
            "scale_offset": en.SST_MIN,
            "frame_interval_minutes": None,  # monthly means
            "thresholds": [],
        },
        source_hint=en._SOURCE_HINT,
    )


def _enso_grid(dataset: Any) -> dict[str, Any]:
    """Row order and coordinates of the ENSO grid: its rows run from 55°S to 60°N, the opposite of
    image order, and forecasts from ``.npy`` inputs would otherwise carry only row indices."""
    from earthcast.io.forecast import row_order

    return {
        "row_order": row_order(dataset.latitude, {"units": "degrees_north"}),
        "grid_latitude": [float(v) for v in dataset.latitude],
        "grid_longitude": [float(v) for v in dataset.longitude],
    }


# ------------------------------------------------------------------------- gridded / radar


def gridded(defaults: dict[str, Any] | None = None, name: str = "gridded") -> DatasetSpec:
    """Any ``(time, y, x)`` Zarr/NetCDF store; ``radar`` presets it for ``import_radar`` output."""
    from earthcast.data.gridded_splits import build_gridded, describe_gridded, gridded_present

    defaults = dict(defaults or {})

    def synthesize(root: Path, config: DataConfig) -> None:
        from earthcast.data.synthetic_radar import write_synthetic_radar

        call_with(write_synthetic_radar, "write_synthetic_radar", root, **config.synthetic)

    def describe(dataset: Any) -> dict[str, Any]:
        return {**describe_gridded(dataset), **_gridded_row_order(dataset)}

    return DatasetSpec(
        name=name,
        build=lambda root, splits, config: build_gridded(root, splits, config, defaults),
        present=gridded_present,
        synthesize=synthesize,
        describe=describe,
        info={"variable": "", "units": "", "scale": "none", "frame_interval_minutes": None, "thresholds": []},
        source_hint="any NetCDF/Zarr store with a time dimension works; radar composites are imported "
        "with `earthcast data import-radar`",
    )


def _gridded_row_order(dataset: Any) -> dict[str, Any]:
    """``{"row_order": ...}`` of a ``GriddedDataset``'s store, or ``{}`` when unknown.

    Stores keep their row order, and many NetCDF/Zarr grids list latitude ascending (south first),
    which a plot drawing row 0 on top shows upside down. The y coordinate (latitude or projection
    y) tells; failing that, a pysteps ``yorigin`` attribute (radar imports).
    """
    from earthcast.data.gridded import open_store
    from earthcast.io.forecast import row_order

    def read(ds: Any) -> str | None:
        y = dataset.y_dim
        order = row_order(ds[y].values, ds[y].attrs, y) if y in ds.coords else None
        return order or _YORIGIN_ORDER.get(str(ds.attrs.get("yorigin", "")).lower())

    if dataset._path is None:
        order = read(dataset._ds)
    else:
        with open_store(dataset._path, dataset._engine) as ds:
            order = read(ds)
    return {} if order is None else {"row_order": order}


_YORIGIN_ORDER = {"upper": "north_first", "lower": "south_first"}


def radar() -> DatasetSpec:
    """Radar composites imported by ``import_radar``: ``precip`` in dBR, min-max scaled, NaN → floor."""
    return gridded(
        {
            "variables": ["precip"],
            "in_len": 6,
            "out_len": 6,
            "stride": 3,
            "normalization": "minmax",
            "nan_policy": "zero",
        },
        name="radar",
    )


# ------------------------------------------------------------------ radar, several sources


def radar_sources() -> DatasetSpec:
    """A folder of ``import_radar`` stores, one per source; leave-one-source-out splits of patches."""
    from earthcast.data import radar_sources as rs

    def build(root: Path, splits: tuple[str, ...], config: DataConfig) -> dict[str, Dataset]:
        return rs.build_radar_sources(root, splits, {**window_kwargs(config), **config.options})

    def synthesize(root: Path, config: DataConfig) -> None:
        call_with(rs.write_synthetic_sources, "write_synthetic_sources", root, **config.synthetic)

    return DatasetSpec(
        name="radar_sources",
        build=build,
        present=rs.sources_present,
        synthesize=synthesize,
        describe=rs.describe_radar_sources,
        info={"variable": rs.VARIABLE, "thresholds": []},
        source_hint="import the composites with `earthcast data import-radar-sources --path "
        "shared/data/radar --out <root>` (one <source>.zarr per weather service)",
    )


BUILTIN_SPECS: dict[str, Callable[[], DatasetSpec]] = {
    "nbody": nbody,
    "moving_mnist": moving_mnist,
    "sevir": sevir,
    "sevirlr": sevirlr,
    "enso": enso,
    "radar": radar,
    "gridded": gridded,
    "radar_sources": radar_sources,
}
