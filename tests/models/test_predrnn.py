"""PredRNN numerics and the shared ST-LSTM rollout machinery (patching, frame feeding, sampling)."""

from __future__ import annotations

import math

import pytest
import torch

from earthcast.models import create_model
from earthcast.models.baselines._base import ScheduledSampling
from earthcast.models.baselines._st_lstm import FrameFeeder, from_patches, to_patches
from earthcast.models.baselines.predrnn import PredRNN, PredRNNConfig, SpatioTemporalLSTMCell

SHAPE = dict(in_len=3, out_len=3, height=16, width=16)


def _tiny(**overrides) -> PredRNN:
    torch.manual_seed(0)
    return create_model("predrnn_tiny", **{**SHAPE, **overrides})


def test_patches_stack_each_block_on_channels_and_invert():
    frame = torch.arange(16.0).reshape(1, 4, 4, 1)  # (B, H, W, C)
    z = to_patches(frame, 2)
    assert z.shape == (1, 4, 2, 2)
    assert z[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]  # the top-left 2×2 block, row-major
    assert z[0, :, 1, 1].tolist() == [10.0, 11.0, 14.0, 15.0]
    x = torch.randn(2, 8, 12, 3)
    assert torch.equal(from_patches(to_patches(x, 4), 4), x)


def test_fed_back_frames_keep_covariates_from_the_last_observation():
    x = torch.randn(2, 3, 4, 4, 3)  # C_in = 3
    feeder = FrameFeeder(x, None, 2, ScheduledSampling("none"), 0)
    prediction = torch.randn(2, 4, 4, 1)  # C_out = 1
    assert torch.equal(feeder.frame(1, prediction), x[:, 1])  # context: the observation
    fed = feeder.frame(3, prediction)
    assert torch.equal(fed[..., :1], prediction)
    assert torch.equal(fed[..., 1:], x[:, -1, :, :, 1:])
    # more outputs than inputs: only the first C_in predicted channels are fed back
    wide = torch.randn(2, 4, 4, 5)
    assert torch.equal(feeder.frame(4, wide), wide[..., :3])


def test_cell_with_zero_weights_only_forgets_by_the_bias():
    cell = SpatioTemporalLSTMCell(c_in=2, hidden=3, kernel=3, layer_norm=False, forget_bias=1.0)
    for p in cell.parameters():
        torch.nn.init.zeros_(p)
    x, h = torch.randn(1, 2, 4, 4), torch.randn(1, 3, 4, 4)
    c, m = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    h_new, c_new, m_new, delta_c, delta_m = cell(x, h, c, m)
    keep = 1 / (1 + math.exp(-1.0))  # σ(0 + forget_bias); input gate · tanh(0) adds nothing
    torch.testing.assert_close(c_new, keep * c)
    torch.testing.assert_close(m_new, keep * m)
    assert delta_c.abs().max() == 0 and delta_m.abs().max() == 0
    assert h_new.abs().max() == 0  # o · tanh(W_1×1 [C, M]) with W = 0


def test_memory_zigzags_from_the_top_layer_to_the_bottom_of_the_next_step():
    model = _tiny(num_layers=3)
    seen: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {i: [] for i in range(3)}
    for i, cell in enumerate(model.cells):  # record (M in, M out) of every call
        cell.register_forward_hook(lambda mod, args, out, i=i: seen[i].append((args[3], out[2])))
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 16, 1))
    steps = len(seen[0])
    assert steps == SHAPE["in_len"] + SHAPE["out_len"] - 1
    for t in range(steps):
        assert torch.equal(seen[1][t][0], seen[0][t][1])  # upwards within a step
        assert torch.equal(seen[2][t][0], seen[1][t][1])
        if t > 0:
            assert torch.equal(seen[0][t][0], seen[2][t - 1][1])  # top at t-1 → bottom at t
    assert seen[0][0][0].abs().max() == 0  # M starts at zero


@pytest.mark.parametrize("mode", ["teacher_forcing", "none"])
def test_true_frames_are_fed_only_when_sampled(mode):
    model = _tiny(sampling_mode=mode)
    x, y = torch.randn(2, 3, 16, 16, 1), torch.randn(2, 3, 16, 16, 1)
    y2 = y.clone()
    y2[:, 1] += 1.0  # target k = 1 feeds the step that predicts output k + 1 = 2
    with torch.no_grad():
        out, out2 = model(x, targets=y, step=0), model(x, targets=y2, step=0)
    changed = [not torch.allclose(out[:, k], out2[:, k]) for k in range(3)]
    assert changed == ([False, False, True] if mode == "teacher_forcing" else [False, False, False])


def test_reverse_sampling_can_replace_every_context_frame_but_the_first():
    model = _tiny(sampling_mode="reverse", sampling_reverse_start=0.0)
    x, y = torch.randn(2, 3, 16, 16, 1), torch.randn(2, 3, 16, 16, 1)
    x2 = x.clone()
    x2[:, 1:] += 1.0
    with torch.no_grad():
        # step 0: the context truth probability is 0, forecast steps are teacher-forced
        assert torch.equal(model(x, targets=y, step=0), model(x2, targets=y, step=0))
        model.eval()  # evaluation reads the whole context
        assert not torch.allclose(model(x), model(x2))


def test_decoupling_loss_is_collected_in_training_only():
    model = _tiny(decouple_beta=0.1)
    x, y = torch.randn(2, 3, 16, 16, 1), torch.randn(2, 3, 16, 16, 1)
    out = model(x, targets=y, step=0)
    assert model.aux_loss is not None and 0.0 <= model.aux_loss.item() <= 0.1
    (out.square().mean() + model.aux_loss).backward()
    assert model.adapter.weight.grad.abs().sum() > 0
    assert torch.equal(model.auxiliary_loss(), model.aux_loss)  # what ForecastSystem adds
    model.eval()
    model(x)
    assert model.aux_loss is None and model.auxiliary_loss().item() == 0.0


def test_config_names_the_bad_field():
    with pytest.raises(ValueError, match="patch_size=3"):
        PredRNNConfig(height=16, width=16, patch_size=3)
    with pytest.raises(ValueError, match="kernel_size=4"):
        PredRNNConfig(kernel_size=4)
    with pytest.raises(ValueError, match="mode"):
        PredRNNConfig(sampling_mode="exponential")
