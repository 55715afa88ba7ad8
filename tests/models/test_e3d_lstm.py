"""E3D-LSTM numerics: the eidetic recall, the input window, 'same' time padding, feeding truth."""

from __future__ import annotations

import pytest
import torch

from earthcast.models import create_model
from earthcast.models.baselines import e3d_lstm
from earthcast.models.baselines._st_lstm import to_patches
from earthcast.models.baselines.e3d_lstm import E3DLSTM, E3DLSTMConfig, _SameConv3d, recall

SHAPE = dict(in_len=3, out_len=3, height=16, width=16)


def _tiny(**overrides) -> E3DLSTM:
    torch.manual_seed(0)
    return create_model("e3d_lstm_tiny", **{**SHAPE, **overrides})


def test_recall_is_unscaled_softmax_attention_over_all_memory_positions():
    torch.manual_seed(0)
    query, memories = torch.rand(2, 4, 2, 3, 3), torch.randn(2, 4, 6, 3, 3)
    q = query.flatten(2).transpose(1, 2)  # (B, T·h·w, N)
    kv = memories.flatten(2).transpose(1, 2)  # (B, L·h·w, N)
    expected = (torch.softmax(q @ kv.transpose(1, 2), dim=-1) @ kv).transpose(1, 2).reshape(query.shape)
    torch.testing.assert_close(recall(query, memories), expected)
    # a store holding one vector everywhere is recalled exactly, whatever the query
    v = torch.randn(2, 4, 1, 1, 1)
    torch.testing.assert_close(recall(query, v.expand(2, 4, 6, 3, 3)), v.expand_as(query))


def test_even_time_kernel_pads_the_end_like_tensorflow_same():
    conv = _SameConv3d(1, 1, (2, 1, 1))
    x = torch.randn(1, 1, 2, 2, 2)
    x_late, x_early = x.clone(), x.clone()
    x_late[:, :, 1] += 1.0
    x_early[:, :, 0] += 1.0
    out, late, early = conv(x), conv(x_late), conv(x_early)
    assert out.shape == x.shape
    assert not torch.allclose(out[:, :, 0], late[:, :, 0])  # out[t] reads x[t] and x[t + 1]
    assert torch.equal(out[:, :, 1], early[:, :, 1])  # and never x[t - 1]


def test_bottom_layer_reads_a_sliding_window_of_frames():
    model = _tiny()
    windows = []
    model.cells[0].register_forward_pre_hook(lambda mod, args: windows.append(args[0]))
    x = torch.randn(1, 3, 16, 16, 1)
    model.eval()
    with torch.no_grad():
        model(x)
    frames = [to_patches(x[:, t], 2) for t in range(3)]  # (B, p²C, h, w)
    assert windows[0][:, :, 0].abs().max() == 0 and torch.equal(windows[0][:, :, 1], frames[0])
    assert torch.equal(windows[2][:, :, 0], frames[1]) and torch.equal(windows[2][:, :, 1], frames[2])


@pytest.mark.parametrize("tau", [None, 2])
def test_recall_reaches_back_over_the_stored_memories(monkeypatch, tau):
    lengths = []

    def spy(query, memories):
        lengths.append(memories.shape[2])
        return recall(query, memories)

    monkeypatch.setattr(e3d_lstm, "recall", spy)
    model = _tiny(num_layers=1, recall_window=tau)
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 16, 1))
    window = model.config.window_length
    expected = [window * (t + 1 if tau is None else min(t + 1, tau)) for t in range(5)]
    assert lengths == expected


def test_memory_m_is_updated_and_zigzags_through_the_stack():
    model = _tiny()
    seen = {0: [], 1: []}
    for i, cell in enumerate(model.cells):
        cell.register_forward_hook(lambda mod, args, out, i=i: seen[i].append((args[3], out[2])))
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 16, 1))
    for t in range(len(seen[0])):
        assert torch.equal(seen[1][t][0], seen[0][t][1])
        if t > 0:
            assert torch.equal(seen[0][t][0], seen[1][t - 1][1])
    assert seen[1][-1][1].abs().max() > 0  # unlike the official cell, M does not stay zero


@pytest.mark.parametrize("mode", ["teacher_forcing", "none"])
def test_true_frames_are_fed_only_when_sampled(mode):
    model = _tiny(sampling_mode=mode, channels_in=2)
    x, y = torch.randn(2, 3, 16, 16, 2), torch.randn(2, 3, 16, 16, 1)
    y2 = y.clone()
    y2[:, 0] += 1.0  # target 0 is read at the step that predicts output 1
    with torch.no_grad():
        out, out2 = model(x, targets=y, step=0), model(x, targets=y2, step=0)
    changed = [not torch.allclose(out[:, k], out2[:, k]) for k in range(3)]
    assert changed == ([False, True, True] if mode == "teacher_forcing" else [False, False, False])


def test_config_names_the_bad_field():
    with pytest.raises(ValueError, match="recall_window=0"):
        E3DLSTMConfig(recall_window=0)
    with pytest.raises(ValueError, match="patch_size=5"):
        E3DLSTMConfig(patch_size=5)
