"""PreDiff latent networks: Earthformer-UNet denoiser and alignment network U_φ (SPEC §5.4, §5.5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from earthcast.models.prediff.denoiser import (
    AlignmentNetwork,
    DenoiserConfig,
    EarthformerUNet,
    get_alignment_config,
    get_denoiser_config,
)
from earthcast.models.prediff.denoiser.resnet3d import ResNetBlock3D, group_count
from earthcast.models.prediff.denoiser.time_embedding import timestep_embedding


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _unzero_(model: torch.nn.Module) -> torch.nn.Module:
    """Give the zero-initialised weight tensors small random values so every path carries signal."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2 and not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _denoiser_inputs(cfg: DenoiserConfig, b: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    grid = (*cfg.latent_hw, cfg.latent_channels)
    z_t = torch.randn(b, cfg.target_len, *grid, generator=g)
    z_cond = torch.randn(b, cfg.context_len, *grid, generator=g)
    t = torch.randint(0, 1000, (b,), generator=g)
    return z_t, t, z_cond


@pytest.fixture(scope="module")
def tiny_unet() -> EarthformerUNet:
    torch.manual_seed(0)
    return _unzero_(EarthformerUNet(get_denoiser_config("prediff_tiny"))).eval()


# --- parameter counts (meta device: no memory, no init cost) ------------------------------------


def test_reference_parameter_counts():
    with torch.device("meta"):
        unet = EarthformerUNet(get_denoiser_config("prediff_sevirlr"))
        align = AlignmentNetwork(get_alignment_config("alignment_sevirlr"))
    assert abs(_count(unet) / 136.82e6 - 1) < 0.005
    assert abs(_count(align) / 8.94e6 - 1) < 0.01
    assert _count(unet) == 136_817_538  # regression guard: the documented exact count
    assert _count(align) == 8_937_033


def test_unshared_time_blocks_add_exactly_the_extra_blocks():
    cfg = get_denoiser_config("prediff_sevirlr")
    with torch.device("meta"):
        shared = EarthformerUNet(cfg)
        unshared = EarthformerUNet(cfg.replace(share_time_block_per_level=False))
        per_level = [_count(ResNetBlock3D(w, w, cfg.time_hidden_dim)) for w in cfg.level_widths()]
    extra = sum(2 * (d - 1) * n for d, n in zip(cfg.depth, per_level))  # down + up path
    assert _count(unshared) - _count(shared) == extra > 100e6


def test_reference_shapes_of_levels():
    assert get_denoiser_config("prediff_sevirlr").level_shapes() == [(13, 16, 16, 256), (13, 8, 8, 512)]
    assert get_alignment_config("alignment_sevirlr").level_shapes() == [(6, 16, 16, 128), (6, 8, 8, 256)]
    with torch.device("meta"):
        unet = EarthformerUNet(get_denoiser_config("prediff_sevirlr"))
    assert unet.first_proj.norm1.num_groups == 65  # 64 latent channels + indicator
    assert unet.first_proj.norm2.num_groups == 32


# --- denoiser behaviour ---------------------------------------------------------------------------


def test_fresh_denoiser_predicts_exact_zero():
    cfg = get_denoiser_config("prediff_tiny")
    out = EarthformerUNet(cfg).eval()(*_denoiser_inputs(cfg))
    assert out.shape == (2, cfg.target_len, *cfg.latent_hw, cfg.latent_channels)
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("share", [True, False])
def test_every_parameter_gets_a_gradient(share):
    cfg = get_denoiser_config("prediff_tiny", share_time_block_per_level=share, dropout=0.1)
    model = _unzero_(EarthformerUNet(cfg)).train()
    z_t, t, z_cond = _denoiser_inputs(cfg)
    out = model(z_t, t, z_cond)
    assert out.shape == z_t.shape
    (out * torch.randn_like(out)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_zero_init_model_trains_every_parameter_after_a_few_steps():
    """Without manual perturbation: the zeroed layers move first, then gradients reach the rest."""
    cfg = get_denoiser_config("prediff_tiny")
    torch.manual_seed(0)
    model = EarthformerUNet(cfg).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    z_t, t, z_cond = _denoiser_inputs(cfg)
    for _ in range(4):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(z_t, t, z_cond), z_t).backward()
        opt.step()
    frozen = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not frozen


