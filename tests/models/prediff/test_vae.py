"""PreDiff VAE: sizes, shapes, posterior, loss pieces and the Lightning training system."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from earthcast.models.prediff.vae import (
    PRESETS,
    AutoencoderKL,
    DiagonalGaussian,
    NLayerDiscriminator,
    VAEConfig,
    VAELoss,
    get_preset,
)
from earthcast.models.prediff.vae.config import group_count
from earthcast.models.prediff.vae.loss import adaptive_weight, hinge_d_loss
from earthcast.training.vae_module import VAESystem, load_vae
from tests.conftest import quiet_trainer

# overfitting runs have no validation loader on purpose
pytestmark = pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny(**changes) -> AutoencoderKL:
    return AutoencoderKL(get_preset("vae_tiny").replace(**changes))


# ------------------------------------------------------------------------------- sizes


def test_sevirlr_parameter_count_matches_reference():
    with torch.device("meta"):
        vae = AutoencoderKL(get_preset("vae_sevirlr"))
    # SPEC §5.2: VAE 84.50 M (encoder 34.71 M, decoder 49.76 M)
    assert abs(n_params(vae) - 84.50e6) / 84.50e6 < 0.005
    assert abs(n_params(vae.encoder) - 34.71e6) / 34.71e6 < 0.005
    assert abs(n_params(vae.decoder) - 49.76e6) / 49.76e6 < 0.005
    assert n_params(vae) == 84_499_393


def test_reference_discriminator_layout():
    critic = NLayerDiscriminator.from_config(get_preset("vae_sevirlr"))
    convs = [m for m in critic.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in critic.modules()) == 3
    assert n_params(critic) == 2_763_585
    assert critic(torch.rand(1, 2, 64, 64, 1)).shape == (1, 2, 6, 6, 1)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_shapes(name):
    cfg = get_preset(name)
    side = {"vae_sevirlr": 128, "vae_nbody": 64}.get(name, 16)
    with torch.device("meta"):  # shape propagation only: the full presets cost nothing here
        vae = AutoencoderKL(cfg)
        x_hat, posterior = vae(torch.empty(2, 3, side, side, cfg.in_channels))
    h, w = cfg.latent_size(side, side)
    assert posterior.mean.shape == (2, 3, h, w, cfg.latent_channels)
    assert x_hat.shape == (2, 3, side, side, cfg.out_channels)
    expected_latent = {"vae_sevirlr": (16, 64), "vae_nbody": (16, 16), "vae_tiny": (8, 4)}[name]
    assert (h, cfg.latent_channels) == expected_latent


# -------------------------------------------------------------------------------- shapes


def test_encode_decode_shapes_non_square_and_single_frames():
    vae = tiny().eval()
    x = torch.rand(2, 3, 16, 24, 1)
    posterior = vae.encode(x)
    assert posterior.mean.shape == posterior.logvar.shape == (2, 3, 8, 12, 4)
    assert vae.decode(posterior.mode()).shape == (2, 3, 16, 24, 1)
    single = vae.encode(x[:, 0])
    assert single.mean.shape == (2, 8, 12, 4)
    assert vae.decode(single.mode()).shape == (2, 16, 24, 1)
    # frame-wise: a frame's latent does not depend on the other frames of its sequence
    torch.testing.assert_close(single.mean, posterior.mean[:, 0], rtol=1e-5, atol=1e-6)


def test_encode_rejects_sizes_off_the_factor():
    with pytest.raises(ValueError, match="multiple of the VAE's factor 2"):
        tiny().encode(torch.rand(1, 1, 15, 16, 1))
    with pytest.raises(ValueError, match="expected"):
        tiny().encode(torch.rand(16, 16, 1))


def test_every_parameter_gets_a_gradient():
    vae = tiny()
    x = torch.rand(2, 2, 16, 16, 1)
    x_hat, posterior = vae(x)
    out = VAELoss(vae.config).generator_loss(x, x_hat, posterior)
    out.loss.backward()
    missing = [n for n, p in vae.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(p.grad.abs().sum() > 0 for p in vae.parameters())


def test_mid_attention_toggle_changes_the_network():
    with_attn, without = n_params(tiny()), n_params(tiny(mid_attention=False))
    width = get_preset("vae_tiny").block_widths[-1]
    # two attention blocks (encoder and decoder mid): GN (2w) + four w×w linears with bias
    assert with_attn - without == 2 * (2 * width + 4 * (width * width + width))


# ----------------------------------------------------------------------------- posterior


def test_kl_of_standard_normal_is_zero_and_matches_closed_form():
    zeros = torch.zeros(2, 3, 4, 4, 5)
    assert torch.equal(DiagonalGaussian(zeros, zeros).kl(), torch.zeros(2, 3))
    mean, logvar = torch.randn(2, 3, 4, 4, 5), torch.randn(2, 3, 4, 4, 5)
    q = DiagonalGaussian(mean, logvar)
    normal = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    reference = torch.distributions.kl_divergence(normal, torch.distributions.Normal(0.0, 1.0))
    torch.testing.assert_close(q.kl(), reference.sum(dim=(-3, -2, -1)))
    assert (q.kl() > 0).all()


def test_logvar_is_clamped():
    q = DiagonalGaussian(torch.zeros(1, 2, 2, 1), torch.tensor([-100.0, 0.0, 5.0, 100.0]).view(1, 2, 2, 1))
    assert q.logvar.flatten().tolist() == [-30.0, 0.0, 5.0, 20.0]


def test_mode_is_deterministic_and_sample_reproducible():
    vae = tiny().eval()
    x = torch.rand(1, 2, 16, 16, 1)
    first, second = vae.encode(x), vae.encode(x)
    assert torch.equal(first.mode(), second.mode()) and torch.equal(first.mode(), first.mean)
    draw = first.sample(generator=torch.Generator().manual_seed(3))
    assert torch.equal(draw, first.sample(generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(draw, first.sample(generator=torch.Generator().manual_seed(4)))
    assert torch.equal(vae(x, sample_posterior=False)[0], vae(x, sample_posterior=False)[0])


def test_sample_has_the_posterior_moments():
    mean = torch.full((4000, 1, 1, 1), 2.0)
    q = DiagonalGaussian(mean, torch.full_like(mean, math.log(0.25)))
    draws = q.sample(generator=torch.Generator().manual_seed(0))
    assert abs(draws.mean().item() - 2.0) < 0.03 and abs(draws.std().item() - 0.5) < 0.03


# ---------------------------------------------------------------------------------- loss


def test_hinge_loss_on_known_logits():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    # real: relu(1−2)=0, relu(1−0.5)=0.5 → 0.25; fake: relu(1−2)=0, relu(1+0.5)=1.5 → 0.75
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5)
    assert hinge_d_loss(torch.ones(3), -torch.ones(3)).item() == 0.0


def test_adaptive_weight_equals_hand_computation():
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
    nll = 3.0 * w.sum()  # ∇ = 3 everywhere → ‖∇‖ = 6
    g = (w**2).sum()  # ∇ = 2w → ‖∇‖ = 2·sqrt(1 + 4 + 0.25 + 9)
    expected = 6.0 / (2.0 * math.sqrt(14.25) + 1e-4)
    assert adaptive_weight(nll, g, w).item() == pytest.approx(expected, rel=1e-6)
    assert adaptive_weight(1e9 * nll, g, w).item() == 1e4  # clamped


def test_generator_loss_with_gan_term_uses_the_adaptive_weight():
    vae = tiny()
    loss = VAELoss(vae.config)
    x = torch.rand(1, 2, 16, 16, 1)
    x_hat, posterior = vae(x)
    logits = NLayerDiscriminator.from_config(vae.config)(x_hat)
    out = loss.generator_loss(x, x_hat, posterior, logits, vae.last_layer)
    expected = out.logs["nll"] + 1e-6 * out.logs["kl"] + out.logs["d_weight"] * out.logs["g_loss"]
    torch.testing.assert_close(out.loss.detach(), expected)
    assert out.logs["d_weight"] > 0
    with pytest.raises(ValueError, match="last layer"):
        loss.generator_loss(x, x_hat, posterior, logits)


def test_reconstruction_is_summed_per_frame_and_masks_nan():
    loss = VAELoss(get_preset("vae_tiny"))
    x = torch.zeros(2, 3, 4, 4, 1)
    x_hat = torch.full_like(x, 0.5)
    nll, l1 = loss.reconstruction(x, x_hat)
    assert nll.item() == pytest.approx(0.5 * 16)  # 16 pixels of 0.5 per frame
    assert l1.item() == pytest.approx(0.5)
    x[0, 0, :2] = float("nan")  # 8 missing pixels count for nothing
    nll, l1 = loss.reconstruction(x, x_hat)
    assert nll.item() == pytest.approx(0.5 * (6 * 16 - 8) / 6) and l1.item() == pytest.approx(0.5)


def test_fixed_logvar_scales_the_likelihood():
    loss = VAELoss(get_preset("vae_tiny").replace(rec_logvar_init=math.log(2.0)))
    nll, _ = loss.reconstruction(torch.zeros(1, 1, 2, 2, 1), torch.ones(1, 1, 2, 2, 1))
    assert nll.item() == pytest.approx(4 * (1.0 / 2.0 + math.log(2.0)))
    assert "rec_logvar" not in dict(loss.named_parameters())
    assert "rec_logvar" in dict(VAELoss(loss.config.replace(learn_rec_logvar=True)).named_parameters())


# -------------------------------------------------------------------------------- config


def test_config_round_trip_and_validation():
    cfg = get_preset("vae_nbody")
    assert VAEConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.downsample_factor == 4 and get_preset("vae_sevirlr").downsample_factor == 8
    with pytest.raises(ValueError, match="valid keys"):
        cfg.replace(widths=(1,))
    with pytest.raises(ValueError, match="logvar_clamp"):
        VAEConfig(logvar_clamp=(1.0, -1.0))
    with pytest.raises(ValueError, match="vae_tiny"):
        get_preset("vae_unknown")


def test_group_count_fallback():
    assert group_count(512, 32) == 32 and group_count(8, 32) == 8 and group_count(48, 32) == 24
    assert group_count(65, 32) == 13


# ------------------------------------------------------------------------ training system


class _Sequences(Dataset):
    """Forecasting samples of bright squares: 2 input and 2 target frames of 16×16."""

    def __init__(self, n: int = 8) -> None:
        frames = torch.zeros(n, 4, 16, 16, 1)
        for i in range(n):
            for t in range(4):
                r, c = (i + t) % 10, (2 * i + t) % 10
                frames[i, t, r : r + 6, c : c + 6] = 0.3 + 0.08 * i
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"inputs": self.frames[i, :2], "targets": self.frames[i, 2:]}


def _l1(system: VAESystem, data: _Sequences) -> float:
    frames = data.frames
    with torch.no_grad():
        return (system(frames) - frames).abs().mean().item()


def test_training_overfits_a_fixed_batch():
    data = _Sequences()
    system = VAESystem(tiny(use_discriminator=False), optim={"lr": 3e-3, "warmup_fraction": 0.0})
    before = _l1(system, data)
    loader = DataLoader(data, batch_size=8)
    quiet_trainer(max_steps=40).fit(system, loader)
    assert system.discriminator is None
    assert int(system.generator_steps) == 40
    after = _l1(system, data)
    # beyond "predict the dark background" (L1 = mean |x|): the squares themselves are learnt
    assert after < 0.25 * before and after < 0.7 * data.frames.abs().mean().item()
    assert {"train/rec_loss", "train/kl", "train/nll"} <= set(system.trainer.callback_metrics)


class _CriticWatch(L.Callback):
    """Records, after each batch, whether the critic's weights moved since the start."""

    def on_train_start(self, trainer, system) -> None:
        self.start = [p.detach().clone() for p in system.discriminator.parameters()]
        self.moved: list[bool] = []

    def on_train_batch_end(self, trainer, system, outputs, batch, batch_idx) -> None:
        now = list(system.discriminator.parameters())
        self.moved.append(any(not torch.equal(a, b) for a, b in zip(self.start, now)))


