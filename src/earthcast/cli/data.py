"""``earthcast data`` — write synthetic datasets in their real layouts, or import radar composites.

Sub-commands (each a thin shell over the generator named in brackets):

* ``synth-sevir``  SEVIR VIL store: ``CATALOG.csv`` + ``data/vil/<year>/*.h5``
  [``earthcast.data.sevir.write_synthetic_sevir``]
* ``synth-enso``   ICAR-ENSO look-alike: ``CMIP_train.nc`` + ``CMIP_label.nc``
  [``earthcast.data.enso.write_synthetic_enso``]
* ``nbody``        N-body MNIST: ``nbody_{train,val,test}.h5`` [``earthcast.data.nbody.write_nbody``]
* ``moving-mnist`` Moving MNIST: ``moving_mnist_{train,val,test}.h5``
  [``earthcast.data.moving_mnist.write_moving_mnist``]
* ``import-radar`` pysteps-readable composites → ``(time, y, x)`` Zarr/NetCDF
  [``earthcast.data.radar.import_radar``]
* ``import-radar-sources`` every service's composites → ``<out>/<source>.zarr`` at one pixel size
  (the ``radar_sources`` data set) [``earthcast.data.radar_sources.import_radar_sources``]

Every file is written to a temporary name and renamed, so an interrupted run leaves no partial file.
The synthetic generators refuse to replace existing files without ``--overwrite`` (their names are
the real data sets', so ``--out`` pointed at a real SEVIR or ICAR-ENSO folder would destroy it), and
record their writing (``earthcast.data.synthesis``), so that a data set whose writing was
interrupted is recognised as such when it is read.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from earthcast.cli import UserError, check_output, check_writable

T = TypeVar("T")

_MNIST_DIGIT = 28  # MNIST digits are 28×28 pixels
# Restated from earthcast.data.radar so that `earthcast --help` does not import xarray;
# tests/cli/test_data.py checks that they agree.
RADAR_SOURCE_NAMES = ("bom", "fmi", "knmi", "mch")
RADAR_TRANSFORMS = ("dbr", "log1p", "rainrate")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data",
        help="write synthetic SEVIR / ENSO / N-body / Moving MNIST data, or import radar composites",
        description="Create datasets in the layouts the earthcast loaders read.",
    )
    commands = p.add_subparsers(dest="data_command", metavar="DATASET")
    commands.required = True
    _add_sevir(commands)
    _add_enso(commands)
    _add_nbody(commands)
    _add_moving_mnist(commands)
    _add_radar(commands)
    _add_radar_sources(commands)


def _common(p: argparse.ArgumentParser, seed: bool = True) -> None:
    p.add_argument("--out", required=True, type=Path, help="output directory")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace files of the same names already in --out"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _synthesize(args: argparse.Namespace, dataset: str, files: Iterable[Path], write: Callable[[], T]) -> T:
    """Run ``write()`` for synthetic ``dataset`` data in ``args.out`` once ``--out`` is known to
    be writable and none of ``files`` (relative to it) would be replaced without ``--overwrite``;
    the writing is recorded (``earthcast.data.synthesis``), so an interrupted one is detected."""
    from earthcast.data.synthesis import synthesizing

    check_writable("--out", args.out)
    if not args.overwrite:
        _refuse_existing(args.out, files)
    with synthesizing(args.out, dataset, None):
        return write()


def _refuse_existing(out: Path, files: Iterable[Path]) -> None:
    """Name the files in ``out`` a generator would replace: they may be a user's real data."""
    existing = [str(out / f) for f in files if (out / f).exists()]
    if existing:
        more, them = (f" and {len(existing) - 1} more", "them") if len(existing) > 1 else ("", "it")
        raise UserError(
            f"--out '{out}' already holds {existing[0]}{more}, which this would replace; pass "
            f"--overwrite to replace {them}, or choose another --out"
        )


def _positive(**values: int) -> None:
    bad = {k: v for k, v in values.items() if v is None or v < 1}
    if bad:
        flags = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in bad.items())
        raise UserError(f"{flags}: must be a positive number")


def _non_negative(**values: int) -> None:
    bad = {k: v for k, v in values.items() if v < 0}
    if bad:
        raise UserError(", ".join(f"--{k} {v}" for k, v in bad.items()) + ": must be >= 0")


# ------------------------------------------------------------------------------------ SEVIR

_SEVIR_YEARS = (2018, 2019)  # the writer's default, passed explicitly so _sevir_files agrees


