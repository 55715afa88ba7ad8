"""UNet baseline: time stacking order, pad-and-crop for any frame size, norm variants, config errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from earthcast.models import create_model
from earthcast.models.baselines._base import crop_padding, pad_to_multiple
from earthcast.models.baselines.unet import UNet, UNetConfig


def _tiny(**overrides) -> UNet:
    torch.manual_seed(0)
    return create_model("unet_tiny", **overrides).eval()


def test_pad_to_multiple_round_trip_and_centring():
    x = torch.randn(2, 3, 13, 11)
    padded, pad = pad_to_multiple(x, 4)
    assert padded.shape == (2, 3, 16, 12)
    assert pad == (0, 1, 1, 2)  # (left, right, top, bottom): the odd pixel goes bottom/right
    assert torch.equal(crop_padding(padded, pad), x)
    assert padded[:, :, 0].abs().sum() == 0 and padded[:, :, -2:].abs().sum() == 0


def test_non_divisible_frame_equals_cropped_run_on_explicitly_padded_frame():
    small = _tiny(in_len=2, out_len=2, height=13, width=11)  # depth 2: padded to 16×12
    big = _tiny(in_len=2, out_len=2, height=16, width=12)
    big.load_state_dict(small.state_dict())  # fully convolutional: same weights fit both sizes
    x = torch.randn(1, 2, 13, 11, 1)
    x_padded = F.pad(x, (0, 0, 0, 1, 1, 2))  # (B, T, H, W, C): W by (0, 1), H by (1, 2)
    with torch.no_grad():
        y, y_big = small(x), big(x_padded)
    assert y.shape == (1, 2, 13, 11, 1)
    torch.testing.assert_close(y, y_big[:, :, 1:14, 0:11])


def test_output_frames_are_unstacked_time_major():
    model = _tiny(in_len=2, out_len=3, channels_out=2)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[1 * 2 + 0] = 1.0  # stacked channel (t=1, c=0)
        y = model(torch.randn(1, 2, 16, 16, 1))
    expected = torch.zeros_like(y)
    expected[:, 1, :, :, 0] = 1.0
    assert torch.equal(y, expected)


def test_input_frames_are_stacked_time_major():
    model = _tiny(in_len=3, out_len=1, channels_in=2)
    first_conv = model.down[0][0]
    with torch.no_grad():
        kept = first_conv.weight[:, 1 * 2 + 0].clone()  # stacked channel (t=1, c=0)
        first_conv.weight.zero_()
        first_conv.weight[:, 1 * 2 + 0] = kept
    x = torch.randn(1, 3, 16, 16, 2)
    other = torch.randn_like(x)
    other[:, 1, :, :, 0] = x[:, 1, :, :, 0]  # only frame 1, channel 0 kept
    changed = x.clone()
    changed[:, 1, :, :, 0] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(other))
        assert not torch.allclose(model(x), model(changed))


def test_samples_are_independent_in_eval():
    model = _tiny()
    x = torch.randn(2, 4, 16, 16, 1)
    with torch.no_grad():
        y = model(x)
        x[1] = torch.randn_like(x[1])
        torch.testing.assert_close(model(x)[0], y[0])


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_norm_variants_train_every_parameter(norm):
    torch.manual_seed(0)
    model = create_model("unet_tiny", norm=norm, height=12, width=20)
    kinds = {type(m).__name__ for m in model.modules()}
    assert ("BatchNorm2d" in kinds) == (norm == "batch") and ("GroupNorm" in kinds) == (norm == "group")
    model(torch.randn(2, 4, 12, 20, 1)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_sevir_preset_layout():
    with torch.device("meta"):
        model = create_model("unet_sevir")
    widths = [block[0].out_channels for block in model.down]
    assert widths == [32, 64, 128, 256]
    assert model.bottleneck[0].out_channels == 1024
    assert model.down[0][0].in_channels == 13 and model.head.out_channels == 12


@pytest.mark.parametrize(
    ("field", "value"), [("depth", 0), ("base_channels", 0), ("bottleneck_mult", 0), ("norm", "layer")]
)
def test_invalid_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        UNetConfig(**{field: value})
