"""Persistence: the last frame repeated; zero error on a static field; no parameters."""

from __future__ import annotations

import pytest
import torch

import earthcast
from earthcast.models.baselines import Persistence, PersistenceConfig


def test_repeats_the_last_frame():
    x = torch.randn(2, 5, 6, 7, 3)
    y = earthcast.create_model("persistence", out_len=4)(x)
    assert y.shape == (2, 4, 6, 7, 3)
    assert torch.equal(y, x[:, -1:].expand(-1, 4, -1, -1, -1))


def test_keeps_the_first_output_channels():
    x = torch.randn(1, 3, 4, 4, 5)
    y = Persistence(PersistenceConfig(out_len=2, channels_out=2))(x)
    assert torch.equal(y, x[:, -1:, ..., :2].expand(-1, 2, -1, -1, -1))
    with pytest.raises(ValueError, match="cannot make 6 output channels from 5"):
        Persistence(channels_out=6)(x)


def test_zero_error_on_a_static_field():
    field = torch.rand(1, 1, 8, 8, 1).expand(2, 12, 8, 8, 1)
    inputs, targets = field[:, :6], field[:, 6:]
    assert torch.equal(Persistence(out_len=6)(inputs), targets)


def test_no_parameters_and_validated_config():
    assert not list(earthcast.create_model("persistence").parameters())
    with pytest.raises(ValueError, match="out_len=0 must be >= 1"):
        PersistenceConfig(out_len=0)
    with pytest.raises(ValueError, match=r"unknown PersistenceConfig keys \['lead'\]"):
        earthcast.create_model("persistence", lead=3)
