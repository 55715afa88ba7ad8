"""What a forecasting run measures on validation and test, per data set (SPEC §4).

========================  ===============================================  ======================
data set                  metrics (logged as ``val/<name>``, ``test/<name>``)  selection metric
========================  ===============================================  ======================
``sevir``, ``sevirlr``    ``csi@τ``, ``pod@τ``, ``sucr@τ``, ``bias@τ``,       ``csi_m`` (max)
                          ``hss@τ`` for the six VIL thresholds, ``csi_m``;
                          ``csi@τ_pool4/16``, ``csi_m_pool4/16`` (PreDiff);
                          ``mse``/``mae`` pixel means on the [0, 1] scale
``nbody``, ``moving_mnist`` ``mse``/``mae`` per-frame sums, ``ssim``        ``mse`` (min)
``enso``                  ``c_nino34_m``, ``c_nino34_wm``, ``nino_rmse``,      ``c_nino34_m`` (max)
                          ``mse`` (pixel mean, normalised SST)
``radar_sources``         ``csi``/``pod``/``sucr``/``bias`` at 1 and 5 mm/h:    ``csi@1mmh`` (max)
                          ``csi@1mmh_lead01`` … per lead (in frames),
                          ``csi@1mmh`` lead mean, ``events@1mmh``;
                          ``mse``/``mae`` pixel means (normalised units)
anything else             ``mse``/``mae`` pixel means                        ``mse`` (min)
========================  ===============================================  ======================

Ensemble forecasters (outputs ``(B, S, T, H, W, C)``) are scored through their mean as above and
also as ensembles (``ensemble_metrics``): ``crps`` (eCDF form, in the data's normalised units),
``spread_skill`` and ``spread_skill_corrected`` (the finite-ensemble correction).

The selection metric drives best-checkpoint selection and early stopping (SPEC §2.8). All
metrics are streaming ``torchmetrics`` objects, so their states are summed across DDP ranks
before ``compute``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from einops import reduce
from torch import Tensor
from torchmetrics import Metric

from earthcast.metrics import MAE, MSE, SSIM, EnsoScores, get_metric
from earthcast.metrics.categorical import POOL_SIZES, SEVIR_THRESHOLDS, ContingencyScores, scores_from_counts

ENSEMBLE_METRICS = ("crps", "spread_skill")
"""Names of the metrics that ``ensemble_metrics`` builds (fed the members, not their mean)."""


def ensemble_metrics() -> dict[str, Metric]:
    """Streaming scores of ensemble forecasts ``(B, S, T, H, W, C)`` against targets."""
    from earthcast.metrics.probabilistic import ensemble_skill_metrics

    return ensemble_skill_metrics()


@dataclass(frozen=True)
class Scoring:
    """Metric set of a data-set family.

    Attributes:
        selection: metric name (without the stage prefix) for checkpoints and early stopping.
        mode: ``"max"`` or ``"min"``: which direction of ``selection`` is better.
        build: ``contract -> {name: Metric}`` fresh metric objects for one stage.
    """

    selection: str
    mode: Literal["min", "max"]
    build: Callable[[dict[str, Any]], dict[str, Metric]]

    @staticmethod
    def update(metrics: dict[str, Metric], pred: Tensor, target: Tensor, batch: dict[str, Any]) -> None:
        """Feed one batch to every metric (ENSO also gets the provided Niño3.4 labels)."""
        for metric in metrics.values():
            if isinstance(metric, EnsoScores) and "nino_target" in batch:
                metric.update(pred, target, batch["nino_target"])
            else:
                metric.update(pred, target)

    @staticmethod
    def compute(metrics: dict[str, Metric]) -> dict[str, Tensor]:
        """Scalar results of every metric; dict-valued metrics are flattened, vectors dropped."""
        out: dict[str, Tensor] = {}
        for name, metric in metrics.items():
            value = metric.compute()
            items = value.items() if isinstance(value, dict) else [(name, value)]
            out.update({k: v.float() for k, v in items if v.ndim == 0})
        return out


def _sevir(contract: dict[str, Any]) -> dict[str, Metric]:
    thresholds = tuple(contract.get("thresholds") or SEVIR_THRESHOLDS)
    scale = float(contract.get("scale_factor") or 1.0)
    pooled = {
        f"csi_pool{size}": get_metric("sevir_csi_pool", pool_size=size, thresholds=thresholds, scale=scale)
        for size in POOL_SIZES
    }
    return {
        "csi": get_metric("sevir_csi", thresholds=thresholds, scale=scale),
        **pooled,
        "mse": MSE("pixel_mean"),
        "mae": MAE("pixel_mean"),
    }


def _digits(contract: dict[str, Any]) -> dict[str, Metric]:
    data_range = 1.0 if contract.get("scale") == "01" else 255.0
    # CSI at the SEVIR byte thresholds read as pixel intensities out of 255 (no missing-value code:
    # 255 is a real digit pixel) — a skill score that a blurry forecast cannot game
    csi = get_metric("contingency", thresholds=SEVIR_THRESHOLDS, scale=255.0 / data_range)
    return {"mse": MSE("frame_sum"), "mae": MAE("frame_sum"), "ssim": SSIM(data_range=data_range), "csi": csi}


def _enso(contract: dict[str, Any]) -> dict[str, Metric]:
    return {"enso": EnsoScores()}


class LeadContingency(ContingencyScores):
    """CSI / POD / SUCR / BIAS per lead time and lead-averaged, named by rain-rate labels.

    ``ContingencyScores`` in mode ``"1"`` (inputs already in threshold units, ``scale=1``) whose
    results are scalars ``{score}@{label}_lead{k:02d}`` (lead ``k`` = 1 … T_out, in frames) and
    ``{score}@{label}`` (the mean of the per-lead scores), plus ``events@{label}`` (observed event
    pixels over all leads, to judge how much the scores rest on).

    Args:
        thresholds: event thresholds in the units of the fields.
        labels: one name per threshold, e.g. ``"1mmh"``.
    """

    SCORES = ("csi", "pod", "sucr", "bias")

    def __init__(self, thresholds: Sequence[float], labels: Sequence[str], **kwargs: Any) -> None:
        super().__init__(thresholds, mode="1", scale=1.0, **kwargs)
        if len(labels) != len(self.thresholds):
            raise ValueError(f"LeadContingency: {len(labels)} labels for {len(self.thresholds)} thresholds")
        self.labels = tuple(labels)

    def compute(self) -> dict[str, Tensor]:
        scores = scores_from_counts(self.counts, self.eps)  # each (T, K)
        observed = reduce(self.counts[0] + self.counts[1], "t k -> k", "sum")  # hits + misses
        out: dict[str, Tensor] = {}
        for k, label in enumerate(self.labels):
            for name in self.SCORES:
                per_lead = scores[name][:, k]  # (T,)
                out[f"{name}@{label}"] = per_lead.mean()
                out.update({f"{name}@{label}_lead{t:02d}": v for t, v in enumerate(per_lead, start=1)})
            out[f"events@{label}"] = observed[k].double()
        return out


def rain_label(rate_mmh: float) -> str:
    """Key label of a rain-rate threshold: ``1.0`` → ``"1mmh"``, ``0.5`` → ``"0.5mmh"``."""
    return f"{rate_mmh:g}mmh"


def rain_thresholds(contract: dict[str, Any], rates_mmh: Sequence[float]) -> list[float]:
    """Rain rates (mm/h) → thresholds in the normalised units the model sees.

    Stored value ``v`` from the contract's ``transform`` (or its ``units``), ``precip_threshold``
    and ``zerovalue``; then ``x = (v − scale_offset) / scale_factor``. Every transform is increasing,
    so ``x >= x_τ`` exactly when the rain rate reaches ``τ``.
    """
    from earthcast.models.classical import scaling

    by_units = {units: name for name, units in scaling.UNITS.items()}
    transform = contract.get("transform") or by_units.get(str(contract.get("units")))
    if transform is None:
        raise ValueError(
            f"the data contract names no rain transform (transform={contract.get('transform')!r}, "
            f"units={contract.get('units')!r}); rain-rate thresholds need one of {sorted(scaling.UNITS)}"
        )
    floor = float(contract.get("precip_threshold") or 0.1)
    if min(rates_mmh) < floor:
        raise ValueError(f"event thresholds {list(rates_mmh)} mm/h lie below the dry threshold {floor} mm/h")
    stored = scaling.from_rainrate(
        np.asarray(rates_mmh, dtype=np.float64), transform, floor, contract.get("zerovalue")
    )
    factor, offset = float(contract.get("scale_factor") or 1.0), float(contract.get("scale_offset") or 0.0)
    return [float(x) for x in scaling.normalise(stored, factor, offset)]


def _radar_sources(contract: dict[str, Any]) -> dict[str, Metric]:
    from earthcast.data.radar_sources import EVENT_THRESHOLDS_MMH

    rates = tuple(contract.get("rain_thresholds_mmh") or EVENT_THRESHOLDS_MMH)
    labels = [rain_label(r) for r in rates]
    return {
        "rain": LeadContingency(rain_thresholds(contract, rates), labels),
        "mse": MSE("pixel_mean"),
        "mae": MAE("pixel_mean"),
    }


def _generic(contract: dict[str, Any]) -> dict[str, Metric]:
    return {"mse": MSE("pixel_mean"), "mae": MAE("pixel_mean")}


SCORINGS: dict[str, Scoring] = {
    "sevir": Scoring("csi_m", "max", _sevir),
    "sevirlr": Scoring("csi_m", "max", _sevir),
    "nbody": Scoring("mse", "min", _digits),
    "moving_mnist": Scoring("mse", "min", _digits),
    "enso": Scoring("c_nino34_m", "max", _enso),
    "radar_sources": Scoring("csi@1mmh", "max", _radar_sources),
}
GENERIC = Scoring("mse", "min", _generic)


def scoring_for(dataset: str) -> Scoring:
    """The metric set of data set ``dataset`` (generic MSE/MAE for unknown names)."""
    return SCORINGS.get(dataset.lower(), GENERIC)