def _shift_first_frame(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[:, 0] += 0.5
    return x


def test_output_depends_on_t_z_cond_and_z_t(tiny_unet):
    cfg = tiny_unet.config
    z_t, t, z_cond = _denoiser_inputs(cfg)
    with torch.no_grad():
        base = tiny_unet(z_t, t, z_cond)
        changes = {
            "t": tiny_unet(z_t, t + 100, z_cond),
            "z_cond (first frame only)": tiny_unet(z_t, t, _shift_first_frame(z_cond)),
            "z_t": tiny_unet(z_t + 0.5, t, z_cond),
        }
    for what, out in changes.items():
        assert (out - base).abs().max() > 1e-4, f"output does not depend on {what}"


def test_samples_in_a_batch_are_independent(tiny_unet):
    z_t, t, z_cond = _denoiser_inputs(tiny_unet.config, b=3)
    with torch.no_grad():
        full = tiny_unet(z_t, t, z_cond)
        other = z_t.clone()
        other[1:] = torch.randn_like(other[1:])
        single = tiny_unet(other, t, z_cond)
    torch.testing.assert_close(full[0], single[0], rtol=1e-5, atol=1e-6)


def test_scalar_timestep_is_broadcast(tiny_unet):
    z_t, _, z_cond = _denoiser_inputs(tiny_unet.config)
    with torch.no_grad():
        a = tiny_unet(z_t, torch.tensor(7), z_cond)
        b = tiny_unet(z_t, torch.tensor([7, 7]), z_cond)
    torch.testing.assert_close(a, b)


def test_indicator_marks_context_and_changes_the_prediction(tiny_unet):
    cfg = tiny_unet.config
    z_t, t, z_cond = _denoiser_inputs(cfg)
    seen = []

    def capture(module, args):
        seen.append(args[0].detach().clone())

    def swap(module, args):
        x = args[0].clone()
        x[..., -1] = 1 - x[..., -1]  # context marked as noisy and noisy as context
        return (x, *args[1:])

    handle = tiny_unet.first_proj.register_forward_pre_hook(capture)
    with torch.no_grad():
        base = tiny_unet(z_t, t, z_cond)
    handle.remove()
    x = seen[0]
    assert x.shape == (2, cfg.num_frames, *cfg.latent_hw, cfg.latent_channels + 1)
    expected = torch.tensor([1.0] * cfg.context_len + [0.0] * cfg.target_len)
    assert torch.equal(x[..., -1], expected[None, :, None, None].expand_as(x[..., -1]))
    torch.testing.assert_close(x[:, : cfg.context_len, ..., :-1], z_cond, rtol=0, atol=0)
    torch.testing.assert_close(x[:, cfg.context_len :, ..., :-1], z_t, rtol=0, atol=0)

    handle = tiny_unet.first_proj.register_forward_pre_hook(swap)
    with torch.no_grad():
        swapped = tiny_unet(z_t, t, z_cond)
    handle.remove()
    assert (swapped - base).abs().max() > 1e-4


def test_odd_grid_and_lengths():
    cfg = get_denoiser_config("prediff_tiny", latent_hw=(6, 5), context_len=2, target_len=3)
    model = _unzero_(EarthformerUNet(cfg))
    z_t, t, z_cond = _denoiser_inputs(cfg)
    out = model(z_t, t, z_cond)
    assert out.shape == z_t.shape
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_wrong_shapes_raise_helpful_errors(tiny_unet):
    z_t, t, z_cond = _denoiser_inputs(tiny_unet.config)
    with pytest.raises(ValueError, match="z_cond must be"):
        tiny_unet(z_t, t, z_cond[:, :-1])
    with pytest.raises(ValueError, match="t must be"):
        tiny_unet(z_t, t[:1], z_cond)


# --- building blocks ---------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [256, 7])
def test_sinusoidal_embedding_against_numpy(dim):
    t = np.array([0, 1, 17, 999])
    half = dim // 2
    expected = np.zeros((len(t), dim))
    for i, step in enumerate(t):
        for k in range(half):
            angle = step * 10_000.0 ** (-k / half)
            expected[i, k], expected[i, half + k] = math.cos(angle), math.sin(angle)
    got = timestep_embedding(torch.from_numpy(t), dim).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert got.dtype == np.float32


def test_group_norm_rule():
    assert group_count(65) == 65 and group_count(256) == 32 and group_count(64) == 32
    block = ResNetBlock3D(65, 256)
    assert (block.norm1.num_groups, block.norm2.num_groups) == (65, 32)


def test_time_block_adds_embedding_between_convolutions():
    torch.manual_seed(0)
    block = ResNetBlock3D(16, 16, emb_dim=16, norm_groups=4)
    x = torch.randn(2, 3, 4, 4, 16)
    block.zero_init_output_()
    torch.testing.assert_close(block(x, torch.randn(2, 16)), x)  # zeroed last conv: identity
    _unzero_(block)
    emb = torch.randn(2, 16)
    assert (block(x, emb) - block(x, emb + 1)).abs().max() > 1e-4
    with pytest.raises(ValueError, match="embedding"):
        block(x)


# --- alignment network U_φ --------------------------------------------------------------------------


def test_alignment_shape_and_dependence_on_z_t_and_t():
    cfg = get_alignment_config("alignment_tiny")
    torch.manual_seed(0)
    model = _unzero_(AlignmentNetwork(cfg)).eval()
    z_t = torch.randn(3, cfg.target_len, *cfg.latent_hw, cfg.latent_channels)
    t = torch.tensor([0, 400, 999])
    with torch.no_grad():
        out = model(z_t, t)
        assert out.shape == (3, cfg.target_len, 1)
        assert (model(z_t, t + 50) - out).abs().max() > 1e-5
        assert (model(z_t + 0.5, t) - out).abs().max() > 1e-5
    z = z_t.clone().requires_grad_(True)  # guidance differentiates U_φ w.r.t. z_t
    model(z, t).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_alignment_overfits_per_frame_mean():
    cfg = get_alignment_config("alignment_tiny")
    torch.manual_seed(0)
    model = AlignmentNetwork(cfg)
    level = torch.rand(8, cfg.target_len, 1, 1, 1) * 2 - 1
    z = level + 0.5 * torch.randn(8, cfg.target_len, *cfg.latent_hw, cfg.latent_channels)
    target = z.mean(dim=(2, 3, 4))[..., None]  # (B, T, 1)
    t = torch.randint(0, 1000, (8,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.mse_loss(model(z, t), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


# --- configs -----------------------------------------------------------------------------------------


def test_config_validation_and_registry():
    with pytest.raises(ValueError, match="prediff_sevirlr"):
        get_denoiser_config("prediff_nope")
    with pytest.raises(ValueError, match="unknown DenoiserConfig keys"):
        get_denoiser_config("prediff_tiny", widht=3)
    with pytest.raises(ValueError, match="num_heads"):
        DenoiserConfig(base_units=30, num_heads=4)
    with pytest.raises(ValueError, match="pattern"):
        DenoiserConfig(pattern="nope")
    with pytest.raises(ValueError, match="channels per GroupNorm group"):
        get_denoiser_config("prediff_tiny", norm_groups=32)
    cfg = get_denoiser_config("prediff_nbody")
    assert cfg.num_frames == 20 and cfg.level_shapes()[0] == (20, 16, 16, 128)
    assert get_alignment_config("alignment_nbody").latent_channels == cfg.latent_channels
    assert DenoiserConfig(**cfg.to_dict()) == cfg
