"""What a forecasting run measures on validation and test, per data set (SPEC §4).

========================  ===============================================  ======================
data set                  metrics (logged as ``val/<name>``, ``test/<name>``)  selection metric
========================  ===============================================  ======================
``sevir``, ``sevirlr``    ``csi@τ``, ``pod@τ``, ``sucr@τ``, ``bias@τ``,       ``csi_m`` (max)
                          ``hss@τ`` for the six VIL thresholds, ``csi_m``;
                          ``mse``/``mae`` pixel means on the [0, 1] scale
``nbody``, ``moving_mnist`` ``mse``/``mae`` per-frame sums, ``ssim``        ``mse`` (min)
``enso``                  ``c_nino34_m``, ``c_nino34_wm``, ``nino_rmse``,      ``c_nino34_m`` (max)
                          ``mse`` (pixel mean, normalised SST)
anything else             ``mse``/``mae`` pixel means                        ``mse`` (min)
========================  ===============================================  ======================

The selection metric drives best-checkpoint selection and early stopping (SPEC §2.8). All
metrics are streaming ``torchmetrics`` objects, so their states are summed across DDP ranks
before ``compute``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor
from torchmetrics import Metric

from earthcast.metrics import MAE, MSE, SSIM, EnsoScores, get_metric
from earthcast.metrics.categorical import SEVIR_THRESHOLDS


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
    return {
        "csi": get_metric("sevir_csi", thresholds=thresholds, scale=scale),
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


def _generic(contract: dict[str, Any]) -> dict[str, Metric]:
    return {"mse": MSE("pixel_mean"), "mae": MAE("pixel_mean")}


SCORINGS: dict[str, Scoring] = {
    "sevir": Scoring("csi_m", "max", _sevir),
    "sevirlr": Scoring("csi_m", "max", _sevir),
    "nbody": Scoring("mse", "min", _digits),
    "moving_mnist": Scoring("mse", "min", _digits),
    "enso": Scoring("c_nino34_m", "max", _enso),
}
GENERIC = Scoring("mse", "min", _generic)


def scoring_for(dataset: str) -> Scoring:
    """The metric set of data set ``dataset`` (generic MSE/MAE for unknown names)."""
    return SCORINGS.get(dataset.lower(), GENERIC)