def _sevir_files(years: tuple[int, int]) -> Iterator[Path]:
    """Every file ``write_synthetic_sevir`` may write for ``years``: the catalogue and the
    half-year files of each year (which ones receive events depends on the seed)."""
    from earthcast.data.sevir.constants import CATALOG_NAME, DATA_DIRNAME, IMG_TYPE

    yield Path(CATALOG_NAME)
    for year in range(years[0], years[-1] + 1):
        for half in ("0101_0630", "0701_1231"):
            yield Path(DATA_DIRNAME, IMG_TYPE, str(year), f"SEVIR_VIL_STORMEVENTS_{year}_{half}.h5")


def _add_sevir(commands) -> None:
    p = commands.add_parser("synth-sevir", help="synthetic SEVIR VIL store (real layout)")
    _common(p)
    p.add_argument("--events", type=int, default=24, help="complete events (default 24)")
    p.add_argument("--size", type=int, default=384, help="pixels per side (default 384; real SEVIR 384)")
    p.add_argument("--frames", type=int, default=49, help="frames per event, 5 min apart (default 49)")
    p.add_argument("--incomplete", type=int, default=1, help="extra events with missing pixels (default 1)")
    p.set_defaults(func=_run_sevir)


def _run_sevir(args: argparse.Namespace) -> int:
    from earthcast.data.sevir import write_synthetic_sevir

    _positive(events=args.events)
    _non_negative(incomplete=args.incomplete)
    if args.size < 8 or args.frames < 2:
        raise UserError(f"--size must be >= 8 and --frames >= 2, got {args.size} and {args.frames}")
    root = _synthesize(
        args,
        "sevir",
        _sevir_files(_SEVIR_YEARS),
        lambda: write_synthetic_sevir(
            args.out,
            n_events=args.events,
            size=args.size,
            frames=args.frames,
            seed=args.seed,
            years=_SEVIR_YEARS,
            n_incomplete=args.incomplete,
            progress=not args.quiet,
        ),
    )
    print(
        f"wrote {args.events + args.incomplete} SEVIR events ({args.size}×{args.size}×{args.frames}) "
        f"to {root}: "
        f"CATALOG.csv + data/vil/; read with earthcast.data.sevir.SEVIRDataset('{root}', 'train')"
    )
    return 0


# ------------------------------------------------------------------------------------- ENSO


def _add_enso(commands) -> None:
    p = commands.add_parser("synth-enso", help="synthetic ICAR-ENSO CMIP_train.nc / CMIP_label.nc")
    _common(p)
    p.add_argument("--cmip6-models", type=int, default=2, help="CMIP6-like models (default 2)")
    p.add_argument("--cmip6-years", type=int, default=6, help="years per CMIP6 model (default 6)")
    p.add_argument("--cmip5-models", type=int, default=3, help="CMIP5-like models, >= 3 (default 3)")
    p.add_argument("--cmip5-years", type=int, default=5, help="years per CMIP5 model (default 5)")
    p.add_argument("--no-t300", action="store_true", help="write only 'sst' (no 't300')")
    p.set_defaults(func=_run_enso)


def _run_enso(args: argparse.Namespace) -> int:
    from earthcast.data.enso import LABEL_FILE, TRAIN_FILE, write_synthetic_enso

    if args.cmip5_models < 3:
        raise UserError(
            f"--cmip5-models must be >= 3 (one each for train, val and test), got {args.cmip5_models}"
        )
    _non_negative(cmip6_models=args.cmip6_models)
    _positive(cmip6_years=args.cmip6_years, cmip5_years=args.cmip5_years)
    paths = _synthesize(
        args,
        "enso",
        (Path(TRAIN_FILE), Path(LABEL_FILE)),
        lambda: write_synthetic_enso(
            args.out,
            n_cmip6_models=args.cmip6_models,
            years_cmip6=args.cmip6_years,
            n_cmip5_models=args.cmip5_models,
            years_cmip5=args.cmip5_years,
            seed=args.seed,
            include_t300=not args.no_t300,
        ),
    )
    print(
        f"wrote {paths['train']} and {paths['label']}; "
        f"read with earthcast.data.enso.ENSODataset('{args.out}')"
    )
    return 0


# --------------------------------------------------------------------- N-body / Moving MNIST


def _add_digit_options(p: argparse.ArgumentParser, counts: tuple[int, int, int], digits: int) -> None:
    for split, n in zip(("train", "val", "test"), counts):
        p.add_argument(f"--{split}", type=int, default=n, help=f"{split} sequences (default {n})")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels (default 64)")
    p.add_argument("--seq-len", type=int, default=20, help="frames per sequence (default 20)")
    p.add_argument("--digits", type=int, default=digits, help=f"digits per sequence (default {digits})")


def _add_nbody(commands) -> None:
    p = commands.add_parser("nbody", help="N-body MNIST sequences (HDF5 per split)")
    _common(p)
    _add_digit_options(p, (20000, 1000, 1000), 3)
    p.set_defaults(func=_run_nbody)


