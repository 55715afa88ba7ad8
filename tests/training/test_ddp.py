"""Two-process DDP on CPU (gloo) agrees with one process: evaluation exactly, training closely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from earthcast.data import create_datamodule
from earthcast.training import evaluate, fit, load_config
from earthcast.training.checkpoint import read_checkpoint
from tests.training.conftest import run_cli

SYNTHETIC = {"size": 16, "seq_len": 8, "n_train": 8, "n_val": 8, "n_test": 2}
EXPERIMENT = {
    "name": "ddp",
    "model": "earthformer_nbody_tiny",
    # no dropout: one process and two see the same sequences per step, so their updates agree
    "model_overrides": {
        "enc_depth": [1, 1],
        "dec_depth": [1, 1],
        "attn_drop": 0.0,
        "proj_drop": 0.0,
        "ffn_drop": 0.0,
    },
    "data": {"name": "nbody", "in_len": 4, "out_len": 4, "batch_size": 2, "num_workers": 0},
    "trainer": {
        "max_epochs": 1,
        "max_steps": 2,
        "global_batch_size": 4,  # one process: 2 × accumulate 2; DDP: 2 per rank × 2 ranks
        "accelerator": "cpu",
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 1,
        "progress_bar": "none",
        "early_stopping_patience": None,
    },
}
DDP = ["--set", "trainer.strategy=ddp", "--set", "trainer.devices=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float], Path]:
    """The experiment file, and the validation metrics and last checkpoint of a one-process run."""
    tmp = tmp_path_factory.mktemp("ddp")
    create_datamodule("nbody", root=str(tmp / "data"), synthesize=True, synthetic=SYNTHETIC).prepare_data()
    config = {**EXPERIMENT, "data": {**EXPERIMENT["data"], "root": str(tmp / "data")}}
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    result = fit(load_config(path, ["trainer.devices=1"]), out_dir=tmp / "single")
    return path, result.metrics, result.last_ckpt


def _json(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{") :])


def test_ddp_training_matches_one_process(trained):
    experiment, one, _ = trained
    tmp = experiment.parent
    ddp = run_cli(["fit", str(experiment), "--out", str(tmp / "ddp"), *DDP], cwd=tmp)
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    two = _json(ddp.stdout)["metrics"]
    for key in ("val/loss", "val/mse", "val/mae", "val/ssim"):
        assert two[key] == pytest.approx(one[key], rel=1e-4), key
    checkpoint = read_checkpoint(tmp / "ddp" / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 2
    assert checkpoint["rng_states"]["cpu"].shape[0] == 2  # one random state per rank
    assert checkpoint["hyper_parameters"]["data_contract"]["in_len"] == 4


def test_ddp_spawn_trains_like_one_process(trained):
    """``ddp_spawn`` pickles the system and the data module into fresh processes."""
    experiment, one, _ = trained
    tmp = experiment.parent
    spawn = ["--set", "trainer.strategy=ddp_spawn", "--set", "trainer.devices=2"]
    run = run_cli(["fit", str(experiment), "--out", str(tmp / "spawn"), *spawn], cwd=tmp)
    assert run.returncode == 0, run.stderr[-3000:]
    assert _json(run.stdout)["metrics"]["val/mse"] == pytest.approx(one["val/mse"], rel=1e-4)


def test_ddp_evaluation_equals_one_process(trained):
    experiment, _, ckpt = trained
    one = evaluate(ckpt, load_config(experiment, ["trainer.devices=1"]), split="val")
    ddp = run_cli(
        ["test", str(experiment), "--ckpt", str(ckpt), "--split", "val", *DDP], cwd=experiment.parent
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    two = _json(ddp.stdout)["metrics"]
    assert set(one) == set(two) and {"loss", "mse", "mae", "ssim", "csi_m"} <= set(one)
    for key in one:
        torch.testing.assert_close(torch.tensor(two[key]), torch.tensor(one[key]), rtol=1e-6, atol=0)


def test_ddp_trains_the_vae_with_its_critic(tmp_path: Path):
    """The VAE's generator and critic backward passes each reach one network; `strategy: ddp` still
    works (plain DDP refuses such steps) and both networks are updated on both ranks."""
    experiment = {
        "name": "vae_ddp",
        "task": "vae",
        "model": "vae_tiny",
        "model_overrides": {"use_discriminator": True, "disc_start": 0},
        "data": {
            "name": "nbody",
            "in_len": 3,
            "out_len": 2,
            "batch_size": 2,
            "num_workers": 0,
            "root": str(tmp_path / "data"),
            "synthesize": True,
            "synthetic": {"size": 16, "seq_len": 5, "n_train": 16, "n_val": 4, "n_test": 4},
        },
        "trainer": {**EXPERIMENT["trainer"], "max_epochs": -1, "max_steps": 4, "global_batch_size": None},
    }
    path = tmp_path / "vae.yaml"
    path.write_text(yaml.safe_dump(experiment))
    ddp = run_cli(["fit", str(path), "--out", str(tmp_path / "run"), *DDP], cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    checkpoint = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    state = checkpoint["state_dict"]
    assert int(state["generator_steps"]) == 2 and int(state["critic_steps"]) == 2
    assert any(key.startswith("discriminator.") for key in state)


def test_only_partial_backward_systems_search_for_unused_parameters():
    from lightning.pytorch import LightningModule

    from earthcast.training.runner import _strategy

    partial = LightningModule()
    partial.partial_backward = True
    assert _strategy("ddp", partial) == "ddp_find_unused_parameters_true"
    assert _strategy("ddp_spawn", partial) == "ddp_spawn_find_unused_parameters_true"
    assert _strategy("fsdp", partial) == "fsdp" and _strategy("auto", partial) == "auto"
    assert _strategy("ddp", LightningModule()) == "ddp"
