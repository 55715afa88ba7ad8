"""Colour maps with units: SEVIR VIL, rain rate, and a plain fallback, chosen from the data contract.

Every map comes as a ``ColorSpec``: colour map, norm, colour-bar label *with units*, ticks and
tick labels, so a figure never shows an unlabelled grey ramp (PEERS §2, theme 10).

* **VIL** (``vil_colors``): discrete levels on the SEVIR VIL code
  ``0/16/31/59/74/100/133/160/181/219/255``. The levels are those of the SEVIR tutorial's
  ``vil_cmap`` (github MIT-AI-Accelerator/eie-sevir, ``examples/SEVIR_Tutorial.ipynb``) and
  contain the six benchmark thresholds (SPEC §3.1, §4.1). The colours are our own, in the style
  of the NOAA/NWS WSR-88D VIL product legend (NWS Radar Operations Center): black background,
  greys for traces, greens for light, yellow → orange → red for heavy and magenta for extreme
  VIL. Tick labels give the code and its value in kg m⁻² (``vil_to_kg_m2``). The top boundary
  closes the extreme category 219–254, so it is labelled with the largest valid code, 254
  (79 kg m⁻²): code 255 marks *missing* pixels, not a VIL value. ``mask_missing`` turns
  code-255 observations into NaN, drawn light grey.
* **Rain rate** (``rain_colors``): log-spaced levels 0.1 … 100 mm/h (five per decade, rounded
  like the pysteps ``"pysteps"`` / ``"STEPS-BE"`` intensity scales of
  ``pysteps.visualization.precipfields``), pale blue → green → yellow → red → magenta; dry
  pixels (< 0.1 mm/h) are white. The same levels are used for ``dBR`` and ``log(1 + mm/h)``
  data, transformed.
* **Anomalies** (``anomaly_colors``): blue–red, symmetric about zero (e.g. SST anomaly in K).
* **Fallback** (``continuous_colors``): viridis between the data's finite extremes.

``colors_for(units, variable=, dataset=, scale=, data=)`` picks one; ``colors_for_contract``
reads those fields from a checkpoint's data contract. Missing pixels (NaN, and observed VIL code
255 after ``mask_missing``) are drawn light grey.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.colors import BoundaryNorm, Colormap, ListedColormap, Normalize

from earthcast.data.sevir.constants import VIL_MAX_VALID, VIL_MISSING, VIL_SCALE

__all__ = [
    "RAIN_LEVELS_MM_H",
    "VIL_LEVELS",
    "ColorSpec",
    "anomaly_colors",
    "colors_for",
    "colors_for_contract",
    "continuous_colors",
    "mask_missing",
    "rain_colors",
    "vil_colors",
]

MISSING_COLOR = "#d0d0d0"

VIL_LEVELS: tuple[int, ...] = (0, 16, 31, 59, 74, 100, 133, 160, 181, 219, 255)
"""Level boundaries on the SEVIR VIL code (SEVIR tutorial ``vil_cmap``)."""
_VIL_COLORS = (
    "#0a0a0a",  # 0–15: no echo / trace
    "#5c5c5c",  # 16–30
    "#3cc83c",  # 31–58: light
    "#229b22",  # 59–73
    "#127012",  # 74–99: moderate
    "#0a4a0a",  # 100–132
    "#f5e61e",  # 133–159: heavy
    "#f59b00",  # 160–180
    "#d21e00",  # 181–218: very heavy
    "#e600ff",  # 219–254: extreme
)

RAIN_LEVELS_MM_H: tuple[float, ...] = (
    0.1, 0.16, 0.25, 0.4, 0.63, 1.0, 1.6, 2.5, 4.0, 6.3, 10.0, 16.0, 25.0, 40.0, 63.0, 100.0,
)  # fmt: skip
"""Rain-rate level boundaries in mm/h: 10^(k/5) for k = −5 … 10, rounded (pysteps-style)."""
_RAIN_COLORS = (
    "#cfe8ff", "#9ccbff", "#63a4f2", "#2f6fe0", "#1a4bb0",  # 0.1–1 mm/h: drizzle, light
    "#1fb45a", "#0d8a3a", "#8fd11a", "#e8e619", "#f5bf0c",  # 1–10 mm/h: moderate
    "#f5870c", "#e8470c", "#c4120c", "#a0006e", "#d22dd2",  # 10–100 mm/h: heavy, extreme
)  # fmt: skip

_RAIN_UNITS = {"mm/h", "mm h-1", "mm hr-1", "mm/hr", "mm h**-1", "mm.h-1"}
_VIL_DATASETS = {"sevir", "sevirlr", "sevir_lr", "sevir-lr"}


@dataclass(frozen=True)
class ColorSpec:
    """Everything needed to draw one field and its colour bar.

    Attributes:
        cmap: the colour map (``set_bad`` = light grey for missing pixels).
        norm: maps data values to ``[0, 1]``.
        label: colour-bar label, including units.
        ticks: colour-bar tick positions in data units (None = automatic).
        ticklabels: labels for ``ticks`` (None = the numbers).
        extend: colour-bar ``extend`` argument (``"neither"``, ``"min"``, ``"max"``, ``"both"``).
        kind: ``"vil"``, ``"rain"``, ``"anomaly"`` or ``"continuous"``.
        missing_from: values at or above this encode a missing observation (SEVIR VIL code 255,
            in the data's scale); ``mask_missing`` hides them. None: no such code.
    """

    cmap: Colormap
    norm: Normalize
    label: str
    ticks: tuple[float, ...] | None = None
    ticklabels: tuple[str, ...] | None = None
    extend: str = "neither"
    kind: str = "continuous"
    missing_from: float | None = None


def _vil_code_to_kg_m2(code: float) -> float:
    """SEVIR decoding (SPEC §3.1) without the missing-value rule, so code 255 still has a value."""
    if code <= 5:
        return 0.0
    if code <= 18:
        return (code - 2.0) / 90.66
    return float(np.exp((code - 83.9) / 38.9))


def vil_colors(scale: str = "01", units: str | None = None) -> ColorSpec:
    """SEVIR VIL colour map on data in ``scale`` ``"01"`` (code / 255), ``"255"``/``"raw"`` (code)
    or physical ``units="kg m-2"``."""
    cmap = ListedColormap(_VIL_COLORS, name="sevir_vil").with_extremes(
        bad=MISSING_COLOR, over=_VIL_COLORS[-1], under=_VIL_COLORS[0]
    )
    kg = tuple(_vil_code_to_kg_m2(c) for c in VIL_LEVELS)
    compact = (units or "").replace(" ", "").replace("**", "").replace("^", "").lower()
    codes = _vil_tick_codes()
    if compact in ("kgm-2", "kg/m2"):
        bounds = kg
        labels = tuple(f"{_vil_code_to_kg_m2(c):.2g}" for c in codes)
        label = "VIL (kg m⁻²)"
        missing_from = None  # decoded data hold missing pixels as NaN already
    else:
        factor = VIL_SCALE if str(scale) == "01" else 1.0
        bounds = tuple(c / factor for c in VIL_LEVELS)
        labels = tuple(f"{c} ({_vil_code_to_kg_m2(c):.2g})" for c in codes)
        label = "VIL: SEVIR code (kg m⁻²)" + (", data = code / 255" if factor != 1.0 else "")
        missing_from = (VIL_MAX_VALID + 0.5) / factor
    norm = BoundaryNorm(bounds, cmap.N, extend="neither")
    return ColorSpec(cmap, norm, label, bounds, labels, extend="max", kind="vil", missing_from=missing_from)


def _vil_tick_codes() -> tuple[int, ...]:
    """The code each colour-bar boundary is labelled with: a level's first code, except the top
    boundary, which closes the extreme category and is labelled with its last valid code (254)
    rather than the missing-data code 255 it sits on."""
    return tuple(VIL_MAX_VALID if code == VIL_MISSING else code for code in VIL_LEVELS)


def mask_missing(values: np.ndarray, colors: ColorSpec) -> np.ndarray:
    """``values`` with the missing-data code of ``colors`` (VIL 255) replaced by NaN.

    Observations (truth, context) keep the missing code in raw or ``missing="keep"`` data; drawn
    as values they would take the top, "extreme" colour. Forecasts are model output, not codes,
    so callers apply this to observations only.
    """
    values = np.asarray(values, dtype=np.float32)
    if colors.missing_from is None:
        return values
    return np.where(values >= colors.missing_from, np.float32(np.nan), values)


def rain_colors(units: str = "mm/h") -> ColorSpec:
    """Rain-rate colour map for data in ``"mm/h"``, ``"dBR"`` (10·log10 R) or ``"log(1 + mm/h)"``.

    Values below 0.1 mm/h (e.g. the −15 dBR dry floor of ``import_radar``) are drawn white.
    """
    levels = np.asarray(RAIN_LEVELS_MM_H)
    unit = units.strip()
    if unit.lower() == "dbr":
        bounds = 10.0 * np.log10(levels)
        label = "rain rate (dBR = 10·log10 mm/h); ticks in mm/h"
    elif unit.lower().startswith("log(1"):
        bounds = np.log1p(levels)
        label = "rain rate (log(1 + mm/h)); ticks in mm/h"
    else:
        bounds = levels
        label = "rain rate (mm/h)"
    cmap = ListedColormap(_RAIN_COLORS, name="rain_rate").with_extremes(
        bad=MISSING_COLOR, over=_RAIN_COLORS[-1], under="#ffffff"
    )
    norm = BoundaryNorm(bounds, cmap.N, extend="neither")
    shown = (0, 5, 8, 10, 13, 15)  # 0.1, 1, 4, 10, 40, 100 mm/h
    ticks = tuple(float(bounds[i]) for i in shown)
    ticklabels = tuple(f"{levels[i]:g}" for i in shown)
    return ColorSpec(cmap, norm, label, ticks, ticklabels, extend="both", kind="rain")


def _finite_range(data: np.ndarray | None) -> tuple[float, float]:
    if data is None:
        return 0.0, 1.0
    finite = np.asarray(data, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return 0.0, 1.0
    vmin, vmax = float(finite.min()), float(finite.max())
    return (vmin, vmax) if vmax > vmin else (vmin, vmin + 1.0)


def continuous_colors(
    data: np.ndarray | None = None, units: str | None = None, variable: str | None = None
) -> ColorSpec:
    """Viridis between the finite extremes of ``data`` (``[0, 1]`` when no data is given)."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad=MISSING_COLOR)
    name = variable or "value"
    label = f"{name} [{units}]" if units else name
    return ColorSpec(cmap, Normalize(*_finite_range(data)), label, kind="continuous")


def anomaly_colors(
    data: np.ndarray | None = None, units: str | None = None, variable: str | None = None
) -> ColorSpec:
    """Diverging blue–red map symmetric about zero, for anomalies (e.g. SST anomaly in K)."""
    from matplotlib import colormaps

    vmin, vmax = _finite_range(data)
    limit = max(abs(vmin), abs(vmax)) or 1.0
    cmap = colormaps["RdBu_r"].with_extremes(bad=MISSING_COLOR)
    name = variable or "anomaly"
    label = f"{name} [{units}]" if units else name
    return ColorSpec(cmap, Normalize(-limit, limit), label, extend="neither", kind="anomaly")


def _is_vil(units: str, variable: str, dataset: str) -> bool:
    return dataset.lower() in _VIL_DATASETS or "vil" in variable.lower() or "vil" in units.lower()


def colors_for(
    units: str | None = None,
    *,
    variable: str | None = None,
    dataset: str | None = None,
    scale: str | None = None,
    data: np.ndarray | None = None,
) -> ColorSpec:
    """Choose a colour map from what is known about the data.

    Rules: a SEVIR dataset or a variable/units mentioning VIL → ``vil_colors(scale)`` (scale
    ``"01"`` unless ``"255"``/``"raw"`` is given); rain-rate units (mm/h, dBR, log(1 + mm/h)) →
    ``rain_colors``; anomalies (``"anomaly"`` in the units or name) → ``anomaly_colors``;
    anything else → ``continuous_colors(data)``.
    """
    units_s, variable_s, dataset_s = units or "", variable or "", dataset or ""
    if _is_vil(units_s, variable_s, dataset_s):
        return vil_colors("255" if str(scale) in ("255", "raw") else "01", units=units)
    unit = units_s.strip().lower()
    if unit in _RAIN_UNITS or unit == "dbr" or unit.startswith("log(1 + mm/h"):
        return rain_colors(units_s)
    if "anomaly" in unit or "anomaly" in variable_s.lower():
        return anomaly_colors(data, units, variable)
    return continuous_colors(data, units, variable)


def colors_for_contract(contract: Mapping[str, Any], data: np.ndarray | None = None) -> ColorSpec:
    """``colors_for`` with ``units``, ``variable``, ``dataset`` and ``scale`` from a data contract."""
    return colors_for(
        contract.get("units"),
        variable=contract.get("variable"),
        dataset=contract.get("dataset"),
        scale=contract.get("scale"),
        data=data,
    )
