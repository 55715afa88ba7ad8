"""Every packaged experiment config trains for two steps on CPU and writes a usable checkpoint."""

from __future__ import annotations

import pytest
import torch

from earthcast.data.specs import CONTRACT_KEYS
from earthcast.training import evaluate, fit, list_configs, load_config, load_forecaster
from earthcast.training.checkpoint import read_checkpoint
from tests.training.conftest import TINY, tiny_overrides


def test_every_packaged_config_has_a_tiny_version():
    forecasting = [name for name in list_configs() if load_config(name).task == "forecast"]
    assert sorted(TINY) == forecasting


@pytest.mark.parametrize("name", sorted(TINY))
def test_packaged_config_fits_on_cpu(name, tmp_path):
    config = load_config(name, tiny_overrides(name, tmp_path))
    result = fit(config)

    assert result.last_ckpt is not None and result.last_ckpt.is_file()
    assert result.best_ckpt is not None and result.best_ckpt.is_file()
    selection = {
        "sevir": "val/csi_m",
        "sevirlr": "val/csi_m",
        "enso": "val/c_nino34_m",
        "radar_sources": "val/csi@1mmh",
    }.get(name, "val/mse")
    assert selection in result.metrics
    assert all(torch.isfinite(torch.tensor(v)) for k, v in result.metrics.items() if "loss" in k)

    hparams = read_checkpoint(result.last_ckpt)["hyper_parameters"]
    contract = hparams["data_contract"]
    assert set(CONTRACT_KEYS) <= set(contract)
    assert contract["dataset"] == config.data.name
    assert hparams["model_name"] == config.model and hparams["experiment"]["name"] == config.name
    model, loaded_contract = load_forecaster(result.last_ckpt)
    x = torch.rand(1, contract["in_len"], contract["height"], contract["width"], contract["channels_in"])
    assert model(x).shape == (
        1,
        contract["out_len"],
        contract["height"],
        contract["width"],
        contract["channels_out"],
    )
    assert loaded_contract == contract


def test_test_split_metrics_of_a_trained_checkpoint(tmp_path):
    config = load_config("sevir", tiny_overrides("sevir", tmp_path))
    result = fit(config)
    metrics = evaluate(result.last_ckpt, config)
    assert {"csi_m", "csi@16", "csi@219", "mse", "mae", "loss"} <= set(metrics)
    assert 0.0 <= metrics["csi_m"] <= 1.0


def test_bf16_mixed_precision_trains_on_cpu(tmp_path):
    """``trainer.precision=bf16-mixed`` runs the model under autocast end to end."""
    config = load_config("nbody", [*tiny_overrides("nbody", tmp_path), "trainer.precision=bf16-mixed"])
    result = fit(config)
    assert result.last_ckpt is not None and result.last_ckpt.is_file()
    assert all(torch.isfinite(torch.tensor(v)) for k, v in result.metrics.items() if "loss" in k)