def _add_moving_mnist(commands) -> None:
    p = commands.add_parser("moving-mnist", help="Moving MNIST sequences (HDF5 per split)")
    _common(p)
    _add_digit_options(p, (8100, 900, 1000), 2)
    p.set_defaults(func=_run_moving_mnist)


def _check_digit_args(args: argparse.Namespace) -> None:
    _non_negative(train=args.train, val=args.val, test=args.test)
    if args.train + args.val + args.test == 0:
        raise UserError("--train, --val and --test are all 0: nothing to write")
    _positive(size=args.size, seq_len=args.seq_len, digits=args.digits)


def _split_files(args: argparse.Namespace, prefix: str) -> list[Path]:
    """``<prefix>_<split>.h5`` of the splits asked for (a split of 0 sequences is not written)."""
    counts = {"train": args.train, "val": args.val, "test": args.test}
    return [Path(f"{prefix}_{split}.h5") for split, n in counts.items() if n > 0]


def _report(written: dict[str, Path], reader: str, out: Path) -> None:
    files = ", ".join(str(p) for p in written.values())
    print(f"wrote {files}; read with {reader}('{out}', 'train')")


def _run_nbody(args: argparse.Namespace) -> int:
    from earthcast.data.nbody import NBodyConfig, write_nbody

    _check_digit_args(args)
    config = NBodyConfig(size=args.size, seq_len=args.seq_len, num_digits=args.digits)
    written = _synthesize(
        args,
        "nbody",
        _split_files(args, "nbody"),
        lambda: write_nbody(
            args.out, args.train, args.val, args.test, seed=args.seed, config=config, progress=not args.quiet
        ),
    )
    _report(written, "earthcast.data.nbody.NBodyDataset", args.out)
    return 0


def _run_moving_mnist(args: argparse.Namespace) -> int:
    from earthcast.data.moving_mnist import MovingMNISTConfig, write_moving_mnist

    _check_digit_args(args)
    if args.size < _MNIST_DIGIT:
        raise UserError(
            f"--size {args.size} is smaller than the {_MNIST_DIGIT}-pixel MNIST digits; use >= 28"
        )
    config = MovingMNISTConfig(size=args.size, seq_len=args.seq_len, num_digits=args.digits)
    written = _synthesize(
        args,
        "moving_mnist",
        _split_files(args, "moving_mnist"),
        lambda: write_moving_mnist(
            args.out, args.train, args.val, args.test, seed=args.seed, config=config, progress=not args.quiet
        ),
    )
    _report(written, "earthcast.data.moving_mnist.MovingMNISTDataset", args.out)
    return 0


# ------------------------------------------------------------------------------------ radar


def _add_radar(commands) -> None:
    p = commands.add_parser(
        "import-radar",
        help="radar composites (pysteps importers) → (time, y, x) Zarr or NetCDF",
        description="Import one weather service's composites into a store with variable 'precip' "
        "(time, y, x); transforms: dbr (10·log10 mm/h), log1p (log(1 + mm/h)), rainrate (mm/h).",
    )
    p.add_argument("--source", required=True, type=str.lower, choices=RADAR_SOURCE_NAMES)
    p.add_argument("--path", required=True, type=Path, help="directory searched recursively for frames")
    p.add_argument("--out", required=True, type=Path, help="output store: .zarr (directory) or .nc")
    p.add_argument(
        "--transform", default="dbr", choices=RADAR_TRANSFORMS, help="value transform (default dbr)"
    )
    p.add_argument(
        "--threshold", type=float, default=0.1, help="dry below this rain rate, mm/h (default 0.1)"
    )
    p.add_argument("--downsample", type=int, default=1, help="mean-pool K×K pixels (default 1)")
    p.add_argument("--crop", help="ROW0,ROW1,COL0,COL1 of the native grid, before pooling")
    p.add_argument("--start", help="first time (ISO, e.g. 2016-09-28T16:00)")
    p.add_argument("--end", help="last time (ISO)")
    p.add_argument("--max-frames", type=int, help="keep only the first N frames")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_radar)


