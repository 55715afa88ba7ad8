"""Ensemble forecasters in ForecastSystem: scored through their mean and as ensembles (CRPS,
spread/skill), equal to the metrics computed directly; deterministic models get no ensemble keys."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from earthcast.metrics.probabilistic import CRPS, SpreadSkill
from earthcast.training.forecast_module import ForecastSystem
from tests.conftest import quiet_trainer

CONTRACT = {"in_len": 3, "out_len": 2, "height": 8, "width": 8, "channels_in": 1, "channels_out": 1}


class _Members(nn.Module):
    """Four members: the last context frame with fixed offsets, repeated over the lead times."""

    def __init__(self, members: int = 4):
        super().__init__()
        self.register_buffer("offsets", torch.linspace(-0.3, 0.3, members).view(1, -1, 1, 1, 1, 1))
        self.weight = nn.Parameter(torch.zeros(()))  # (unused) so that the system has a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, H, W, C) -> (B, S, 2, H, W, C)
        return x[:, None, -1:].repeat(1, self.offsets.shape[1], 2, 1, 1, 1) + self.offsets


def _batches(n: int = 6, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    inputs, targets = torch.rand(n, 3, 8, 8, 1, generator=g), torch.rand(n, 2, 8, 8, 1, generator=g)
    targets[0, 0, :2] = float("nan")  # missing pixels are left out
    return [{"inputs": inputs[i : i + 2], "targets": targets[i : i + 2]} for i in range(0, n, 2)]


def _test(net: nn.Module, batches) -> dict[str, float]:
    system = ForecastSystem(net, model_name="custom", data_contract=CONTRACT)
    trainer = quiet_trainer(max_steps=1)
    (metrics,) = trainer.test(system, dataloaders=DataLoader(batches, batch_size=None), verbose=False)
    return metrics


def test_ensembles_get_crps_and_spread_skill():
    batches = _batches()
    metrics = _test(_Members(), batches)
    crps, spread = CRPS("ecdf"), SpreadSkill()
    net = _Members()
    for batch in batches:
        members = net(batch["inputs"])
        crps.update(members, batch["targets"])
        spread.update(members, batch["targets"])
    assert abs(metrics["test/crps"] - float(crps.compute())) < 1e-6
    expected = spread.compute()
    for key in ("spread_skill", "spread_skill_corrected"):
        assert abs(metrics[f"test/{key}"] - float(expected[key])) < 1e-6, key
    # the deterministic scores are those of the ensemble mean
    mean_mse = torch.stack(
        [torch.nanmean((net(b["inputs"]).mean(1) - b["targets"]).square()) for b in batches]
    )
    assert metrics["test/mse"] > 0 and abs(metrics["test/loss"] - float(mean_mse.mean())) < 1e-6


def test_deterministic_models_get_no_ensemble_scores():
    class _Last(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(()))

        def forward(self, x):  # (B, T, H, W, C) -> (B, 2, H, W, C)
            return x[:, -1:].repeat(1, 2, 1, 1, 1)

    metrics = _test(_Last(), _batches())
    assert "test/mse" in metrics
    assert not any(key.startswith(("test/crps", "test/spread")) for key in metrics)
