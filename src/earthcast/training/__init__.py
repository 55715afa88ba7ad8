"""Training with PyTorch Lightning: systems, optimisation, configs, checkpoints, ``fit``/``evaluate``.

Public entry points:

* ``load_config(name_or_path, overrides)`` → :class:`ExperimentConfig` (packaged configs:
  ``list_configs()``);
* ``fit(config, resume=None | "auto" | path)`` → :class:`FitResult`;
* ``evaluate(ckpt_or_model_name, config)`` → test metrics;
* ``load_forecaster(path)`` → ``(network, data_contract)`` for inference without Lightning.
"""

from earthcast.training.checkpoint import load_forecaster as load_forecaster
from earthcast.training.config import DataConfig as DataConfig
from earthcast.training.config import ExperimentConfig as ExperimentConfig
from earthcast.training.config import OptimConfig as OptimConfig
from earthcast.training.config import TrainerConfig as TrainerConfig
from earthcast.training.config import list_configs as list_configs
from earthcast.training.config import load_config as load_config
from earthcast.training.forecast_module import ForecastSystem as ForecastSystem
from earthcast.training.runner import FitResult as FitResult
from earthcast.training.runner import evaluate as evaluate
from earthcast.training.runner import fit as fit
