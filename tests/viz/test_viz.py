"""Colour maps with units, panel grids, GIFs and score plots (Agg, no display)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex

from earthcast.metrics.categorical import SEVIR_THRESHOLDS
from earthcast.viz.animate import animate_forecast
from earthcast.viz.colormaps import (
    RAIN_LEVELS_MM_H,
    VIL_LEVELS,
    colors_for,
    colors_for_contract,
    mask_missing,
    rain_colors,
    vil_colors,
)
from earthcast.viz.scores import plot_score_vs_lead
from earthcast.viz.sequences import PanelRow, forecast_rows, format_minutes, image_origin, plot_rows


def _colour(spec, value: float) -> str:
    return to_hex(spec.cmap(spec.norm(np.array([value])))[0])


def test_vil_levels_contain_the_sevir_thresholds():
    assert set(SEVIR_THRESHOLDS) <= set(VIL_LEVELS)


@pytest.mark.parametrize("scale, factor", [("255", 1.0), ("01", 255.0)])
def test_vil_map_bins_on_codes(scale: str, factor: float):
    spec = vil_colors(scale)
    assert spec.kind == "vil" and "kg m⁻²" in spec.label
    for low, high in itertools.pairwise(VIL_LEVELS):  # every code in a bin gets the bin's colour
        assert _colour(spec, low / factor) == _colour(spec, (high - 0.5) / factor)
    assert _colour(spec, 15 / factor) != _colour(spec, 16 / factor)  # first threshold is a boundary
    assert spec.ticklabels[VIL_LEVELS.index(74)] == "74 (0.78)"  # code and kg m⁻²
    assert to_hex(spec.cmap(np.ma.masked_invalid([np.nan]))[0]) == "#d0d0d0"  # missing is grey


def test_rain_map_log_levels_and_transforms():
    assert RAIN_LEVELS_MM_H[0] == 0.1 and RAIN_LEVELS_MM_H[-1] == 100.0
    ratios = np.diff(np.log10(RAIN_LEVELS_MM_H))
    np.testing.assert_allclose(ratios, 0.2, atol=0.02)  # five levels per decade
    mm = rain_colors("mm/h")
    dbr = rain_colors("dBR")
    for rate in (0.2, 3.0, 50.0):
        assert _colour(mm, rate) == _colour(dbr, 10 * np.log10(rate))
    assert _colour(mm, 0.05) == "#ffffff"  # dry


def test_colour_map_choice_from_units_and_contract():
    assert colors_for("1", variable="vil", dataset="sevir", scale="01").kind == "vil"
    assert colors_for("mm h-1").kind == "rain"
    assert colors_for("dBR").kind == "rain"
    spec = colors_for("K", variable="sst", data=np.array([-2.0, 3.0]))
    assert spec.kind == "continuous" and spec.label == "sst [K]" and spec.norm.vmax == 3.0
    assert colors_for_contract({"dataset": "sevirlr", "scale": "01"}).kind == "vil"
    assert colors_for("kg m-2", variable="vil").ticklabels[0] == "0"


def test_minutes_format():
    assert [format_minutes(m) for m in (-60, 0, 5, 240, 43200)] == [
        "−60 min",
        "0 min",
        "+5 min",
        "+4 h",
        "+30 d",
    ]


def test_panel_grid_and_gif(tmp_path: Path):
    rng = np.random.default_rng(0)
    context, truth, forecast = (rng.random((n, 8, 8), dtype=np.float32) for n in (3, 2, 2))
    rows = forecast_rows(forecast, truth, context, interval_minutes=10)
    assert [r.label for r in rows] == ["context", "truth", "forecast"]
    assert rows[0].minutes == (-20.0, -10.0, 0.0) and rows[2].minutes == (10.0, 20.0)
    fig = plot_rows(rows, vil_colors("01"), title="t", path=tmp_path / "grid.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "−20 min" in titles and "+20 min" in titles
    assert (tmp_path / "grid.png").stat().st_size > 1000
    frames = animate_forecast(forecast, tmp_path / "a.gif", truth, context, interval_minutes=10)
    assert frames == 5
    with pytest.raises(ValueError, match=r"\.gif"):
        animate_forecast(forecast, tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="one sequence"):
        forecast_rows(rng.random((2, 2, 8, 8, 3)))


def test_score_plot_needs_per_lead_scores(tmp_path: Path):
    per_lead = {"csi@16": [0.9, 0.8], "csi@74": [0.5, 0.4], "csi_m": [0.7, 0.6]}
    fig = plot_score_vs_lead({"a": per_lead}, tmp_path / "csi.png")
    assert len([ax for ax in fig.axes if ax.get_title()]) == 3
    with pytest.raises(ValueError, match="--mode 1"):
        plot_score_vs_lead({"a": {"csi@16": 0.9}})
    with pytest.raises(ValueError, match="extension"):
        plot_score_vs_lead({"a": per_lead}, tmp_path / "csi.bmp")


@pytest.mark.parametrize("scale, factor", [("255", 1.0), ("01", 255.0)])
def test_vil_top_label_is_the_last_valid_code_and_code_255_is_masked(scale: str, factor: float):
    spec = vil_colors(scale)
    assert spec.ticklabels[-1] == "254 (79)"  # the top of 219–254, not the missing code 255
    assert vil_colors("255", units="kg m-2").ticklabels[-1] == "79"
    observed = np.array([0.0, 219.0, 254.0, 255.0], dtype=np.float32) / factor
    masked = mask_missing(observed, spec)
    np.testing.assert_array_equal(np.isnan(masked), [False, False, False, True])
    assert to_hex(spec.cmap(spec.norm(np.ma.masked_invalid(masked)))[-1]) == "#d0d0d0"
    assert not np.isnan(mask_missing(observed, rain_colors())).any()  # only VIL has a missing code


def _north_band(height: int = 8) -> np.ndarray:
    """One frame stored south-first: row ``height − 1`` is the northern edge, set to 1."""
    frame = np.zeros((1, height, 6), dtype=np.float32)
    frame[0, -1] = 1.0
    return frame


def _top_and_bottom(fig) -> tuple[str, str]:
    """Colours drawn at the top and bottom edge of the first panel."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    box = fig.axes[0].get_window_extent()
    x = int((box.x0 + box.x1) / 2)
    rows = (rgba.shape[0] - int(box.y1) + 3, rgba.shape[0] - int(box.y0) - 3)  # image rows run down
    return tuple(to_hex(rgba[r, x, :3] / 255) for r in rows)


@pytest.mark.parametrize("row_order, north_at", [("south_first", 0), (None, 1), ("north_first", 1)])
def test_panels_put_north_on_top_for_south_first_grids(row_order: str | None, north_at: int):
    colors = vil_colors("01")
    rows = [PanelRow("forecast", _north_band(), (5.0,))]
    fig = plot_rows(rows, colors, origin=image_origin(row_order))
    assert fig.axes[0].images[0].origin == image_origin(row_order)
    north = to_hex(colors.cmap(colors.norm(np.array([1.0])))[0])
    assert _top_and_bottom(fig)[north_at] == north  # stored order is kept for north-first
    with pytest.raises(ValueError, match="origin"):
        plot_rows(rows, colors, origin="bottom")


def test_gif_takes_the_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from matplotlib.axes import Axes

    images = []
    original = Axes.imshow

    def spy(self, *args, **kwargs):
        images.append(original(self, *args, **kwargs))
        return images[-1]

    monkeypatch.setattr(Axes, "imshow", spy)
    frames = np.concatenate([_north_band()] * 2)
    animate_forecast(frames, tmp_path / "a.gif", frames, origin="lower")
    assert [image.origin for image in images] == ["lower", "lower"]
