"""``EstimatorSystem``: the N-body energy estimator trains on tiny synthetic data and reloads."""

from __future__ import annotations

import pytest
import torch

from earthcast.data import create_datamodule
from earthcast.data.nbody import NBodyConfig, nbody_energy
from earthcast.models.prediff.knowledge import EnergyEstimator
from earthcast.models.prediff.knowledge.energy import energy_mse_loss
from earthcast.training.estimator_module import EstimatorSystem, load_energy_estimator, training_statistics
from tests.conftest import quiet_trainer

TINY = {"size": 16, "seq_len": 8, "n_train": 32, "n_val": 8, "n_test": 8}


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("nbody")
    dm = create_datamodule(
        "nbody",
        root=str(root),
        synthesize=True,
        synthetic=TINY,
        in_len=4,
        out_len=4,
        batch_size=8,
        num_workers=0,
        options={"return_state": True},
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _train_loss(system: EstimatorSystem, dm) -> float:
    with torch.no_grad():
        losses = [energy_mse_loss(system.estimator, *system.clips(b)) for b in dm.train_dataloader()]
    return float(torch.stack(losses).mean())


def test_target_clip_energies_follow_the_dataset_definition(datamodule):
    system = EstimatorSystem(EnergyEstimator(widths=(8, 16), grid=2, hidden=16), use_targets=True)
    batch = next(iter(datamodule.train_dataloader()))
    frames, energy = system.clips(batch)
    assert frames.shape == (16, 4, 16, 16, 1) and energy.shape == (16,)
    torch.testing.assert_close(energy[:8], batch["meta"]["energy"].float())
    cfg = NBodyConfig()
    last_context = nbody_energy(
        batch["positions"][:, 3].double(), batch["velocities"][:, 3].double(), cfg.G, cfg.d
    )
    torch.testing.assert_close(last_context.float(), batch["meta"]["energy"].float(), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="return_state=True"):
        system.clips({k: v for k, v in batch.items() if k != "positions"})


def test_estimator_training_reduces_the_loss_and_reloads(datamodule, tmp_path):
    torch.manual_seed(0)
    system = EstimatorSystem(
        EnergyEstimator(widths=(8, 16), grid=2, hidden=32), use_targets=True, optim={"lr": 3e-3}
    )
    trainer = quiet_trainer(max_steps=60, limit_val_batches=1, default_root_dir=tmp_path)
    energies, moments = training_statistics(datamodule.train_dataset, 1024)
    system.estimator.set_normalization(float(energies.mean()), float(energies.std()), moments)
    before = _train_loss(system, datamodule)
    system.estimator.normalized.fill_(False)  # let on_fit_start measure it again
    trainer.fit(system, datamodule=datamodule)
    assert float(system.estimator.energy_mean) == pytest.approx(float(energies.mean()), rel=1e-6)
    torch.testing.assert_close(system.estimator.moment_std, moments.std(dim=0))
    after = _train_loss(system, datamodule)
    assert after < 0.5 * before, (before, after)
    logged = trainer.callback_metrics
    assert {"val/loss", "val/mae", "val/rel_error", "val/corr"} <= set(logged)

    path = tmp_path / "estimator.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_energy_estimator(path)
    frames = next(iter(datamodule.val_dataloader()))["inputs"]
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(loaded(frames), system.estimator.eval()(frames))


def test_load_energy_estimator_rejects_other_checkpoints(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, path)
    with pytest.raises(ValueError, match="not an energy-estimator checkpoint"):
        load_energy_estimator(path)
