"""``AlignmentSystem``: U_φ learns a constraint's statistic from noisy latents; checkpoints rebuild it."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from earthcast.models.prediff.denoiser import AlignmentNetwork, get_alignment_config
from earthcast.models.prediff.knowledge import EnergyEstimator, NBodyEnergy, get_constraint
from earthcast.models.prediff.vae import AutoencoderKL, get_preset
from earthcast.training.alignment_module import AlignmentSystem, load_alignment
from tests.conftest import quiet_trainer


def _batches(n: int, seed: int, batch: int = 4) -> list[dict[str, torch.Tensor]]:
    """Sequences of 16×16 frames whose future mean varies a lot between samples (the statistic)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        level = torch.rand(batch, 1, 1, 1, 1, generator=g)
        out.append(
            {
                "inputs": level * torch.rand(batch, 3, 16, 16, 1, generator=g),
                "targets": level * torch.rand(batch, 2, 16, 16, 1, generator=g),
            }
        )
    return out


def _system(constraint=None) -> AlignmentSystem:
    torch.manual_seed(0)
    vae = AutoencoderKL(get_preset("vae_tiny"))  # 16×16×1 frames → 8×8×4 latents
    net = AlignmentNetwork(get_alignment_config("alignment_tiny"))
    if constraint is None:
        constraint = get_constraint("mean_intensity")
        constraint.regressor.fit([{k: v for k, v in b.items()} for b in _batches(8, seed=9, batch=8)])
    return AlignmentSystem(vae, net, constraint, schedule={"num_train_timesteps": 100})


def _fixed_loss(system: AlignmentSystem, batch) -> float:
    with torch.no_grad():
        return float(system.loss(batch, torch.Generator().manual_seed(123)))


def test_loss_drops_on_a_fixed_batch():
    system = _system()
    batch = _batches(1, seed=0, batch=8)[0]
    opt = torch.optim.AdamW(system.net.parameters(), lr=1e-3)
    before = _fixed_loss(system, batch)
    for _ in range(20):
        loss = system.loss(batch, torch.Generator().manual_seed(123))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _fixed_loss(system, batch)
    assert after < 0.2 * before, (before, after)
    assert all(p.grad is None for p in system.vae.parameters())  # frozen
    assert all(p.grad is None for p in system.constraint.parameters())


# the frozen VAE and constraint are in eval mode on purpose; Lightning warns about any such module
@pytest.mark.filterwarnings("ignore:Found .* module\\(s\\) in eval mode")
def test_fit_and_checkpoint_round_trip(tmp_path):
    system = _system()
    trainer = quiet_trainer(max_steps=3, default_root_dir=tmp_path)
    loader = DataLoader(_batches(3, seed=1), batch_size=None)
    trainer.fit(system, train_dataloaders=loader, val_dataloaders=loader)
    assert {"train/loss_epoch", "val/loss"} <= set(trainer.callback_metrics)
    system.train()
    assert not system.vae.training and not system.constraint.training and system.net.training
    path = tmp_path / "alignment.ckpt"
    trainer.save_checkpoint(path)

    saved = torch.load(path, weights_only=True)
    assert not any(k.startswith("vae.") for k in saved["state_dict"])  # the VAE has its own checkpoint
    hparams = saved["hyper_parameters"]
    assert (
        hparams["constraint_name"] == "mean_intensity" and hparams["schedule"]["num_train_timesteps"] == 100
    )

    system.eval()
    z_t, t = torch.randn(2, 2, 8, 8, 4), torch.tensor([5, 60])
    context = _batches(1, seed=2)[0]["inputs"]
    net, constraint = load_alignment(path)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    torch.testing.assert_close(net(z_t, t), system.net(z_t, t))
    torch.testing.assert_close(
        constraint.target(context, anticipate="+2sigma"),
        system.constraint.target(context, anticipate="+2sigma"),
    )
    reloaded = AlignmentSystem.load_from_checkpoint(path, vae=system.vae).eval()
    torch.testing.assert_close(reloaded(z_t, t), system(z_t, t))


def test_nbody_energy_statistic_is_the_estimators_reading_of_the_future():
    estimator = EnergyEstimator(widths=(8, 16), grid=2, hidden=16)
    estimator.set_normalization(mean=50.0, std=1e-3)  # every clip reads ≈ 50: a known F
    system = _system(NBodyEnergy(estimator))
    batch = _batches(1, seed=0)[0]
    torch.testing.assert_close(
        system.constraint.statistic(batch["targets"], batch["inputs"]),
        torch.full((4, 1), 50.0),
        atol=0.01,
        rtol=0,
    )
    # an untrained U_φ predicts ≈ 0, so the loss is ≈ 50²: F came from the estimator, not the pixels
    assert _fixed_loss(system, batch) == pytest.approx(2500.0, rel=0.05)


def test_mismatched_parts_fail_early():
    vae = AutoencoderKL(get_preset("vae_tiny"))
    with pytest.raises(ValueError, match="4 latent channels but the alignment network expects 8"):
        AlignmentSystem(
            vae,
            AlignmentNetwork(get_alignment_config("alignment_tiny", latent_channels=8)),
            get_constraint("mean_intensity"),
        )
    with pytest.raises(ValueError, match="1 statistic\\(s\\) but the alignment network predicts out_dim=2"):
        AlignmentSystem(
            vae,
            AlignmentNetwork(get_alignment_config("alignment_tiny", out_dim=2)),
            get_constraint("mean_intensity"),
        )
    with pytest.raises(ValueError, match="needs a `constraint` or a `constraint_name`"):
        AlignmentSystem(vae, AlignmentNetwork(get_alignment_config("alignment_tiny")))


def test_decoded_targets_read_the_decoder_and_jitter_perturbs_the_latent():
    system = _system()
    batch = _batches(1, seed=3)[0]
    z_data, f_data = system.regression_pair(batch, torch.Generator().manual_seed(5))
    torch.testing.assert_close(f_data, system.constraint.statistic(batch["targets"], batch["inputs"]))

    system.target = "decoded"
    z_dec, f_dec = system.regression_pair(batch, torch.Generator().manual_seed(5))
    torch.testing.assert_close(z_dec, z_data)  # same posterior sample, no jitter
    decoded = system.vae.decode(z_dec)
    torch.testing.assert_close(f_dec, system.constraint.statistic(decoded, batch["inputs"]))
    assert not torch.allclose(f_dec, f_data)  # an untrained decoder does not give the data back

    system.latent_jitter = 0.5
    z_jit, f_jit = system.regression_pair(batch, torch.Generator().manual_seed(5))
    shift = (z_jit - z_data).flatten(1).std(dim=1)  # per-sample size u·j with u ~ U(0, 1)
    assert bool((shift > 0).all()) and bool((shift < 0.5 * 1.2).all())
    torch.testing.assert_close(f_jit, system.constraint.statistic(system.vae.decode(z_jit), batch["inputs"]))


def test_bad_target_options_are_named():
    vae = AutoencoderKL(get_preset("vae_tiny"))
    net = AlignmentNetwork(get_alignment_config("alignment_tiny"))
    constraint = get_constraint("mean_intensity")
    with pytest.raises(ValueError, match="target='decod': choose 'data'"):
        AlignmentSystem(vae, net, constraint, target="decod")
    with pytest.raises(ValueError, match="latent_jitter > 0 needs target='decoded'"):
        AlignmentSystem(vae, net, constraint, latent_jitter=0.1)
    with pytest.raises(ValueError, match="latent_scale > 0"):
        AlignmentSystem(vae, net, constraint, target="decoded", latent_scale=0.0)
