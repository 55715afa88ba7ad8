"""Checkpoints carry their contract; ``load_forecaster`` rebuilds the network or says what is wrong."""

from __future__ import annotations

import pickle

import pytest
import torch

import earthcast
from earthcast.training import evaluate, fit, load_config, load_forecaster
from earthcast.training.checkpoint import AtomicCheckpointIO, read_checkpoint
from earthcast.training.forecast_module import ForecastSystem, masked_mse
from tests.training.conftest import tiny_overrides


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("ckpt")
    overrides = [
        *tiny_overrides("nbody", tmp),
        "trainer.ema_decay=0.5",
        "trainer.max_steps=3",
        "trainer.max_epochs=2",
    ]
    config = load_config("nbody", overrides)
    return config, fit(config)


def test_checkpoint_holds_the_contract(run):
    _, result = run
    checkpoint = read_checkpoint(result.last_ckpt)
    hp = checkpoint["hyper_parameters"]
    assert hp["model_name"] == "earthformer_nbody_tiny" and hp["model_overrides"] == {}
    assert hp["model_config"]["input_shape"] == [4, 16, 16, 1]
    assert hp["earthcast_version"] == earthcast.__version__
    assert hp["experiment"]["data"]["synthetic"]["n_train"] == 4
    assert hp["data_contract"] == {
        "dataset": "nbody",
        "in_len": 4,
        "out_len": 4,
        "height": 16,
        "width": 16,
        "channels_in": 1,
        "channels_out": 1,
        "scale": "01",
        "units": "grey level (0-255)",
        "variable": "intensity",
        "frame_interval_minutes": None,
        "thresholds": [],
        "scale_factor": 255.0,
        "scale_offset": 0.0,
    }
    assert checkpoint["global_step"] == 3
    assert not list(result.last_ckpt.parent.glob(".*.tmp"))


def test_load_forecaster_round_trips_with_and_without_ema(run):
    _, result = run
    state = read_checkpoint(result.last_ckpt)["state_dict"]
    x = torch.rand(2, 4, 16, 16, 1)
    ema_model, contract = load_forecaster(result.last_ckpt)
    raw_model, _ = load_forecaster(result.last_ckpt, use_ema=False)
    assert not ema_model.training and contract["out_len"] == 4
    reference = earthcast.create_model("earthformer_nbody_tiny").eval()
    reference.load_state_dict(
        {k[len("ema.shadow.") :]: v for k, v in state.items() if k.startswith("ema.shadow.")}
    )
    with torch.no_grad():
        torch.testing.assert_close(ema_model(x), reference(x))
        assert not torch.allclose(ema_model(x), raw_model(x))


def test_load_forecaster_rejects_what_it_cannot_use(run, tmp_path):
    _, result = run
    with pytest.raises(ValueError, match=r"does not exist"):
        load_forecaster(tmp_path / "missing.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"not a readable PyTorch checkpoint"):
        load_forecaster(garbage)
    for text in ("hparams: 1\n", "epoch 3\n"):  # text whose first byte reads as a pickle opcode
        garbage.write_text(text)
        with pytest.raises(ValueError, match=r"not a readable PyTorch checkpoint.*not a torch.save archive"):
            load_forecaster(garbage)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(result.last_ckpt.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"not a readable PyTorch checkpoint"):
        load_forecaster(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1e-3}}, foreign)
    with pytest.raises(ValueError, match=r"not an earthcast checkpoint.*model_name"):
        load_forecaster(foreign)
    with pytest.raises(ValueError, match=r"holds model 'earthformer_nbody_tiny', not 'earthformer_sevir'"):
        load_forecaster(result.last_ckpt, expected_model="earthformer_sevir")


def test_load_forecaster_rejects_weights_of_another_shape(run, tmp_path):
    _, result = run
    checkpoint = read_checkpoint(result.last_ckpt)
    checkpoint["hyper_parameters"]["model_overrides"] = {"base_units": 32}
    torch.save(checkpoint, tmp_path / "tampered.ckpt")
    with pytest.raises(
        ValueError, match=r"weights in .* do not fit model .earthformer_nbody_tiny.: size mismatch"
    ):
        load_forecaster(tmp_path / "tampered.ckpt")
    del checkpoint["hyper_parameters"]["data_contract"]["height"]
    torch.save(checkpoint, tmp_path / "no_contract.ckpt")
    with pytest.raises(ValueError, match=r"incomplete data contract: missing \['height'\]"):
        load_forecaster(tmp_path / "no_contract.ckpt")


def test_converted_reference_weights_load_with_a_derived_contract(tmp_path):
    model = earthcast.create_model("earthformer_sevir_tiny")
    path = tmp_path / "converted.pt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "model": "earthformer_sevir_tiny",
            "config": model.config.to_dict(),
        },
        path,
    )
    loaded, contract = load_forecaster(path)
    assert (contract["dataset"], contract["in_len"], contract["out_len"], contract["height"]) == (
        "sevir",
        5,
        4,
        48,
    )
    assert contract["thresholds"] == [16, 74, 133, 160, 181, 219] and contract["frame_interval_minutes"] == 5
    x = torch.rand(1, 5, 48, 48, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))


def test_atomic_checkpoint_io_keeps_the_old_file_when_a_save_fails(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "bad": lambda: None}, path)
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_schedule_horizon_matches_lightnings_count(tmp_path):
    overrides = [
        *tiny_overrides("nbody", tmp_path),
        "trainer.max_steps=-1",
        "trainer.limit_train_batches=1.0",
        "trainer.max_epochs=2",
        "trainer.accumulate_grad_batches=2",
        "data.synthetic={size: 16, seq_len: 8, n_train: 10, n_val: 2, n_test: 2}",
    ]
    result = fit(load_config("nbody", overrides))
    checkpoint = read_checkpoint(result.last_ckpt)
    schedule = checkpoint["lr_schedulers"][0]["lr_lambdas"][0]
    # 10 sequences / micro 2 = 5 batches, accumulate 2 → 3 steps per epoch, 2 epochs
    assert schedule["total_steps"] == checkpoint["global_step"] == 6
    assert result.metrics["lr/pg1"] == pytest.approx(
        1e-3 * (1e-3 + (1 - 1e-3) * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 4 / 5)).item()))
    )


def test_persistence_is_scored_without_training(tmp_path):
    config = load_config("sevir", tiny_overrides("sevir", tmp_path))
    metrics = evaluate("persistence", config)
    assert {"csi_m", "mse", "mae"} <= set(metrics) and 0 < metrics["csi_m"] < 1
    # PreDiff's pooled CSI: an event forecast within a 4- or 16-pixel block counts as a hit
    assert metrics["csi_m"] <= metrics["csi_m_pool4"] <= metrics["csi_m_pool16"]
    with pytest.raises(ValueError, match=r"neither a checkpoint file nor a registered model"):
        evaluate("persistance", config)
    system = ForecastSystem(model_name="persistence", dataset="sevir")
    assert system.net is None  # built in setup(), with out_len/channels_out from the data


def test_masked_mse_ignores_missing_targets():
    pred = torch.zeros(1, 2, 2, 2, 1)
    target = torch.tensor([1.0, float("nan"), 3.0, float("nan"), 1.0, 1.0, 1.0, 1.0]).reshape(1, 2, 2, 2, 1)
    assert masked_mse(pred, target) == pytest.approx((1 + 9 + 4) / 6)
    assert masked_mse(pred, torch.full_like(pred, float("nan"))) == 0.0
