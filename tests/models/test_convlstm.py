"""ConvLSTM baseline: the cell's gate equations, locality, encoder–forecaster structure."""

from __future__ import annotations

import pytest
import torch

from earthcast.models import create_model
from earthcast.models.baselines.convlstm import ConvLSTM, ConvLSTMCell, ConvLSTMConfig


def _tiny(**overrides) -> ConvLSTM:
    torch.manual_seed(0)
    return create_model("convlstm_tiny", **overrides).eval()


def test_cell_matches_shi_2015_equations_with_peepholes():
    """Zero conv kernels leave only biases and peepholes, so eq. (3) can be evaluated by hand."""
    cell = ConvLSTMCell(in_channels=2, hidden_channels=1, kernel_size=3, peephole=True)
    b_i, b_f, b_g, b_o = 0.3, -0.2, 0.5, 0.1
    p_i, p_f, p_o = 0.7, -0.4, 1.3
    with torch.no_grad():
        cell.gates.weight.zero_()
        cell.gates.bias.copy_(torch.tensor([b_i, b_f, b_g, b_o]))
        cell.peephole.copy_(torch.tensor([p_i, p_f, p_o]).view(3, 1, 1, 1))
        c_prev = 0.8
        state = (torch.full((1, 1, 4, 4), -0.5), torch.full((1, 1, 4, 4), c_prev))
        h, c = cell(torch.randn(1, 2, 4, 4), state)
    s = torch.sigmoid
    i, f = s(torch.tensor(b_i + p_i * c_prev)), s(torch.tensor(b_f + p_f * c_prev))
    c_expected = f * c_prev + i * torch.tanh(torch.tensor(b_g))
    o = s(b_o + p_o * c_expected)  # the output gate sees the new cell state
    torch.testing.assert_close(c, torch.full_like(c, c_expected.item()))
    torch.testing.assert_close(h, torch.full_like(h, (o * torch.tanh(c_expected)).item()))


def test_cell_receptive_field_grows_by_kernel_radius_per_step():
    torch.manual_seed(0)
    cell = ConvLSTMCell(in_channels=1, hidden_channels=4, kernel_size=3, peephole=True)
    x = torch.randn(2, 1, 1, 15, 15)  # two steps of input
    x_poked = x.clone()
    x_poked[0, 0, 0, 7, 7] += 1.0  # change one pixel of the first frame

    def run(frames):
        state = cell(frames[0], None)
        first = state[0]
        return first, cell(frames[1], state)[0]

    with torch.no_grad():
        (a1, a2), (b1, b2) = run(x), run(x_poked)
    for step, (a, b) in enumerate([(a1, b1), (a2, b2)], start=1):
        changed = (a - b).abs().amax(dim=1)[0] > 0  # (H, W)
        rows, cols = torch.nonzero(changed, as_tuple=True)
        assert rows.min() == 7 - step and rows.max() == 7 + step  # reach = step × kernel radius
        assert cols.min() == 7 - step and cols.max() == 7 + step


def test_forget_gate_bias_initialised_to_forget_bias():
    cell = ConvLSTMCell(in_channels=3, hidden_channels=5, kernel_size=3, peephole=False, forget_bias=1.0)
    assert torch.equal(cell.gates.bias[5:10], torch.ones(5))
    assert cell.peephole is None


def test_forecast_prefix_does_not_depend_on_horizon():
    """The forecaster is a pure recurrence from the encoder state: lead k ignores the horizon."""
    short, long = _tiny(out_len=2), _tiny(out_len=5)
    long.load_state_dict(short.state_dict())
    x = torch.randn(2, 4, 16, 16, 1)
    with torch.no_grad():
        torch.testing.assert_close(long(x)[:, :2], short(x))


def test_structure_encoder_forecaster():
    model = _tiny()
    hidden = model.config.hidden_channels
    # the coarsest forecaster cell has no frame input (only its state); the others get the
    # upsampled state from the stage below them
    assert model.forecaster[-1].gates.in_channels == hidden[-1]
    assert model.forecaster[0].gates.in_channels == 2 * hidden[0]
    assert ConvLSTM.accepts_targets is False  # outputs are never fed back


def test_context_drives_the_forecast():
    model = _tiny()
    x = torch.randn(1, 4, 16, 16, 1)
    with torch.no_grad():
        y = model(x)
        x[:, 0] += 1.0  # the oldest frame reaches the forecast only through the recurrences
        assert not torch.allclose(model(x), y)


def test_non_divisible_frame_equals_cropped_run_on_padded_frame():
    small = _tiny(height=13, width=11)  # strides (2, 2): padded to 16×12
    big = _tiny(height=16, width=12)
    big.load_state_dict(small.state_dict())
    x = torch.randn(1, 4, 13, 11, 1)
    x_padded = torch.nn.functional.pad(x, (0, 0, 0, 1, 1, 2))  # W by (0, 1), H by (1, 2)
    with torch.no_grad():
        y, y_big = small(x), big(x_padded)
    assert y.shape == (1, 3, 13, 11, 1)
    torch.testing.assert_close(y, y_big[:, :, 1:14, 0:11])


@pytest.mark.parametrize("peephole", [True, False])
def test_three_stage_model_trains_every_parameter(peephole):
    torch.manual_seed(0)
    config = ConvLSTMConfig(
        in_len=3, out_len=2, height=16, width=16, channels_in=3, channels_out=2,
        hidden_channels=(4, 6, 8), strides=(2, 1, 2), stem_channels=4, peephole=peephole,
    )  # fmt: skip
    model = ConvLSTM(config)
    y = model(torch.randn(2, 3, 16, 16, 3))
    assert y.shape == (2, 2, 16, 16, 2)
    y.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    n_peep = sum(p.numel() for n, p in model.named_parameters() if n.endswith("peephole"))
    assert n_peep == (2 * 3 * (4 + 6 + 8) if peephole else 0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"strides": (2,)}, "strides"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"hidden_channels": (8, 0, 8)}, "hidden_channels"),
    ],
)
def test_invalid_config_names_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        ConvLSTMConfig(**changes)
