"""Scores of the ``radar_sources`` data set: rain-rate thresholds, per-lead keys, pysteps end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from earthcast.data.radar_sources import write_synthetic_sources
from earthcast.models import create_model
from earthcast.training import evaluate, load_config
from earthcast.training.forecast_module import contract_defaults
from earthcast.training.scoring import LeadContingency, rain_thresholds, scoring_for

CONTRACT = {
    "transform": "dbr",
    "units": "dBR",
    "precip_threshold": 0.1,
    "zerovalue": -15.0,
    "scale_factor": 40.0,
    "scale_offset": -15.0,
    "rain_thresholds_mmh": [1.0, 5.0],
    "frame_interval_minutes": 5,
    "km_per_pixel": 4.0,
}
LEADS = 4


@pytest.mark.parametrize(
    ("transform", "stored"),
    [
        ("dbr", [0.0, 10 * math.log10(5.0)]),  # 10·log10(R)
        ("log1p", [math.log(2.0), math.log(6.0)]),  # log(1 + R)
        ("rainrate", [1.0, 5.0]),
    ],
)
def test_rain_rates_become_normalised_thresholds(transform, stored):
    contract = {**CONTRACT, "transform": transform, "scale_factor": 2.5, "scale_offset": -1.0}
    expected = [(v + 1.0) / 2.5 for v in stored]
    assert rain_thresholds(contract, [1.0, 5.0]) == pytest.approx(expected, rel=1e-12)


def test_transform_falls_back_on_units_and_must_exist():
    by_units = {k: v for k, v in CONTRACT.items() if k != "transform"}
    assert rain_thresholds(by_units, [1.0]) == pytest.approx([15.0 / 40.0])
    with pytest.raises(ValueError, match="names no rain transform"):
        rain_thresholds({"units": "K", "scale_factor": 1.0}, [1.0])
    with pytest.raises(ValueError, match="below the dry threshold"):
        rain_thresholds({**CONTRACT, "precip_threshold": 2.0}, [1.0, 5.0])


def fields(rate_mmh: np.ndarray) -> torch.Tensor:
    """Rain rates (mm/h) → normalised dBR as the data set serves them (dry → floor = 0)."""
    dbr = np.where(rate_mmh >= 0.1, 10 * np.log10(np.maximum(rate_mmh, 0.1)), -15.0)
    return torch.as_tensor((dbr + 15.0) / 40.0, dtype=torch.float32)


def test_perfect_forecast_scores_one_at_every_lead_and_keys_are_per_lead():
    metrics = scoring_for("radar_sources").build(CONTRACT)
    rng = np.random.default_rng(0)
    target = fields(rng.choice([0.0, 0.5, 2.0, 8.0], size=(2, LEADS, 8, 8, 1)))
    target[0, :, 0, 0] = float("nan")  # outside the domain: not counted
    scoring_for("radar_sources").update(metrics, target.nan_to_num(0.0), target, {})
    out = scoring_for("radar_sources").compute(metrics)

    for label in ("1mmh", "5mmh"):
        leads = [f"csi@{label}_lead{k:02d}" for k in range(1, LEADS + 1)]
        assert all(out[key] == pytest.approx(1.0, abs=1e-4) for key in leads)
        assert out[f"csi@{label}"] == pytest.approx(1.0, abs=1e-4)
        assert out[f"bias@{label}_lead01"] == pytest.approx(1.0, abs=1e-4)
    assert out["events@1mmh"] == ((target * 40 - 15) >= 0).sum().item()  # NaN compares False
    assert out["mse"] == 0.0 and f"csi@1mmh_lead{LEADS + 1:02d}" not in out
    assert scoring_for("radar_sources").selection == "csi@1mmh"


def test_per_lead_scores_follow_the_contingency_table():
    metric = LeadContingency([0.5], ["x"])
    target = torch.ones(1, 2, 2, 2, 1)
    pred = torch.stack([torch.ones(2, 2, 1), torch.zeros(2, 2, 1)])[None]  # lead 1 hits, lead 2 misses
    metric.update(pred, target)
    out = metric.compute()
    assert out["csi@x_lead01"] == pytest.approx(1.0, abs=1e-4) and out["csi@x_lead02"] == 0.0
    assert out["pod@x_lead02"] == 0.0 and out["csi@x"] == pytest.approx(0.5, abs=1e-4)
    assert out["events@x"] == 8


def test_pysteps_factories_take_the_rain_encoding_from_the_contract():
    steps = create_model("pysteps_steps", **contract_defaults("pysteps_steps", {**CONTRACT, "out_len": 3}))
    cfg = steps.config
    assert (cfg.transform, cfg.scale_factor, cfg.scale_offset, cfg.zerovalue) == ("dbr", 40.0, -15.0, -15.0)
    assert (cfg.timestep_minutes, cfg.kmperpixel, cfg.decl_scale, cfg.out_len) == (5.0, 4.0, 5, 3)
    radar_spec = {"units": "log(1 + mm/h)", "scale_factor": 3.0, "scale_offset": 0.0, "out_len": 2}
    from_units = create_model("pysteps_steps", **contract_defaults("pysteps_steps", radar_spec))
    assert from_units.config.transform == "log1p" and from_units.config.scale_factor == 3.0
    lk = create_model("pysteps_extrapolation", **contract_defaults("pysteps_extrapolation", CONTRACT))
    assert lk.config.decl_scale == 5  # pysteps' 20 px on 1 km grids = 20 km
    assert create_model("pysteps_extrapolation", decl_scale=7, km_per_pixel=4.0).config.decl_scale == 7


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # pysteps' outlier test on tiles with few vectors
def test_pysteps_extrapolation_through_evaluate_gives_finite_per_lead_csi(tmp_path: Path):
    root = tmp_path / "sources"
    write_synthetic_sources(root, ("mch", "fmi", "bom"), n_times=30, size=24)
    config = load_config(
        "radar_sources",
        [
            f"data.root={root}",
            "data.options={test_source: fmi, patch_size: 16, min_wet: 0.0}",
            "data.in_len=3",
            f"data.out_len={LEADS}",
            "data.eval_batch_size=16",
            "trainer.accelerator=cpu",
            "trainer.devices=1",
            "trainer.progress_bar=none",
            f"trainer.out_dir={tmp_path / 'run'}",
            "model_overrides={}",
        ],
    )
    metrics = evaluate("pysteps_extrapolation", config)
    leads = [metrics[f"csi@{label}_lead{k:02d}"] for label in ("1mmh", "5mmh") for k in range(1, LEADS + 1)]
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in leads)
    assert metrics["events@1mmh"] > 0 and metrics["csi@1mmh_lead01"] > 0.2  # extrapolation has skill
    assert metrics["csi@1mmh"] == pytest.approx(np.mean(leads[:LEADS]), rel=1e-5)