def test_gan_switches_on_after_disc_start_and_round_trips(tmp_path):
    vae = tiny()  # vae_tiny: GAN from generator step 2, 2-layer critic
    system = VAESystem(vae, optim={"lr": 1e-3})
    watch = _CriticWatch()
    trainer = quiet_trainer(max_steps=100, max_epochs=1, limit_val_batches=1, callbacks=[watch])
    loader = DataLoader(_Sequences(10), batch_size=2)
    trainer.fit(system, loader, loader)
    # 5 batches: generator steps 0–4, critic from step 2 on; Lightning counts both optimisers
    assert (int(system.generator_steps), int(system.critic_steps)) == (5, 3)
    assert trainer.global_step == 8
    assert watch.moved == [False, False, True, True, True]
    assert [s.last_epoch for s in system.lr_schedulers()] == [5, 5]  # one clock for both
    metrics = trainer.callback_metrics
    assert {"train/d_loss", "train/d_weight", "train/g_loss", "val/rec_loss", "val/mse"} <= set(metrics)

    path = tmp_path / "vae.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_vae(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert loaded.config == vae.config
    x = torch.rand(1, 2, 16, 16, 1)
    torch.testing.assert_close(loaded(x, sample_posterior=False)[0], system(x))
    restored = VAESystem.load_from_checkpoint(path)
    assert int(restored.generator_steps) == 5 and restored.discriminator is not None


def test_nan_pixels_are_ignored_in_training():
    data = _Sequences(4)
    data.frames[0, 0, :4] = float("nan")
    system = VAESystem(tiny(use_discriminator=False), accumulate_grad_batches=2)
    quiet_trainer(max_steps=-1, max_epochs=1).fit(system, DataLoader(data, batch_size=2))
    assert int(system.generator_steps) == 1  # two batches, accumulated into one step
    assert all(torch.isfinite(p).all() for p in system.vae.parameters())
    assert torch.isfinite(system.trainer.callback_metrics["train/loss"])


def test_load_vae_rejects_other_checkpoints(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model_name": "x"}}, path)
    with pytest.raises(ValueError, match="not a VAE checkpoint"):
        load_vae(path)
    with pytest.raises(ValueError, match="use_discriminator=False"):
        VAESystem(tiny(use_discriminator=False), NLayerDiscriminator())
