"""pysteps forecasters: synthetic-truth motion recovery, the STEPS ensemble contract, rain scaling."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import earthcast
from earthcast.models.classical import LKExtrapolation, STEPSConfig, STEPSNowcast, scaling
from earthcast.models.classical._common import import_pysteps
from earthcast.models.classical.steps import cascade_levels

# (x centre, y centre, sigma, amplitude): three blobs make a textured field with trackable corners
BLOBS = ((24.0, 28.0, 4.0, 1.0), (36.0, 22.0, 3.0, 0.7), (30.0, 38.0, 5.0, 0.8))


def blob_field(t: float, dx: float, dy: float, n: int = 64) -> np.ndarray:
    """The blobs after ``t`` frames of translation by ``(dx, dy)`` pixels per frame, ``(n, n)``."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    field = np.zeros((n, n))
    for cx, cy, sigma, amp in BLOBS:
        field += amp * np.exp(-((x - cx - dx * t) ** 2 + (y - cy - dy * t) ** 2) / (2 * sigma**2))
    return field


def blob_sequence(times, motions, n: int = 64) -> torch.Tensor:
    """``(B, T, n, n, 1)`` float32: one batch item per ``(dx, dy)`` motion."""
    items = [np.stack([blob_field(t, dx, dy, n) for t in times]) for dx, dy in motions]
    return torch.tensor(np.stack(items), dtype=torch.float32)[..., None]


