"""``earthcast fit`` and ``earthcast test`` (in-process; the subprocess paths are in test_resume/test_ddp)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from earthcast.cli import main
from tests.training.conftest import tiny_overrides


def _set(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def test_print_config_shows_the_resolved_experiment(capsys):
    assert main(["fit", "enso", "--print-config", "--set", "optim.lr=3e-4"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["optim"]["lr"] == 3e-4 and config["trainer"]["global_batch_size"] == 64
    assert config["trainer"]["gradient_clip_val"] == 1.0  # defaults are shown too


def test_help_lists_the_packaged_configs(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    from earthcast.training import list_configs

    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the epilog
    assert f"packaged configs: {', '.join(list_configs())}" in text
    assert "prediff_demo" in text and "nbody_small" in text


def test_config_errors_are_one_line(capsys):
    assert main(["fit", "nbody", "--set", "trainer.max_epoch=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("earthcast fit: error: unknown key(s) trainer.max_epoch") and err.count("\n") == 1
    assert main(["test", "nbody", "--model", "persistance"]) == 2
    assert "neither a checkpoint file nor a registered model" in capsys.readouterr().err


def test_fit_then_test_print_json(tmp_path, capsys):
    overrides = _set(tiny_overrides("nbody", tmp_path))
    assert main(["fit", "nbody", *overrides]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["last_ckpt"].endswith("checkpoints/last.ckpt") and "val/mse" in summary["metrics"]
    assert main(["test", "nbody", "--ckpt", summary["best_ckpt"], *overrides]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "test" and {"mse", "mae", "ssim", "csi_m", "loss"} <= set(report["metrics"])
    assert report["weights"] == "raw"  # trained without an EMA
    assert main(["test", "nbody", "--model", "persistence", "--split", "val", *overrides]) == 0
    baseline = json.loads(capsys.readouterr().out)
    assert baseline["model"] == "persistence" and baseline["weights"] == "untrained"
    assert main(["test", "--ckpt", summary["last_ckpt"]]) == 0  # the experiment recorded in the checkpoint
    assert json.loads(capsys.readouterr().out)["metrics"].keys() == report["metrics"].keys()
    assert main(["test", "--model", "persistence"]) == 2
    assert "give a CONFIG" in capsys.readouterr().err


def test_a_gpu_checkpoint_is_scored_on_this_machine(tmp_path, capsys):
    """A checkpoint whose recorded trainer asked for 4 GPUs under DDP (and scored 0 test batches)
    is scored here, on the whole split, without a CONFIG; --set still wins; the report says
    whether the EMA or the raw weights were scored."""
    overrides = _set([*tiny_overrides("nbody", tmp_path), "trainer.ema_decay=0.5"])
    assert main(["fit", "nbody", *overrides]) == 0
    last = json.loads(capsys.readouterr().out)["last_ckpt"]
    checkpoint = torch.load(last, weights_only=True)
    recorded = dict(accelerator="gpu", devices=4, strategy="ddp", num_nodes=2, limit_test_batches=0)
    checkpoint["hyper_parameters"]["experiment"]["trainer"].update(recorded)
    gpu_ckpt = tmp_path / "gpu_trained.ckpt"
    torch.save(checkpoint, gpu_ckpt)
    # one device here, whatever this machine has: the defaults would start DDP on every GPU
    one = ["--set", "trainer.devices=1"]

    assert main(["test", "--ckpt", str(gpu_ckpt), *one]) == 0
    ema = json.loads(capsys.readouterr().out)
    assert ema["weights"] == "ema" and {"mse", "mae", "loss"} <= set(ema["metrics"])
    assert main(["test", "--ckpt", str(gpu_ckpt), "--no-ema", *one]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert raw["weights"] == "raw" and raw["metrics"]["mse"] != ema["metrics"]["mse"]
    assert main(["test", "--ckpt", str(gpu_ckpt), *one, "--set", "trainer.limit_test_batches=0"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == {}  # --set beats the reset
