"""``torch.compile`` of Earthformer: one graph, forward and backward, the eager function exactly.

The compiled networks are traced with the ``aot_eager`` backend: Dynamo and AOTAutograd (the
parts that decide what runs, including the decomposed backward) without Inductor's C++ code
generation, which takes minutes on a CPU. ``fullgraph=True`` makes any graph break an error, so
the tests fail if a fused eager kernel (numpy dropout, oneDNN row views, scratch buffers) leaks
into a traced region. float64 so that the comparison is not blurred by LeakyReLU/GELU kinks that
float32 rounding can flip.
"""

from __future__ import annotations

import pytest
import torch

import earthcast
from earthcast.nn.precision import plain_ops

NO_DROPOUT = {"attn_drop": 0.0, "proj_drop": 0.0, "ffn_drop": 0.0}

# a small network through the less common paths: globals in encoder and decoder (own q/k/v,
# self-attention, FFN), masked (`ignore`) padding on a non-divisible grid, the stack-conv stem,
# interpolated decoder queries, gated FFNs, T_out ≠ T_in
FEATURE_RICH = {
    "input_shape": (3, 20, 18, 2),
    "target_shape": (2, 20, 18, 1),
    "base_units": 16,
    "num_heads": 2,
    "enc_depth": (1, 1),
    "dec_depth": (1, 1),
    "num_global_vectors": 2,
    "use_dec_self_global": True,
    "use_dec_cross_global": True,
    "use_global_vector_ffn": True,
    "use_global_self_attn": True,
    "separate_global_qkv": True,
    "padding_type": "ignore",
    "stem": "stack_conv",
    "stack_dims": (8, 16),
    "stack_factors": (2, 1),
    "stack_num_convs": (1, 1),
    "z_init_method": "nearest_interp",
    "gated_ffn": True,
    "ffn_activation": "leaky",
}


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same_grads(grads: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert grads.keys() == expected.keys() and len(grads) > 0
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-8, atol=1e-12, msg=name)


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [("earthformer_enso_tiny", {}), ("earthformer_tiny", FEATURE_RICH)],
    ids=["enso_tiny", "feature_rich"],
)
def test_compiled_earthformer_equals_eager(preset, overrides):
    model = earthcast.create_model(preset, **NO_DROPOUT, **overrides).double()
    x = torch.randn(2, *model.config.input_shape, dtype=torch.float64)

    model.train()
    eager_out = model(x)
    eager_out.square().mean().backward()
    eager_grads = _grads(model)
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        eager_eval = model.eval()(x)

    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    model.train()
    out = compiled(x)
    out.square().mean().backward()
    grads = _grads(model)
    with torch.no_grad():
        compiled_eval = compiled.eval()(x)

    torch.testing.assert_close(out, eager_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(compiled_eval, eager_eval, rtol=1e-10, atol=1e-12)
    _assert_same_grads(grads, eager_grads)


def test_compiled_training_step_with_dropout_is_one_graph():
    """With dropout on, the compiled step still traces as one graph, gives every parameter a
    gradient, and draws a new mask on every call."""
    model = earthcast.create_model("earthformer_enso_tiny").train()
    assert model.config.attn_drop > 0 and model.config.ffn_drop > 0
    x = torch.randn(1, *model.config.input_shape)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    first = compiled(x)
    first.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    second = compiled(x)
    assert torch.isfinite(first).all() and not torch.equal(first, second)


def test_plain_ops_inside_a_compiled_region_only():
    seen = []

    def probe(t):
        seen.append(plain_ops(t))
        return t * 2

    t = torch.ones(3)
    probe(t)
    torch._dynamo.reset()
    torch.compile(probe, backend="eager", fullgraph=True)(t)
    assert seen == [False, True]


def test_dropout_while_compiled_is_unbiased():
    from earthcast.nn.dropout import dropout

    x = torch.ones(200_000)
    torch._dynamo.reset()
    y = torch.compile(lambda t: dropout(t, 0.3), backend="aot_eager", fullgraph=True)(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.3) < 0.01
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))


def test_compiled_prediff_denoiser_equals_eager():
    from earthcast.models.prediff.denoiser.config import get_denoiser_config
    from earthcast.models.prediff.denoiser.earthformer_unet import EarthformerUNet

    cfg = get_denoiser_config("prediff_tiny", dropout=0.0)
    model = EarthformerUNet(cfg).double().train()
    h, w = cfg.latent_hw
    z_t = torch.randn(2, cfg.target_len, h, w, cfg.latent_channels, dtype=torch.float64)
    z_cond = torch.randn(2, cfg.context_len, h, w, cfg.latent_channels, dtype=torch.float64)
    t = torch.tensor([3, 500])
    model(z_t, t, z_cond).square().mean().backward()
    eager_grads = _grads(model)
    model.zero_grad(set_to_none=True)

    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    compiled(z_t, t, z_cond).square().mean().backward()
    grads = _grads(model)
    _assert_same_grads(grads, eager_grads)
