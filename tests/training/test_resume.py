"""A run killed with SIGKILL resumes from ``last.ckpt`` and continues exactly as if never stopped."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from earthcast.training import fit, load_config
from earthcast.training.checkpoint import read_checkpoint
from tests.training.conftest import run_cli

EXPERIMENT = {
    "name": "resume",
    "model": "earthformer_nbody_tiny",
    "model_overrides": {"enc_depth": [1, 1], "dec_depth": [1, 1]},  # dropout stays on: RNG must resume too
    "data": {
        "name": "nbody",
        "in_len": 4,
        "out_len": 4,
        "batch_size": 2,
        "num_workers": 0,
        "synthesize": True,
        "synthetic": {"size": 16, "seq_len": 8, "n_train": 24, "n_val": 4, "n_test": 2},
    },
    "trainer": {
        "max_epochs": 2,
        "accelerator": "cpu",
        "devices": 1,
        "checkpoint_every_n_steps": 3,
        "log_every_n_steps": 1,
        "num_sanity_val_steps": 0,
        "progress_bar": "none",
        "early_stopping_patience": None,
    },
}


def step_losses(run: Path, key: str = "train/loss_step") -> dict[int, float]:
    """``{global step: training loss}`` from every CSV log version of a run."""
    losses = {}
    for path in sorted((run / "logs").glob("version_*/metrics.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get(key):
                    losses[int(row["step"])] = float(row[key])
    return losses


def start_fit(config: Path, out: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "earthcast.cli", "fit", str(config), "--out", str(out)]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: DDP ranks can be killed together
    )


def kill_after_first_checkpoint(
    proc: subprocess.Popen, last: Path, timeout: float = 120, group: bool = False
) -> None:
    """SIGKILL ``proc`` (with ``group``, its whole process group) once ``last`` exists."""
    deadline = time.monotonic() + timeout
    while not last.is_file():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before writing a checkpoint:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint appeared in time")
        time.sleep(0.02)
    if group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.parametrize("every_n_steps", [3, None], ids=["every-3-steps", "epoch-ends"])
def test_killed_run_resumes_where_it_stopped(tmp_path, every_n_steps):
    """Killed after its first ``last.ckpt``: every 3 steps, or (the packaged configs' default)
    at the end of the first epoch, which Lightning did not write before ``LastCheckpoint``'s fix."""
    config = tmp_path / "exp.yaml"
    experiment = {**EXPERIMENT, "data": {**EXPERIMENT["data"], "root": str(tmp_path / "data")}}
    experiment["trainer"] = {**EXPERIMENT["trainer"], "checkpoint_every_n_steps": every_n_steps}
    config.write_text(yaml.safe_dump(experiment))

    fit(load_config(config), out_dir=tmp_path / "full")  # the uninterrupted reference, in this process
    reference = step_losses(tmp_path / "full")
    assert sorted(reference) == list(range(24))

    run = tmp_path / "killed"
    last = run / "checkpoints" / "last.ckpt"
    proc = start_fit(config, run, tmp_path)
    kill_after_first_checkpoint(proc, last)
    assert proc.returncode == -signal.SIGKILL
    stopped_at = read_checkpoint(last)["global_step"]
    assert 0 < stopped_at < 24, "the run should have been killed mid-training"

    resumed = run_cli(["fit", str(config), "--out", str(run), "--resume", "auto"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    versions = sorted((run / "logs").glob("version_*/metrics.csv"))
    after = step_losses(run)
    continued = {s: v for s, v in after.items() if s >= stopped_at}
    assert min(continued) == stopped_at and max(continued) == 23  # no step repeated, none skipped
    torch.testing.assert_close(
        torch.tensor([continued[s] for s in sorted(continued)], dtype=torch.float64),
        torch.tensor([reference[s] for s in sorted(continued)], dtype=torch.float64),
        rtol=0,
        atol=1e-6,
    )
    assert len(versions) >= 1
    final = read_checkpoint(last)
    assert final["global_step"] == 24


def test_a_new_run_refuses_an_existing_run_directory(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    config = load_config("demo")
    with pytest.raises(ValueError, match=r"already holds a run.*--resume auto"):
        fit(config, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"cannot resume: checkpoint '.*missing.ckpt' does not exist"):
        fit(config, resume=tmp_path / "missing.ckpt", out_dir=tmp_path)


def test_resuming_a_finished_run_reports_its_last_metrics(tmp_path):
    from earthcast.training.config import config_from_dict

    experiment = {**EXPERIMENT, "trainer": {**EXPERIMENT["trainer"], "max_epochs": -1, "max_steps": 2}}
    experiment["data"] = {**EXPERIMENT["data"], "root": str(tmp_path / "data")}
    config = config_from_dict(experiment)
    first = fit(config, out_dir=tmp_path / "run")
    assert not first.already_finished
    again = fit(config, resume="auto", out_dir=tmp_path / "run")
    assert again.already_finished
    assert again.metrics["train/loss_step"] == pytest.approx(first.metrics["train/loss_step"])
    assert again.metrics["train/loss_step"] == pytest.approx(step_losses(tmp_path / "run")[1])
    # raising the limit on resume would run the extra steps at the ended schedule's floor
    longer = config_from_dict({**experiment, "trainer": {**experiment["trainer"], "max_steps": 3}})
    with pytest.raises(ValueError, match=r"cannot resume .* \(trainer.max_steps 2 → 3\)"):
        fit(longer, resume="auto", out_dir=tmp_path / "run")


def test_resume_refuses_settings_the_run_would_ignore(tmp_path):
    """Resuming keeps the optimiser, the schedule, the data position and the model of the
    checkpoint: other values would be ignored (or skip data), so each change is named."""
    from earthcast.training.config import config_from_dict

    experiment = {**EXPERIMENT, "trainer": {**EXPERIMENT["trainer"], "max_epochs": -1, "max_steps": 2}}
    experiment["data"] = {**EXPERIMENT["data"], "root": str(tmp_path / "data")}
    fit(config_from_dict(experiment), out_dir=tmp_path / "run")
    changed = {
        "optim": ({"lr": 5e-3}, r"optim \{.*'lr': 0\.001.*\} → \{.*'lr': 0\.005"),
        "data": ({**experiment["data"], "batch_size": 4}, r"data\.batch_size 2 → 4"),
        "model": ("convlstm_tiny", r"model 'earthformer_nbody_tiny' → 'convlstm_tiny'"),
    }
    for key, (value, message) in changed.items():
        other = {**experiment, key: value}
        if key == "model":
            other["model_overrides"] = {}
        with pytest.raises(ValueError, match=message):
            fit(config_from_dict(other), resume="auto", out_dir=tmp_path / "run")
    # what does not enter the plan may change: a run stopped by max_time resumes with more time
    more_time = {**experiment, "trainer": {**experiment["trainer"], "max_time": "00:01:00:00"}}
    assert fit(config_from_dict(more_time), resume="auto", out_dir=tmp_path / "run").already_finished


def test_max_steps_inside_the_first_epoch_with_early_stopping_saves_its_checkpoint(tmp_path):
    """A smoke test (``--set trainer.max_steps=3``) stops before the first validation; early
    stopping must wait for a validation result instead of failing the run."""
    from earthcast.training.config import config_from_dict

    trainer = {**EXPERIMENT["trainer"], "max_epochs": -1, "max_steps": 3, "early_stopping_patience": 20}
    experiment = {**EXPERIMENT, "trainer": trainer}
    experiment["data"] = {**EXPERIMENT["data"], "root": str(tmp_path / "data")}
    result = fit(config_from_dict(experiment), out_dir=tmp_path / "run")  # 12 batches per epoch
    assert result.last_ckpt is not None and read_checkpoint(result.last_ckpt)["global_step"] == 3


def test_a_new_run_starts_from_the_trained_weights_of_another(tmp_path):
    """Training longer than a finished run planned is a new run from its weights, with a fresh
    schedule; it keeps the first run's normalisation and records where it started."""
    from earthcast.training.checkpoint import NET_PREFIX, network_state
    from earthcast.training.config import config_from_dict
    from earthcast.training.initial_weights import INIT_FROM_KEY

    experiment = {**EXPERIMENT, "trainer": {**EXPERIMENT["trainer"], "max_epochs": -1, "max_steps": 2}}
    experiment["data"] = {**EXPERIMENT["data"], "root": str(tmp_path / "data")}
    first = fit(config_from_dict(experiment), out_dir=tmp_path / "first")
    trained = network_state(read_checkpoint(first.last_ckpt)["state_dict"], NET_PREFIX)
    # two steps at a vanishing learning rate: the new run's weights stay the first run's
    still = {**experiment, "optim": {"lr": 1e-30}}
    second = fit(config_from_dict(still), out_dir=tmp_path / "second", init_from=first.last_ckpt)
    checkpoint = read_checkpoint(second.last_ckpt)
    assert checkpoint[INIT_FROM_KEY] == str(first.last_ckpt.resolve())
    assert checkpoint["global_step"] == 2  # a fresh schedule of its own
    started = network_state(checkpoint["state_dict"], NET_PREFIX)
    for name, value in trained.items():
        torch.testing.assert_close(started[name], value, rtol=0, atol=1e-6, msg=name)
    scratch = fit(config_from_dict(still), out_dir=tmp_path / "scratch")  # the same run without it
    from_scratch = network_state(read_checkpoint(scratch.last_ckpt)["state_dict"], NET_PREFIX)
    assert any(not torch.allclose(from_scratch[n], trained[n]) for n in trained)
    with pytest.raises(
        ValueError, match=r"holds model 'earthformer_nbody_tiny'.*this run trains 'convlstm_tiny'"
    ):
        fit(config_from_dict({**experiment, "model": "convlstm_tiny", "model_overrides": {}}),
            out_dir=tmp_path / "other", init_from=first.last_ckpt)  # fmt: skip
    with pytest.raises(ValueError, match=r"--init-from starts a new run, but this one resumes"):
        fit(
            config_from_dict(experiment), resume="auto", out_dir=tmp_path / "first", init_from=first.last_ckpt
        )


def test_killed_ddp_run_resumes_where_it_stopped(tmp_path):
    """Two ranks (gloo, CPU), dropout on, the whole job killed after a checkpoint: the resumed run
    continues with the losses of an uninterrupted two-rank run (each rank's random state and its
    shard of the data resume)."""
    experiment = {**EXPERIMENT, "data": {**EXPERIMENT["data"], "root": str(tmp_path / "data")}}
    experiment["trainer"] = {**EXPERIMENT["trainer"], "devices": 2, "strategy": "ddp"}
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(experiment))
    full = run_cli(["fit", str(config), "--out", str(tmp_path / "full")], cwd=tmp_path, timeout=240)
    assert full.returncode == 0, full.stderr[-3000:]
    reference = step_losses(tmp_path / "full")
    assert sorted(reference) == list(range(12))  # 24 sequences, 2 per rank and step, 2 epochs

    run = tmp_path / "killed"
    last = run / "checkpoints" / "last.ckpt"
    proc = start_fit(config, run, tmp_path)
    kill_after_first_checkpoint(proc, last, group=True)  # every rank dies, as when a job is killed
    stopped_at = read_checkpoint(last)["global_step"]
    assert 0 < stopped_at < 12, "the run should have been killed mid-training"

    resumed = run_cli(["fit", str(config), "--out", str(run), "--resume", "auto"], cwd=tmp_path, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    continued = {s: v for s, v in step_losses(run).items() if s >= stopped_at}
    assert min(continued) == stopped_at and max(continued) == 11
    torch.testing.assert_close(
        torch.tensor([continued[s] for s in sorted(continued)], dtype=torch.float64),
        torch.tensor([reference[s] for s in sorted(continued)], dtype=torch.float64),
        rtol=0,
        atol=1e-6,
    )
    assert read_checkpoint(last)["global_step"] == 12


def test_killed_vae_run_resumes_its_random_stream(tmp_path):
    """The VAE samples its posterior and trains a critic: after a kill, the resumed run draws the
    same random numbers as an uninterrupted one (the random state travels in the checkpoint for
    every task, not only forecasting)."""
    experiment = {
        "name": "vae_resume",
        "task": "vae",
        "model": "vae_tiny",
        "model_overrides": {"use_discriminator": True, "disc_start": 0},
        "data": {**EXPERIMENT["data"], "in_len": 3, "out_len": 2, "root": str(tmp_path / "data")},
        "trainer": {**EXPERIMENT["trainer"], "max_epochs": -1, "max_steps": 16},
    }
    experiment["trainer"]["checkpoint_every_n_steps"] = 2
    experiment["data"]["synthetic"] = {"size": 16, "seq_len": 5, "n_train": 24, "n_val": 4, "n_test": 2}
    config = tmp_path / "vae.yaml"
    config.write_text(yaml.safe_dump(experiment))
    fit(load_config(config), out_dir=tmp_path / "full")
    reference = step_losses(tmp_path / "full", "train/loss")
    assert len(reference) == 8  # 16 optimiser steps: a generator and a critic step per batch

    run = tmp_path / "killed"
    last = run / "checkpoints" / "last.ckpt"
    proc = start_fit(config, run, tmp_path)
    kill_after_first_checkpoint(proc, last)
    stopped_at = read_checkpoint(last)["global_step"]
    assert 0 < stopped_at < 16, "the run should have been killed mid-training"

    resumed = run_cli(["fit", str(config), "--out", str(run), "--resume", "auto"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    continued = {s: v for s, v in step_losses(run, "train/loss").items() if s >= stopped_at // 2}
    assert sorted(continued) == [s for s in sorted(reference) if s >= stopped_at // 2]
    torch.testing.assert_close(
        torch.tensor([continued[s] for s in sorted(continued)], dtype=torch.float64),
        torch.tensor([reference[s] for s in sorted(continued)], dtype=torch.float64),
        rtol=1e-6,
        atol=1e-6,
    )
