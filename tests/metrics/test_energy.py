"""``EnergyError`` (E.MSE / E.MAE of N-body forecasts) against hand computations."""

from __future__ import annotations

import pytest
import torch
from einops import reduce
from torch import nn

from earthcast.metrics import get_metric
from earthcast.metrics.energy import EnergyError


class SumEnergy(nn.Module):
    """Stand-in estimator with a known answer: the clip's total pixel sum, ``(B, T, H, W, C) -> (B, 1)``."""

    def forward(self, frames):
        return reduce(frames, "b t h w c -> b 1", "sum")


def test_energies_by_hand():
    metric = get_metric("energy_error")
    assert isinstance(metric, EnergyError)
    metric.update(torch.tensor([1.0, 4.0, 2.0]), torch.tensor([2.0, 1.0, 2.0]))  # errors −1, 3, 0
    out = metric.compute()
    assert float(out["e_mse"]) == pytest.approx((1 + 9 + 0) / 3)
    assert float(out["e_mae"]) == pytest.approx((1 + 3 + 0) / 3)


def test_ensembles_score_every_member_and_batches_merge():
    pred = torch.tensor([[1.0, 3.0], [5.0, 5.0]])  # (B=2, S=2)
    reference = torch.tensor([2.0, 4.0])  # errors −1, 1, 1, 1
    whole = EnergyError()
    whole.update(pred, reference)
    first, second = EnergyError(), EnergyError()
    first.update(pred[:1], reference[:1])
    second.update(pred[1:], reference[1:])
    first.merge_state(second)
    for result in (whole.compute(), first.compute()):
        assert float(result["e_mse"]) == pytest.approx(1.0)
        assert float(result["e_mae"]) == pytest.approx(1.0)


def test_frames_through_an_estimator_with_energy_or_frame_references():
    metric = EnergyError(estimator=SumEnergy())
    forecast = torch.ones(2, 3, 2, 2, 1)  # Ê = 12 for both
    context = torch.zeros(2, 4, 2, 2, 1)
    context[1] = 0.5  # Ê = 8
    metric.update(forecast, context)  # errors 12, 4
    metric.update(forecast, torch.tensor([12.0, 10.0]))  # errors 0, 2
    ensemble = torch.stack([forecast, 2 * forecast], dim=1)  # (B, S=2, T, H, W, C): Ê = 12, 24
    metric.update(ensemble, torch.tensor([12.0, 12.0]))  # errors 0, 12, 0, 12
    errors = torch.tensor([12.0, 4.0, 0.0, 2.0, 0.0, 12.0, 0.0, 12.0])
    out = metric.compute()
    assert float(out["e_mse"]) == pytest.approx(float(errors.square().mean()))
    assert float(out["e_mae"]) == pytest.approx(float(errors.abs().mean()))


def test_shape_errors_name_the_fix_and_empty_metric_is_nan():
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(EnergyError().compute()["e_mse"])
    with pytest.raises(ValueError, match="pass estimator="):
        EnergyError().update(torch.rand(2, 3, 4, 4, 1), torch.rand(2))
    with pytest.raises(ValueError, match="2 forecasts but 3 references"):
        EnergyError().update(torch.rand(2), torch.rand(3))
    with pytest.raises(ValueError, match="context frames"):
        EnergyError().update(torch.rand(2), torch.rand(2, 3, 4, 4, 1))
