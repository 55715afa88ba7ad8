"""The learned baselines of the Earthformer/PreDiff tables and their named presets.

Each baseline lives in its own module (``unet.py``, ``convlstm.py``, …) that defines the model
class (a :class:`~earthcast.models.baselines._base.BaselineForecaster`) and ``PRESETS``, a dict
with the same four keys for every model:

- ``sevir``: sized like the seed's SEVIR table (parameters counted at 13 → 12, 384×384, 1 channel);
- ``enso``: sized like the seed's ICAR-ENSO table (12 → 14 months, 24×48, 1 channel);
- ``small``: a CPU-sized model for the reduced N-body benchmark (``earthcast benchmark``);
- ``tiny``: toy sizes for tests.

The registry (``earthcast.models``) exposes them as ``<model>_<preset>``, e.g. ``unet_sevir`` or
``predrnn_tiny``; the shape fields are filled from the data contract when trained. Adding a
baseline = a module with a class and ``PRESETS`` + one line in :data:`BASELINES`.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

#: model key → ``module:Class`` (imported only when the model is built, to keep the CLI fast).
BASELINES: dict[str, str] = {
    "unet": "earthcast.models.baselines.unet:UNet",
    "convlstm": "earthcast.models.baselines.convlstm:ConvLSTM",
    "predrnn": "earthcast.models.baselines.predrnn:PredRNN",
    "phydnet": "earthcast.models.baselines.phydnet:PhyDNet",
    "e3d_lstm": "earthcast.models.baselines.e3d_lstm:E3DLSTM",
    "rainformer": "earthcast.models.baselines.rainformer:Rainformer",
}

PRESET_NAMES: tuple[str, ...] = ("sevir", "enso", "small", "tiny")

#: Parameters (millions) in the seed's tables, which the ``sevir`` / ``enso`` presets match.
PAPER_PARAMS_M: dict[str, dict[str, float]] = {
    "sevir": {
        "unet": 16.6,
        "convlstm": 14.0,
        "predrnn": 46.6,
        "phydnet": 13.7,
        "e3d_lstm": 35.6,
        "rainformer": 184.0,
    },
    "enso": {
        "unet": 12.1,
        "convlstm": 14.0,
        "predrnn": 23.8,
        "phydnet": 3.1,
        "e3d_lstm": 12.9,
        "rainformer": 19.2,
    },
}


def baseline_class(key: str) -> type[nn.Module]:
    """The model class registered under ``key`` (imports its module)."""
    module_name, class_name = BASELINES[key].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_baseline(key: str, preset: str, **overrides: Any) -> nn.Module:
    """``<key>_<preset>`` with config ``overrides`` applied."""
    cls = baseline_class(key)
    presets: dict[str, dict[str, Any]] = importlib.import_module(cls.__module__).PRESETS
    if preset not in presets:
        raise ValueError(f"model '{key}' has no preset '{preset}'; presets: {', '.join(sorted(presets))}")
    config = cls.config_class().replace(**presets[preset])
    return cls(config, **overrides)