def centroid(field: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted ``(x, y)`` centre of mass of ``field (..., H, W)`` → ``(..., 2)``."""
    h, w = field.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.to(field.dtype), xs.to(field.dtype)
    mass = field.sum(dim=(-2, -1))
    return torch.stack([(field * xs).sum(dim=(-2, -1)) / mass, (field * ys).sum(dim=(-2, -1)) / mass], dim=-1)


MOTIONS = ((1.5, -1.0), (-1.0, 0.5))  # pixels per frame, sub-pixel on purpose


# ----------------------------------------------------------------------------- extrapolation


def test_lk_extrapolation_recovers_a_known_translation():
    context = blob_sequence(range(4), MOTIONS)  # (2, 4, 64, 64, 1)
    truth = blob_sequence(range(4, 8), MOTIONS)  # (2, 4, 64, 64, 1)
    forecast = earthcast.create_model("pysteps_extrapolation", out_len=4)(context)
    assert forecast.shape == truth.shape and forecast.dtype == torch.float32
    error = centroid(forecast[..., 0]) - centroid(truth[..., 0])  # (2, 4, 2)
    assert error.abs().max() < 0.25
    persistence = context[:, -1:].expand_as(truth)
    mse = (forecast - truth).square().mean(dim=(1, 2, 3, 4))
    assert (mse < 0.01 * (persistence - truth).square().mean(dim=(1, 2, 3, 4))).all()


def test_lk_extrapolation_is_persistence_without_motion():
    static = blob_sequence([0.0] * 3, [(0.0, 0.0)])  # (1, 3, 64, 64, 1)
    torch.testing.assert_close(LKExtrapolation(out_len=2)(static), static[:, :2], atol=1e-5, rtol=0)
    # nothing to track (no rain / constant field): zero motion, a finite persistence forecast
    for value in (0.0, 0.4):
        flat = torch.full((2, 3, 16, 16, 2), value)
        assert torch.equal(LKExtrapolation(out_len=3)(flat), flat)


def test_lk_extrapolation_keeps_the_first_channels_and_fills_from_outside():
    context = torch.cat([blob_sequence(range(4), MOTIONS[:1]), torch.zeros(1, 4, 64, 64, 1)], dim=-1)
    forecast = LKExtrapolation(out_len=30, channels_out=1, fill="zero")(context)
    assert forecast.shape == (1, 30, 64, 64, 1)
    assert forecast[0, -1, :, :2].abs().max() == 0  # inflow edge (dx > 0) holds the fill value
    with pytest.raises(ValueError, match="cannot make 3 output channels from 2"):
        LKExtrapolation(channels_out=3)(context)


# ----------------------------------------------------------------------------------- STEPS


def rain_context(times=range(4), motions=MOTIONS[:1]) -> torch.Tensor:
    """Rain rate of up to 10 mm/h normalised by 10 (transform='rainrate', scale_factor=10)."""
    return blob_sequence(times, motions)


def steps(**overrides) -> STEPSNowcast:
    options = {"out_len": 4, "n_ens_members": 3, "transform": "rainrate", "scale_factor": 10.0}
    return earthcast.create_model("pysteps_steps", **{**options, **overrides})


def test_steps_returns_a_reproducible_ensemble():
    context = rain_context(motions=MOTIONS)
    forecast = steps()(context)
    assert forecast.shape == (2, 3, 4, 64, 64, 1)  # (B, S, T, H, W, C)
    assert forecast.dtype == torch.float32 and torch.isfinite(forecast).all()
    assert forecast.min() >= 0  # rain rate: dry pixels are 0, never negative
    assert (forecast[:, 0] - forecast[:, 1]).abs().amax() > 1e-3  # members differ
    assert torch.equal(forecast, steps()(context))  # fixed seed: identical
    assert not torch.equal(forecast, steps(seed=1)(context))


def test_steps_ensemble_mean_moves_with_the_motion():
    context, truth = rain_context(), rain_context(range(4, 8))  # (1, 4, 64, 64, 1) each
    forecast = steps(n_ens_members=4, vel_pert_method=None)(context)  # noise only, no motion spread
    moved = centroid(forecast.mean(dim=1)[..., 0])[0, -1] - centroid(context[0, -1, ..., 0])
    assert torch.allclose(moved, torch.tensor([4 * 1.5, 4 * -1.0]), atol=0.25)
    assert torch.allclose(centroid(forecast.mean(dim=1)[..., 0]), centroid(truth[..., 0]), atol=0.25)


def test_steps_without_rain_is_dry_and_finite():
    # min-max scaled dBR with NaN → 0: zero is the -15 dBR floor, i.e. no rain anywhere
    forecast = steps(transform="dbr", scale_factor=60.0, scale_offset=-15.0)(torch.zeros(1, 3, 32, 32, 1))
    assert forecast.shape == (1, 3, 4, 32, 32, 1)
    assert torch.equal(forecast, torch.zeros_like(forecast))


def test_steps_falls_back_to_extrapolation_when_it_cannot_fit():
    uniform = torch.full((1, 3, 32, 32, 1), 0.3)  # 3 mm/h everywhere: no spatial statistics to fit
    with pytest.warns(RuntimeWarning, match="could not fit"):
        forecast = steps()(uniform)
    assert torch.allclose(forecast, torch.full_like(forecast, 0.3))
    with pytest.raises((RuntimeError, ValueError)):
        steps(on_failure="raise")(uniform)


def test_steps_refuses_non_precipitation_data_and_bad_grids():
    with pytest.raises(ValueError, match="not a precipitation field"):
        STEPSConfig(transform="none")
    with pytest.raises(ValueError, match=r"zerovalue=-5\.0 must lie below the threshold"):
        STEPSConfig(zerovalue=-5.0)  # -5 dBR is wetter than the 0.1 mm/h (-10 dBR) threshold
    assert [cascade_levels(STEPSConfig(), n, n) for n in (8, 32, 64, 128, 512)] == [3, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="too many for a 16x16 grid"):
        cascade_levels(STEPSConfig(n_cascade_levels=6), 16, 16)
    with pytest.raises(ValueError, match="at least 8 pixels"):
        steps()(torch.zeros(1, 3, 4, 4, 1))


# ------------------------------------------------------------------------ shared contract


@pytest.mark.parametrize("name", ["pysteps_extrapolation", "pysteps_steps"])
def test_registered_without_parameters_and_checks_inputs(name):
    factory = earthcast.models.MODELS.get(name)
    assert {"out_len": "out_len", "channels_out": "channels_out"}.items() <= factory.contract_fields.items()
    model = earthcast.create_model(name, out_len=2)
    assert not list(model.parameters())
    with pytest.raises(ValueError, match=r"expects inputs \(B, T, H, W, C\)"):
        model(torch.zeros(4, 16, 16, 1))
    with pytest.raises(ValueError, match="context frames"):
        model(torch.zeros(1, 1, 16, 16, 1))
    with pytest.raises(ValueError, match="finite"):
        model(torch.full((1, 3, 16, 16, 1), float("nan")))
    with pytest.raises(ValueError, match=r"unknown \w+ keys \['lead'\]"):
        earthcast.create_model(name, lead=3)


def test_missing_pysteps_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pysteps", None)  # makes `import pysteps` fail
    with pytest.raises(ImportError, match=r"earthcast\[pysteps\]"):
        import_pysteps()


# --------------------------------------------------------------------------------- scaling

RATES = np.array([0.0, 0.02, 0.1, 0.5, 1.0, 12.5, 150.0])  # mm/h, two of them below 0.1


@pytest.mark.parametrize("transform", ["dbr", "log1p", "rainrate"])
def test_rain_rate_round_trips(transform):
    values = scaling.from_rainrate(RATES, transform, threshold=0.1)
    expected = np.where(RATES >= 0.1, RATES, 0.0)
    np.testing.assert_allclose(scaling.to_rainrate(values, transform, 0.1), expected, rtol=1e-6, atol=1e-12)
    # and through dBR, in normalised units, back to the same values
    x = scaling.normalise(values, 7.0, -2.0)
    dbr = scaling.to_dbr(x, transform, 0.1, 7.0, -2.0)
    np.testing.assert_allclose(scaling.from_dbr(dbr, transform, 0.1, 7.0, -2.0), x, rtol=1e-6, atol=1e-9)


def test_scaling_matches_the_radar_importer_and_pysteps():
    from earthcast.data.radar import rain_transform

    for transform in ("dbr", "log1p", "rainrate"):
        values, _ = rain_transform(RATES, transform, 0.1)  # float32 store values
        np.testing.assert_allclose(scaling.from_rainrate(RATES, transform, 0.1), values, rtol=1e-6)
    assert scaling.dbr_floor(0.1) == pytest.approx(rain_transform(RATES, "dbr", 0.1)[1]) == -15.0
    dB_transform = import_pysteps().utils.transformation.dB_transform
    reference, _ = dB_transform(RATES.copy(), threshold=0.1, zerovalue=-15.0)
    np.testing.assert_allclose(scaling.from_rainrate(RATES, "dbr", 0.1), reference, rtol=1e-12)


def test_scaling_from_contract_and_refusals():
    contract = {"units": "log(1 + mm/h)", "scale_factor": 4.0, "scale_offset": 0.0}
    contract["frame_interval_minutes"] = 10
    assert scaling.scaling_from_contract(contract) == {
        "transform": "log1p",
        "scale_factor": 4.0,
        "scale_offset": 0.0,
        "timestep_minutes": 10.0,
    }
    not_rain = {"units": "K", "frame_interval_minutes": None}
    assert scaling.scaling_from_contract(not_rain) == {"transform": "none"}
    assert scaling.scaling_from_contract({"frame_interval_minutes": None}) == {}
    with pytest.raises(ValueError, match="not a precipitation field"):
        scaling.to_dbr(np.zeros(3), "none", 0.1)


def test_steps_refuses_data_whose_units_are_not_rain():
    """N-body grey levels (or kelvin, or VIL) are not dBR: read as dBR, a black pixel would be
    1 mm/h of rain. The data's units reach the model through the contract, and STEPS refuses."""
    from earthcast.models import create_model

    with pytest.raises(ValueError, match="not a precipitation field"):
        create_model("pysteps_steps", units="grey level (0-255)", out_len=2)
    assert create_model("pysteps_steps", units="mm/h", out_len=2).config.transform == "rainrate"
    assert create_model("pysteps_steps", out_len=2).config.transform == "dbr"  # no units: the default