def _parse_crop(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        crop = tuple(int(v) for v in text.split(","))
    except ValueError:
        crop = ()
    if len(crop) != 4 or crop[0] >= crop[1] or crop[2] >= crop[3] or min(crop) < 0:
        raise UserError(f"--crop '{text}' must be ROW0,ROW1,COL0,COL1 with ROW0 < ROW1 and COL0 < COL1")
    return crop  # type: ignore[return-value]


def _check_iso(flag: str, value: str | None) -> None:
    from datetime import datetime

    if value is None:
        return
    try:
        datetime.fromisoformat(value)
    except ValueError as err:
        raise UserError(f"--{flag} '{value}' is not an ISO time; write e.g. 2016-09-28T16:00") from err


def _run_radar(args: argparse.Namespace) -> int:
    from earthcast.data.radar import import_radar

    if args.out.suffix.lower() not in (".zarr", ".nc"):
        raise UserError(f"--out '{args.out}' must end in .zarr or .nc")
    check_output("--out", args.out, args.overwrite, store=args.out.suffix.lower() == ".zarr")
    if not args.path.exists():
        raise UserError(f"--path '{args.path}' not found; give the directory holding the {args.source} files")
    for flag in ("start", "end"):
        _check_iso(flag, getattr(args, flag))
    if args.max_frames is not None:
        _positive(max_frames=args.max_frames)
    _positive(downsample=args.downsample)
    try:
        out = import_radar(
            args.source,
            args.path,
            args.out,
            transform=args.transform,
            threshold=args.threshold,
            downsample=args.downsample,
            crop=_parse_crop(args.crop),
            start=args.start,
            end=args.end,
            max_frames=args.max_frames,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except ImportError as err:
        raise UserError(f"{err}") from err
    except OSError as err:  # a damaged frame or an importer failure (FileNotFoundError passes through)
        if isinstance(err, FileNotFoundError) or not _blames_input(err, args.path):
            raise  # writing --out failed: a disk error, reported with its path by earthcast.cli.main
        raise UserError(f"{err}; remove or replace that file, or narrow --start/--end") from err
    print(
        f"wrote {out} (variable 'precip' (time, y, x)); train on it with "
        f"`earthcast fit radar --set data.root={out}` (README: Your own data)"
    )
    return 0


def _blames_input(err: OSError, frames: Path) -> bool:
    """Whether ``err`` is about the input frames under ``frames`` (a damaged or unreadable frame),
    not about writing the output. The importers' own failures name their frame in the message
    and carry no path; errors that carry paths are the input's only when the paths are in it."""
    paths = [p for p in (err.filename, err.filename2) if p is not None]
    if not paths:
        return True
    root = frames.resolve()
    return any(Path(p).resolve().is_relative_to(root) for p in paths)


def _add_radar_sources(commands) -> None:
    p = commands.add_parser(
        "import-radar-sources",
        help="every radar source under a folder → <out>/<source>.zarr, pooled to one pixel size",
        description="Import the composites of several services (found recursively under --path by "
        "their file names) into one folder, one store per source, for the radar_sources data set. "
        "Existing stores are kept unless --overwrite. Unset options keep the defaults of "
        "earthcast.data.radar_sources.import_radar_sources.",
    )
    p.add_argument("--path", required=True, type=Path, help="folder holding the services' files")
    p.add_argument("--out", required=True, type=Path, help="output folder (one <source>.zarr each)")
    p.add_argument(
        "--sources", help=f"comma-separated subset of {','.join(RADAR_SOURCE_NAMES)} (default all)"
    )
    p.add_argument("--pixel-km", type=float, help="target pixel size in km")
    p.add_argument("--transform", choices=RADAR_TRANSFORMS, help="value transform")
    p.add_argument("--threshold", type=float, help="dry below this rain rate, mm/h")
    p.add_argument("--overwrite", action="store_true", help="re-import existing stores")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_radar_sources)


def _run_radar_sources(args: argparse.Namespace) -> int:
    from earthcast.data.radar_sources import import_radar_sources

    if not args.path.exists():
        raise UserError(f"--path '{args.path}' not found")
    sources = [s.strip().lower() for s in args.sources.split(",")] if args.sources else None
    unknown = sorted(set(sources or ()) - set(RADAR_SOURCE_NAMES))
    if unknown:
        raise UserError(f"--sources: unknown {unknown}; valid: {', '.join(RADAR_SOURCE_NAMES)}")
    if args.pixel_km is not None and args.pixel_km <= 0:
        raise UserError(f"--pixel-km {args.pixel_km}: must be > 0")
    check_writable("--out", args.out)
    given = {"pixel_km": args.pixel_km, "transform": args.transform, "threshold": args.threshold}
    try:
        stores = import_radar_sources(
            args.path,
            args.out,
            sources,
            overwrite=args.overwrite,
            progress=not args.quiet,
            **{k: v for k, v in given.items() if v is not None},
        )
    except ImportError as err:
        raise UserError(f"{err}") from err
    print(
        f"stores under {args.out}: {', '.join(p.name for p in stores.values())}; train on them with "
        f"data.name=radar_sources, data.root={args.out}, data.options.test_source=<held-out source>"
    )
    return 0
