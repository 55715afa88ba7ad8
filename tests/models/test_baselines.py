"""Contract tests shared by every learned baseline (model-specific numerics live beside each model)."""

from __future__ import annotations

import pytest
import torch

from earthcast.models import create_model, list_models
from earthcast.models.baselines.catalog import BASELINES, PAPER_PARAMS_M, PRESET_NAMES

KEYS = sorted(BASELINES)


def test_every_baseline_preset_is_registered():
    names = set(list_models())
    for key in KEYS:
        for preset in PRESET_NAMES:
            assert f"{key}_{preset}" in names


@pytest.mark.parametrize("key", KEYS)
def test_tiny_forward_backward_every_parameter_gets_a_gradient(key):
    torch.manual_seed(0)
    model = create_model(
        f"{key}_tiny", in_len=4, out_len=3, height=16, width=16, channels_in=2, channels_out=1
    )
    x = torch.randn(2, 4, 16, 16, 2)
    y = model(x)
    assert y.shape == (2, 3, 16, 16, 1)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not missing, f"{key}: parameters without gradient: {missing}"


@pytest.mark.parametrize("key", KEYS)
def test_teacher_forcing_path_matches_contract(key):
    model = create_model(f"{key}_tiny", in_len=3, out_len=2, height=16, width=16)
    x, target = torch.randn(2, 3, 16, 16, 1), torch.randn(2, 2, 16, 16, 1)
    if getattr(model, "accepts_targets", False):
        out = model(x, targets=target, step=0)
        assert out.shape == target.shape
        out.mean().backward()
    model.eval()
    with torch.no_grad():  # evaluation is a pure forecast, reproducible
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("key", KEYS)
def test_wrong_input_shape_is_named(key):
    model = create_model(f"{key}_tiny", in_len=3, out_len=2, height=16, width=16)
    with pytest.raises(ValueError, match="expects inputs"):
        model(torch.randn(1, 5, 16, 16, 1))


@pytest.mark.parametrize(
    "name", [*(f"{key}_tiny" for key in KEYS), "earthformer_tiny", "persistence", "pysteps_extrapolation"]
)
def test_numpy_input_is_refused_naming_the_conversion(name):
    import numpy as np

    shape = {} if name in ("persistence", "pysteps_extrapolation") else {"input_shape": (4, 16, 16, 1)}
    if name.endswith("_tiny") and name != "earthformer_tiny":
        shape = {"in_len": 4, "out_len": 2, "height": 16, "width": 16}
    model = create_model(name, **shape)
    context = np.random.default_rng(0).random((1, 4, 16, 16, 1), dtype=np.float32)
    with pytest.raises(TypeError, match=r"takes a torch.Tensor.*numpy.ndarray.*torch.from_numpy"):
        model(context)
    assert model(torch.from_numpy(context)).ndim == 5  # the conversion it names works


@pytest.mark.parametrize("table", sorted(PAPER_PARAMS_M))
@pytest.mark.parametrize("key", KEYS)
def test_paper_presets_match_table_parameter_counts(key, table):
    with torch.device("meta"):  # count without allocating (Rainformer-SEVIR has 184 M)
        model = create_model(f"{key}_{table}")
    n = sum(p.numel() for p in model.parameters()) / 1e6
    target = PAPER_PARAMS_M[table][key]
    assert abs(n - target) / target < 0.05, f"{key}_{table}: {n:.2f} M parameters, table {target} M"


def test_tiny_presets_share_one_problem_shape():
    """Every ``*_tiny`` preset forecasts 3 frames from 4 of 16×16, so a tiny test input fits all."""
    for key in KEYS:
        config = create_model(f"{key}_tiny").config
        shape = (config.in_len, config.out_len, config.height, config.width)
        assert shape == (4, 3, 16, 16), key
