"""``trainer.compile``: config values, and a compiled fit whose checkpoint is an ordinary one."""

from __future__ import annotations

import pytest
import torch

import earthcast.training.runner as runner
from earthcast.training import fit, load_config
from earthcast.training.checkpoint import read_checkpoint
from earthcast.training.compile import CompileNetworks, compile_in_place
from earthcast.training.config import TrainerConfig, config_from_dict
from tests.training.conftest import tiny_overrides


@pytest.mark.parametrize("value", [False, True, "default", "max-autotune", "reduce-overhead"])
def test_compile_values_are_accepted(value):
    raw = {"model": "earthformer_nbody_tiny", "data": {"name": "nbody"}, "trainer": {"compile": value}}
    assert config_from_dict(raw).trainer.compile == value


def test_unknown_compile_mode_is_refused_with_the_choices():
    raw = {"model": "earthformer_nbody_tiny", "data": {"name": "nbody"}, "trainer": {"compile": "fast"}}
    with pytest.raises(ValueError, match=r"trainer\.compile.*max-autotune"):
        config_from_dict(raw)
    assert TrainerConfig().compile is False


def test_compile_in_place_keeps_parameter_names_and_compiles_once():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GELU(), torch.nn.Linear(4, 2))
    keys = list(net.state_dict())
    assert compile_in_place(net, True, backend="aot_eager")
    assert not compile_in_place(net, True, backend="aot_eager")
    assert list(net.state_dict()) == keys
    x = torch.randn(5, 3)
    torch.testing.assert_close(net(x), net._call_impl(x))  # compiled call == the eager module


def test_compiled_fit_writes_an_ordinary_checkpoint(tmp_path, monkeypatch):
    made: list[CompileNetworks] = []

    class TracingOnly(CompileNetworks):  # Dynamo + AOTAutograd without Inductor's slow C++ build
        def __init__(self, mode):
            super().__init__(mode, backend="aot_eager")
            made.append(self)

    monkeypatch.setattr(runner, "CompileNetworks", TracingOnly)
    config = load_config("nbody", [*tiny_overrides("nbody", tmp_path), "trainer.compile=true"])
    result = fit(config)

    assert made and made[0].compiled == ["Earthformer"]
    assert torch.isfinite(torch.tensor(result.metrics["train/loss_epoch"]))
    state = read_checkpoint(result.last_ckpt)["state_dict"]
    assert any(k.startswith("net.") for k in state)
    assert not any("_orig_mod" in k for k in state)  # compiled in place: names as in eager runs
