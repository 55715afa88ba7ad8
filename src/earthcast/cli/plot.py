"""``earthcast plot`` — forecast panels / GIF from a forecast NetCDF, or CSI-vs-lead from score JSONs.

Forecast mode reads a file written by ``earthcast predict``. Values are converted to physical
units with the file's ``physical_scale_factor``/``physical_add_offset`` (e.g. VIL code / 255 →
code), and the colour map is chosen from the units: SEVIR VIL code → the VIL map, mm/h (dBR,
log(1 + mm/h)) → the rain-rate map, anything else → viridis. ``--target``/``--context`` are the
files aligned with predict's ``--input`` (same sample numbering, same scale as the model).

Observed VIL pixels holding the missing-data code 255 (``--target`` and ``--context``) are drawn
light grey, like NaN, not in the "extreme" colour. Maps are drawn north up: grids stored
south-first (the forecast's ``y`` coordinate or data contract says ``row_order`` =
``"south_first"``, e.g. ENSO, or a latitude coordinate that grows with the row index) are drawn
with row 0 at the bottom; other grids as stored, row 0 at the top.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from earthcast.cli import UserError

if TYPE_CHECKING:
    from earthcast.viz.colormaps import ColorSpec


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plot",
        help="draw forecast panels / a GIF from a forecast NetCDF, or CSI vs lead time from score JSONs",
        description="Forecast mode: rows context / truth / forecast, one column per frame, lead times in "
        "minutes and a colour bar with units (PNG), plus an optional GIF of truth vs forecast. Scores mode: "
        "CSI (or --metric) against lead time, one panel per threshold, one line per JSON "
        "(from `earthcast score --mode 1`).",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--forecast", type=Path, help="forecast NetCDF written by `earthcast predict`")
    source.add_argument(
        "--scores", type=Path, nargs="+", help="score JSON files (`earthcast score --mode 1`)"
    )
    p.add_argument("--out", required=True, type=Path, help="figure to write (.png, .pdf or .svg)")
    p.add_argument("--target", type=Path, help="observed targets aligned with predict's --input")
    p.add_argument("--context", type=Path, help="contexts: predict's --input")
    p.add_argument("--gif", type=Path, help="also write a GIF of truth vs forecast")
    p.add_argument("--sample", type=int, default=0, help="position of the sample in the forecast file")
    p.add_argument(
        "--member",
        type=int,
        help="ensemble member shown beside the ensemble mean (default 0; ensembles only)",
    )
    p.add_argument("--channel", type=int, default=0, help="channel to show when there are several")
    p.add_argument("--var", help="forecast variable (default: the forecast written by predict)")
    p.add_argument("--target-var", help="variable of a NetCDF/Zarr --target")
    p.add_argument("--context-var", help="variable of a NetCDF/Zarr --context")
    p.add_argument("--fps", type=float, default=2.0, help="GIF frames per second (default 2)")
    p.add_argument("--labels", nargs="+", help="legend labels of the --scores files (default: file names)")
    p.add_argument("--metric", default="csi", choices=("csi", "pod", "sucr", "bias", "hss"))
    p.add_argument(
        "--interval-minutes", type=float, default=5.0, help="minutes between lead times (--scores; default 5)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from earthcast.viz._figure import image_format

    image_format(args.out)  # fail on a bad extension before any work
    if args.scores is not None:
        return _plot_scores(args)
    if args.gif is not None and args.gif.suffix.lower() != ".gif":
        raise UserError(f"--gif '{args.gif}' must end in .gif")
    return _plot_forecast(args)


# ----------------------------------------------------------------------------------- scores


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"score file '{path}' not found")
    try:
        scores = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"'{path}' is not valid JSON ({err}); write it with `earthcast score --out`") from err
    if not isinstance(scores, dict):
        raise UserError(
            f"'{path}' holds a JSON {type(scores).__name__}, not the object `earthcast score` writes"
        )
    return scores


def _plot_scores(args: argparse.Namespace) -> int:
    from earthcast.viz.scores import plot_score_vs_lead

    labels = args.labels or [p.stem for p in args.scores]
    if len(labels) != len(args.scores):
        raise UserError(f"--labels gives {len(labels)} names for {len(args.scores)} --scores files")
    if len(set(labels)) != len(labels):
        labels = [f"{label} ({i + 1})" for i, label in enumerate(labels)]
    scores = {label: _read_json(path) for label, path in zip(labels, args.scores)}
    plot_score_vs_lead(scores, args.out, metric=args.metric, interval_minutes=args.interval_minutes)
    print(f"wrote {args.out} ({args.metric.upper()} vs lead time for {', '.join(labels)})")
    return 0


# --------------------------------------------------------------------------------- forecast


def _open_forecast(path: Path):
    import xarray as xr

    if not path.is_file():
        raise FileNotFoundError(f"forecast file '{path}' not found; write it with `earthcast predict`")
    if path.suffix.lower() not in (".nc", ".nc4"):
        raise UserError(f"--forecast '{path}' must be a NetCDF file (.nc) written by `earthcast predict`")
    try:
        return xr.open_dataset(path)
    except Exception as err:  # netCDF4/h5netcdf raise many types for damaged files
        raise UserError(f"cannot read '{path}' as NetCDF ({err}); is the file complete?") from err


def _forecast_variable(ds, name: str | None, path: Path) -> str:
    if name is not None:
        if name not in ds.data_vars:
            raise UserError(f"'{path}' has no variable '{name}'; it has {', '.join(map(str, ds.data_vars))}")
        return name
    for var in ds.data_vars:
        dims = ds[var].dims
        if dims and dims[0] == "sample" and "lead_time" in dims and "threshold" not in dims:
            return str(var)
    raise UserError(
        f"'{path}' holds no (sample, lead_time, y, x) forecast variable; was it written by predict?"
    )


def _select(da, args: argparse.Namespace, what: str):
    """One sample (and channel) of a forecast variable → ``(T, H, W)`` or ``(S, T, H, W)``."""
    if not 0 <= args.sample < da.sizes["sample"]:
        raise UserError(f"--sample {args.sample} is outside the forecast's {da.sizes['sample']} samples")
    da = da.isel(sample=args.sample)
    if "channel" in da.dims:
        if not 0 <= args.channel < da.sizes["channel"]:
            raise UserError(
                f"--channel {args.channel} is outside the {da.sizes['channel']} channels of {what}"
            )
        da = da.isel(channel=args.channel)
    return np.asarray(da.values, dtype=np.float32)


def _observed(
    path: Path | None, variable: str | None, index: int, args, what: str, channels: int
) -> np.ndarray | None:
    """Sample ``index`` of a --target/--context file as ``(T, H, W)`` in the model's scale;
    ``channels``: how many the file must hold (a file of other channels would be drawn as if it
    showed the forecast's variable)."""
    if path is None:
        return None
    from earthcast.io.arrays import read_samples

    hint = f"The forecast's sample {index} is row {index} of predict's --input; pass the aligned file"
    with read_samples(path, variable, start=index, count=1, what=what, hint=hint) as samples:
        values = samples.values[0]
    held = values.shape[-1] if values.ndim == 4 else 1
    if held != channels:
        raise UserError(
            f"{what} '{path}' holds {held} channel(s) per frame but the model's {what} has {channels}; "
            f"pass the {what} in the model's layout (all channels, channel axis last)"
        )
    if values.ndim == 4:
        values = values[..., args.channel]
    if values.ndim != 3:
        raise UserError(f"{what} '{path}' samples have shape {values.shape}; expected (T, H, W[, C])")
    return np.asarray(values, dtype=np.float32)


def _physical(da, channel: int = 0) -> tuple[float, float, str | None]:
    """``(factor, offset, units)`` of the plotted channel: per channel coordinates (a normalised
    multi-variable store) or the variable's attributes."""
    if "physical_scale_factor" in da.coords and "channel" in da.dims:
        row = da.coords.to_dataset().isel(channel=min(channel, da.sizes["channel"] - 1))
        units = str(row["physical_units"].values) if "physical_units" in row else None
        return float(row["physical_scale_factor"]), float(row["physical_add_offset"]), units
    attrs = da.attrs
    factor = float(attrs.get("physical_scale_factor", 1.0))
    offset = float(attrs.get("physical_add_offset", 0.0))
    return factor, offset, attrs.get("physical_units", attrs.get("units"))


def _origin(ds, contract: dict[str, Any]) -> str:
    """``imshow`` origin that puts north at the top: the ``y`` coordinate describes these very rows
    (the input's latitudes, or ``row_order`` written by predict), the contract the training data."""
    from earthcast.io.forecast import contract_row_order, row_order
    from earthcast.viz.sequences import image_origin

    order = row_order(ds["y"].values, ds["y"].attrs, "y") if "y" in ds.coords else None
    return image_origin(order or contract_row_order(contract))


def _hide_missing(colors: ColorSpec, *observed: np.ndarray | None) -> list[np.ndarray | None]:
    """Observations with the missing-data code (VIL 255) as NaN, so they are drawn grey."""
    from earthcast.viz.colormaps import mask_missing

    return [None if a is None else mask_missing(a, colors) for a in observed]


def _plot_forecast(args: argparse.Namespace) -> int:
    from earthcast.viz.animate import animate_forecast
    from earthcast.viz.colormaps import colors_for
    from earthcast.viz.sequences import PanelRow, forecast_rows, lead_minutes, plot_rows

    with _open_forecast(args.forecast) as ds:
        name = _forecast_variable(ds, args.var, args.forecast)
        da = ds[name]
        contract = json.loads(ds.attrs.get("data_contract", "{}"))
        factor, offset, units = _physical(da, args.channel)
        channels = int(da.sizes.get("channel", 1))
        values = _select(da, args, "the forecast") * factor + offset  # ([s,] t, h, w)
        index = int(ds["sample"].values[args.sample])
        mean_name = f"{name}_ensemble_mean"
        mean = _select(ds[mean_name], args, mean_name) * factor + offset if mean_name in ds else None
        lead = np.asarray(ds["lead_time"].values, dtype=np.float64)
        clock = ds["lead_time"].attrs.get("units") == "minutes"
        model = ds.attrs.get("model", "forecast")
        when = f", {np.datetime_as_string(ds['time'].values[args.sample], unit='m')}" if "time" in ds else ""
        origin = _origin(ds, contract)
    interval = contract.get("frame_interval_minutes") or (lead[0] if clock and lead.size else None)
    out_channels = int(contract.get("channels_out") or channels)
    in_channels = int(contract.get("channels_in") or out_channels)
    truth = _observed(args.target, args.target_var, index, args, "target", out_channels)
    context = _observed(args.context, args.context_var, index, args, "context", in_channels)
    truth, context = (None if a is None else a * factor + offset for a in (truth, context))
    ensemble = values.ndim == 4
    if not ensemble and args.member is not None:
        raise UserError("--member selects an ensemble member, but this forecast is deterministic")
    if ensemble:
        args.member = 0 if args.member is None else args.member
        if not 0 <= args.member < values.shape[0]:
            raise UserError(f"--member {args.member} is outside the {values.shape[0]} ensemble members")
        member, values = values[args.member], (values.mean(axis=0) if mean is None else mean)
    _check_frames(values, truth, "target")
    # values are physical now: VIL as SEVIR codes, so the VIL map is drawn on the byte scale
    # the colour range covers every row drawn (truth, context, members), not the forecast alone
    drawn = [a for a in (values, truth, context, member if ensemble else None) if a is not None]
    every = np.concatenate([a.ravel() for a in drawn])
    colors = colors_for(units, variable=name, dataset=contract.get("dataset"), scale="255", data=every)
    truth, context = _hide_missing(colors, truth, context)
    label = "ensemble mean" if ensemble else "forecast"
    rows = forecast_rows(values, truth, context, interval_minutes=interval, forecast_label=label)
    if ensemble:
        rows.append(PanelRow(f"member {args.member}", member, lead_minutes(len(member), interval), clock))
    title = f"{model}: sample {index}{when}"
    plot_rows(rows, colors, title=title, path=args.out, origin=origin)
    message = f"wrote {args.out} (rows: {', '.join(r.label for r in rows)}; colour bar: {colors.label})"
    if args.gif is not None:
        frames = animate_forecast(
            values,
            args.gif,
            truth,
            context,
            interval_minutes=interval,
            colors=colors,
            fps=args.fps,
            title=title,
            origin=origin,
        )
        message += f" and {args.gif} ({frames} frames)"
    print(message)
    return 0


def _check_frames(forecast: np.ndarray, truth: np.ndarray | None, what: str) -> None:
    if truth is not None and truth.shape[0] != forecast.shape[0]:
        raise UserError(
            f"{what} has {truth.shape[0]} frames per sample but the forecast {forecast.shape[0]} lead "
            "times; pass the targets aligned with the forecast (one frame per lead time)"
        )
    if truth is not None and truth.shape[1:] != forecast.shape[1:]:
        raise UserError(
            f"{what} frames are {truth.shape[1]}×{truth.shape[2]} but the forecast's are "
            f"{forecast.shape[1]}×{forecast.shape[2]}; pass the targets of the same grid"
        )
