"""Earthformer: presets, parameter counts, shapes, gradients, config validation."""

from __future__ import annotations

import pytest
import torch

import earthcast
from earthcast.models.earthformer import Earthformer, EarthformerConfig, get_preset

REFERENCE_PARAMS = {
    "earthformer_sevir": 8_659_677,
    "earthformer_sevirlr": 1_505_069,
    "earthformer_nbody": 6_702_109,
    "earthformer_moving_mnist": 6_702_109,
    "earthformer_enso": 1_394_325,
}
TINY = sorted(n for n in earthcast.list_models() if n.startswith("earthformer") and n.endswith("_tiny"))


@pytest.mark.parametrize("name,count", sorted(REFERENCE_PARAMS.items()))
def test_parameter_counts_equal_reference(name, count):
    model = earthcast.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == count


def _check_all_gradients(model, x):
    model.train()
    out = model(x)
    assert out.shape == (x.shape[0], *model.config.target_shape)
    out.square().mean().backward()
    dead = model.unused_parameter_names()
    for name, p in model.named_parameters():
        if name in dead:
            assert p.grad is None, f"{name} was declared unused but received a gradient"
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("name", TINY)
def test_tiny_presets_forward_backward_every_parameter(name):
    model = earthcast.create_model(name)
    _check_all_gradients(model, torch.randn(2, *model.config.input_shape))


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_full_presets_forward_backward(name):
    model = earthcast.create_model(name, attn_drop=0.0, proj_drop=0.0, ffn_drop=0.0)
    _check_all_gradients(model, torch.randn(1, *model.config.input_shape))


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(use_dec_self_global=True),
        dict(use_dec_self_global=True, dec_self_update_global=False),
        dict(use_dec_cross_global=True),
        dict(use_dec_cross_global=True, use_dec_self_global=True, dec_self_update_global=False),
        dict(use_dec_self_global=True, dec_use_first_self_attn=True, use_global_vector_ffn=True),
        dict(separate_global_qkv=True, use_global_self_attn=True, use_global_vector_ffn=True),
        dict(
            separate_global_qkv=True,
            use_dec_self_global=True,
            enc_use_inter_ffn=False,
            dec_use_inter_ffn=False,
        ),
        dict(use_dec_cross_global=True, dec_cross_start=1, use_global_vector_ffn=True),
        dict(use_dec_self_global=True, separate_global_qkv=True, global_dim_ratio=2, dec_cross_start=1),
    ],
)
def test_unused_parameter_names_are_exactly_those_without_gradient(overrides):
    """The global-vector chain's dead writers, derived from the structure, against autograd."""
    cfg = get_preset("earthformer_nbody_tiny").replace(attn_drop=0.0, proj_drop=0.0, ffn_drop=0.0)
    torch.manual_seed(0)
    model = Earthformer(cfg, num_global_vectors=2, **overrides)
    model(torch.randn(1, *model.config.input_shape)).square().mean().backward()
    no_grad = {name for name, p in model.named_parameters() if p.grad is None}
    assert model.unused_parameter_names() == no_grad


def test_sevir_dead_parameters_are_only_the_last_global_update():
    dead = earthcast.create_model("earthformer_sevir").unused_parameter_names()
    assert dead and all(".glob." in n and n.startswith("encoder.levels.1.0.attns.2.") for n in dead)
    assert not earthcast.create_model("earthformer_nbody").unused_parameter_names()


