"""Rainformer-specific behaviour: (shifted) window attention, the gate fusion unit, shapes, config."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from earthcast.models import create_model
from earthcast.models.baselines.rainformer import (
    GateFusionUnit,
    Rainformer,
    RainformerConfig,
    WindowMSA,
    window_and_shift,
)


def dense_window_attention(msa: WindowMSA, x: torch.Tensor) -> torch.Tensor:
    """Reference: full attention over every token of ``x (B, H, W, C)`` with an explicit mask.

    A shifted tiling is the regular tiling offset by the shift, without wrap-around: along an axis
    token ``i`` lies in window ``(i + w - s) // w``; two tokens attend each other iff they share
    that window on both axes. Written from coordinates, independent of rolling and padding.
    """
    h, w = x.shape[1:3]
    (wh, ww), (sh, sw) = msa.window, msa.shift
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    win_y, win_x = (ys + wh - sh) // wh, (xs + ww - sw) // ww
    same = (win_y[:, None] == win_y[None, :]) & (win_x[:, None] == win_x[None, :])
    dy, dx = ys[:, None] - ys[None, :], xs[:, None] - xs[None, :]
    # Offsets outside the table only occur between tokens of different windows (masked anyway).
    bias = msa.pos_bias[(dy + wh - 1).clamp(0, 2 * wh - 2), (dx + ww - 1).clamp(0, 2 * ww - 2)]
    q, k, v = rearrange(msa.to_qkv(x), "b h w (three m d) -> three b m (h w) d", three=3, m=msa.heads)
    logits = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5 + bias
    attn = logits.masked_fill(~same, float("-inf")).softmax(dim=-1)
    return msa.to_out(rearrange(attn @ v, "b m (h w) d -> b h w (m d)", h=h))


@pytest.mark.parametrize("shift", [(0, 0), (2, 1)])
@pytest.mark.parametrize("size", [(8, 8), (10, 7)])  # (10, 7) is padded to (12, 8) inside
def test_window_attention_matches_dense_masked_reference(size, shift):
    torch.manual_seed(0)
    msa = WindowMSA(dim=6, heads=2, head_dim=3, window=(4, 2), shift=shift)
    torch.nn.init.normal_(msa.pos_bias)  # a visible bias, so a mis-indexed table would show
    x = torch.randn(2, *size, 6)
    torch.testing.assert_close(msa(x), dense_window_attention(msa, x), atol=1e-5, rtol=1e-5)


def test_window_attention_is_local_and_shift_moves_the_windows():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 8, 4)
    x2 = x.clone()
    x2[0, 1, 1] += 1.0  # a token in the top-left 4×4 window
    regular = WindowMSA(dim=4, heads=1, head_dim=4, window=(4, 4), shift=(0, 0))
    changed = (regular(x2) - regular(x)).abs().sum(-1)[0] > 0  # (H, W)
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[:4, :4] = True
    assert torch.equal(changed, expected)
    shifted = WindowMSA(dim=4, heads=1, head_dim=4, window=(4, 4), shift=(2, 2))
    shifted.load_state_dict(regular.state_dict())
    changed = (shifted(x2) - shifted(x)).abs().sum(-1)[0] > 0
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[:2, :2] = True  # the shifted tiling's corner piece, not wrapped to the far side
    assert torch.equal(changed, expected)


def test_window_and_shift_adapt_to_small_and_rectangular_maps():
    assert window_and_shift((96, 96), 12) == ((12, 12), (6, 6))
    assert window_and_shift((3, 6), 6) == ((3, 6), (0, 0))  # one window: no shift
    assert window_and_shift((4, 16), 8) == ((4, 8), (0, 4))  # shift only along the long axis


def test_gate_fusion_unit_follows_its_gates():
    torch.manual_seed(0)
    gfu = GateFusionUnit(dim=3, resolution=(4, 5))
    g, local = torch.randn(2, 4, 5, 3), torch.randn(2, 3, 4, 5)
    norm = gfu.gates[1]
    with torch.no_grad():
        norm.weight.zero_()
        norm.bias[:3], norm.bias[3:] = 30.0, -30.0  # Z = σ(30) ≈ 1, R = σ(-30) ≈ 0
    only_global = rearrange(gfu.conv_global(rearrange(g, "b h w c -> b c h w")), "b c h w -> b h w c")
    torch.testing.assert_close(gfu(g, local), only_global)
    with torch.no_grad():
        norm.bias[:3], norm.bias[3:] = -30.0, 30.0
    only_local = rearrange(gfu.conv_local(local), "b c h w -> b h w c")
    torch.testing.assert_close(gfu(g, local), only_local)


@pytest.mark.parametrize(("height", "width"), [(24, 48), (20, 28)])
def test_arbitrary_frame_sizes_are_padded_and_cropped(height, width):
    torch.manual_seed(0)
    model = create_model("rainformer_tiny", in_len=3, out_len=2, height=height, width=width, channels_out=2)
    model.eval()
    x = torch.randn(1, 3, height, width, 1)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 2, height, width, 2)
    assert torch.isfinite(y).all()


def test_frames_are_forecast_in_one_shot_from_all_input_channels():
    torch.manual_seed(0)
    model = create_model("rainformer_tiny", in_len=3, out_len=2, channels_in=2, channels_out=1).eval()
    assert not Rainformer.accepts_targets
    x = torch.randn(1, 3, 16, 16, 2)
    x2 = x.clone()
    x2[:, 0, :, :, 1] += 1.0  # oldest frame, auxiliary channel
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x2))


def test_single_channel_forecast_keeps_a_live_final_stage():
    torch.manual_seed(0)
    model = create_model("rainformer_tiny", in_len=2, out_len=1)
    model(torch.randn(2, 2, 16, 16, 1)).square().mean().backward()
    dead = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]
    assert not dead


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="heads"):
        RainformerConfig(heads=(3, 6))
    with pytest.raises(ValueError, match="hidden_dim"):
        RainformerConfig(hidden_dim=4)  # final expansion: 8 channels cannot split into 4×4 pixels
    with pytest.raises(ValueError, match="window_size"):
        RainformerConfig(window_size=0)
