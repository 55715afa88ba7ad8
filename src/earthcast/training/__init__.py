"""Training with PyTorch Lightning: systems, optimisation, configs, checkpoints, ``fit``/``evaluate``.

Public entry points:

* ``load_config(name_or_path, overrides)`` → :class:`ExperimentConfig` (packaged configs:
  ``list_configs()``);
* ``fit(config, resume=None | "auto" | path)`` → :class:`FitResult`;
* ``evaluate(ckpt_or_model_name, config)`` → test metrics;
* ``load_forecaster(path)`` → ``(network, data_contract)`` for inference without Lightning;
  ``load_prediff(path)`` → ``(PreDiff, data_contract)`` for a diffusion-stage checkpoint.
"""

import importlib
from typing import Any

# Exports resolve lazily (PEP 562): importing ``earthcast.training.config`` (e.g. for ``--help``)
# must not pay for importing Lightning.
_EXPORTS = {
    "load_forecaster": "checkpoint",
    "load_prediff": "diffusion_module",
    "DataConfig": "config",
    "ExperimentConfig": "config",
    "OptimConfig": "config",
    "TrainerConfig": "config",
    "list_configs": "config",
    "load_config": "config",
    "ForecastSystem": "forecast_module",
    "FitResult": "runner",
    "evaluate": "runner",
    "fit": "runner",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'earthcast.training' has no attribute '{name}'")
    return getattr(importlib.import_module(f"earthcast.training.{_EXPORTS[name]}"), name)