@pytest.mark.parametrize(
    "overrides",
    [
        dict(
            input_shape=(4, 18, 22, 3), target_shape=(6, 18, 22, 1)
        ),  # non-divisible, T_out > T_in, C_in ≠ C_out
        dict(input_shape=(6, 16, 20, 2), target_shape=(3, 16, 20, 2), padding_type="ignore"),
        dict(input_shape=(4, 17, 15, 1), target_shape=(5, 17, 15, 1), padding_type="nearest"),
        dict(z_init_method="nearest_interp"),
        dict(z_init_method="last", dec_use_first_self_attn=True),
        dict(z_init_method="mean", dec_hierarchical_pos_embed=True, target_shape=(7, 16, 16, 1)),
        dict(dec_pattern_time="target", target_shape=(6, 16, 16, 1)),
        dict(
            enc_pattern="video_swin_2x4", dec_self_pattern="divided_st", dec_cross_pattern="cross_2x2_heter"
        ),
        dict(
            num_global_vectors=2,
            use_dec_self_global=True,
            use_dec_cross_global=True,
            use_global_vector_ffn=True,
            separate_global_qkv=True,
            global_dim_ratio=2,
        ),
        dict(num_global_vectors=3, use_dec_cross_global=True, use_global_self_attn=True),
        dict(
            gated_ffn=True,
            ffn_activation="leaky",
            norm_layer="rms_norm",
            enc_use_inter_ffn=False,
            dec_use_inter_ffn=False,
            pos_embed_type="t+h+w",
        ),
        dict(checkpoint_level=2, dec_cross_last_n_frames=2, dec_cross_start=1),
        dict(attention_backend="eager"),
    ],
)
def test_configuration_space(overrides):
    cfg = get_preset("earthformer_nbody_tiny").replace(**overrides)
    model = Earthformer(cfg)
    _check_all_gradients(model, torch.randn(2, *cfg.input_shape))


def test_stack_conv_stem_with_non_divisible_frames():
    cfg = get_preset("earthformer_sevir_tiny").replace(
        input_shape=(3, 50, 41, 2), target_shape=(2, 50, 41, 1)
    )
    _check_all_gradients(Earthformer(cfg), torch.randn(1, *cfg.input_shape))


def test_zeros_init_gives_identical_queries_for_all_samples():
    model = earthcast.create_model("earthformer_nbody_tiny").eval()
    z = model._init_queries(torch.randn(3, 4, 4, 4, 32))
    torch.testing.assert_close(z[0], z[2])


def test_decoder_pattern_time_quirk_changes_enso_decoder():
    ref = Earthformer(get_preset("earthformer_enso"))
    fixed = Earthformer(get_preset("earthformer_enso").replace(dec_pattern_time="target"))
    ref_cuboid = ref.decoder.self_blocks[0][0].attns[0].cuboid_size
    assert ref_cuboid == (12, 1, 1)  # reference: sized from T_in, 14 frames padded to 24
    assert fixed.decoder.self_blocks[0][0].attns[0].cuboid_size == (14, 1, 1)


def test_wrong_input_shape_names_expected_shape():
    model = earthcast.create_model("earthformer_nbody_tiny")
    with pytest.raises(ValueError, match=r"\(B, 4, 16, 16, 1\)"):
        model(torch.randn(1, 4, 16, 15, 1))


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(padding_type="reflect"), "padding_type"),
        (dict(enc_pattern="axail"), "not a registered pattern"),
        (dict(input_shape=(4, 16, 16, 1), target_shape=(4, 8, 16, 1)), "must equal target H, W"),
        (dict(enc_depth=(1, 1), dec_depth=(1,)), "same number of levels"),
        (dict(base_units=18), "divisible by num_heads|multiple of 16"),
        (dict(global_dim_ratio=2), "separate_global_qkv"),
        (
            dict(enc_depth=(1, 0), dec_depth=(1, 1)),
            r"enc_depth=\(1, 0\): every level needs at least one block",
        ),
        (dict(dec_depth=(1, 0)), "dec_depth"),
        (dict(num_global_vectors=-1), "num_global_vectors=-1 must be ≥ 0"),
    ],
)
def test_invalid_configs_are_rejected_with_a_reason(bad, match):
    with pytest.raises(ValueError, match=match):
        EarthformerConfig(**bad)


def test_a_sample_without_batch_axis_is_named():
    model = earthcast.create_model("earthformer_nbody_tiny")
    x = torch.rand(*model.config.input_shape)
    with pytest.raises(ValueError, match=r"without the batch axis; pass x\[None\]"):
        model(x)


def test_unknown_override_lists_valid_keys():
    with pytest.raises(ValueError, match="base_units"):
        earthcast.create_model("earthformer_nbody_tiny", base_unit=8)
    with pytest.raises(ValueError, match="earthformer_nbody"):
        earthcast.create_model("earthformer_nbdy")
