"""Known-answer and streaming tests for the contingency-table scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from earthcast.metrics.categorical import EPS, SEVIR_THRESHOLDS, ContingencyScores, PooledCSI

# 3×3 frame, threshold 0.5 on 0/1 fields. Cells: H = hit, M = miss, F = false alarm, N = correct negative
#   H H M
#   H M F
#   N N N
TARGET_3X3 = [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
PRED_3X3 = [[1, 1, 0], [1, 0, 1], [0, 0, 0]]


def frame(rows: list[list[float]]) -> torch.Tensor:
    """(H, W) nested list → (1, 1, H, W, 1) tensor."""
    return torch.tensor(rows, dtype=torch.float32)[None, None, :, :, None]


def sevir_fields(seed: int, shape=(3, 4, 16, 16, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    """Random byte-valued VIL in [0, 1] (values k/255 with k in 0..254)."""
    g = torch.Generator().manual_seed(seed)
    pred = torch.randint(0, 255, shape, generator=g).float() / 255
    target = torch.randint(0, 255, shape, generator=g).float() / 255
    return pred, target


def numpy_csi(pred: np.ndarray, target: np.ndarray, tau: float) -> float:
    p, t = pred >= tau, target >= tau
    h, m, f = np.sum(p & t), np.sum(~p & t), np.sum(p & ~t)
    return h / (h + m + f + EPS)


def test_hand_counted_scores():
    # H = 3, M = 2, F = 1, N = 3
    metric = ContingencyScores([0.5], scale=1.0)
    metric.update(frame(PRED_3X3), frame(TARGET_3X3))
    out = metric.compute()
    assert out["csi@0.5"].item() == pytest.approx(3 / (6 + EPS))
    assert out["pod@0.5"].item() == pytest.approx(3 / (5 + EPS))
    assert out["sucr@0.5"].item() == pytest.approx(3 / (4 + EPS))
    assert out["bias@0.5"].item() == pytest.approx(4 / (5 + EPS))  # plain (H+F)/(H+M), no ln2 quirk
    assert out["hss@0.5"].item() == pytest.approx(2 * (3 * 3 - 2 * 1) / (5 * 5 + 4 * 4 + EPS))
    assert out["csi_m"].item() == pytest.approx(3 / (6 + EPS))


def test_threshold_is_inclusive_and_scale_applies():
    # value 16/255 is exactly the first SEVIR threshold: counts as an event
    pred = torch.full((1, 1, 2, 2, 1), 16 / 255)
    target = torch.full((1, 1, 2, 2, 1), 16 / 255)
    metric = ContingencyScores(SEVIR_THRESHOLDS)
    metric.update(pred, target)
    out = metric.compute()
    assert out["csi@16"].item() == pytest.approx(4 / (4 + EPS))
    assert out["csi@74"].item() == 0.0


def test_csi_m_is_mean_of_six_csis():
    pred, target = sevir_fields(0)
    metric = ContingencyScores(SEVIR_THRESHOLDS)
    metric.update(pred, target)
    out = metric.compute()
    csis = [out[f"csi@{tau}"] for tau in SEVIR_THRESHOLDS]
    assert len(csis) == 6
    assert out["csi_m"].item() == pytest.approx(float(torch.stack(csis).mean()))
    assert 0 < out["csi_m"].item() < 1


def test_unpooled_csi_matches_numpy():
    pred, target = sevir_fields(1)
    metric = ContingencyScores(SEVIR_THRESHOLDS, pool_size=1)
    metric.update(pred, target)
    out = metric.compute()
    p, t = pred.numpy() * 255, target.numpy() * 255
    for tau in SEVIR_THRESHOLDS:
        assert out[f"csi@{tau}"].item() == pytest.approx(numpy_csi(p, t, tau), abs=1e-12)


def test_pooled_csi_hand_example():
    # 4×4 frame, pool 2 → 2×2 blocks.
    # target events at (0,0) [block 00] and (3,3) [block 11]
    # pred   events at (1,1) [block 00] and (2,0) [block 10]
    # unpooled: H=0, M=2, F=2 → CSI 0; pooled: block00 hit, block11 miss, block10 false alarm → 1/3
    target = torch.zeros(1, 1, 4, 4, 1)
    pred = torch.zeros(1, 1, 4, 4, 1)
    target[0, 0, 0, 0, 0] = target[0, 0, 3, 3, 0] = 1
    pred[0, 0, 1, 1, 0] = pred[0, 0, 2, 0, 0] = 1
    plain = ContingencyScores([0.5], scale=1.0)
    pooled = ContingencyScores([0.5], scale=1.0, pool_size=2)
    plain.update(pred, target)
    pooled.update(pred, target)
    assert plain.compute()["csi@0.5"].item() == 0.0
    out = pooled.compute()
    assert out["csi@0.5"].item() == pytest.approx(1 / (3 + EPS))
    assert out["hss@0.5"].item() == pytest.approx(2 * (1 * 1 - 1 * 1) / (2 * 2 + 2 * 2 + EPS))
    torch.testing.assert_close(pooled.counts, torch.tensor([[1], [1], [1], [1]]))


@pytest.mark.parametrize("pool_size", [4, 16])
def test_pooled_csi_matches_numpy_max_pooling(pool_size):
    pred, target = sevir_fields(7, shape=(2, 3, 32, 32, 1))
    metric = PooledCSI(SEVIR_THRESHOLDS, pool_size)
    metric.update(pred, target)
    out = metric.compute()
    assert set(out) == {f"csi@{tau}_pool{pool_size}" for tau in SEVIR_THRESHOLDS} | {f"csi_m_pool{pool_size}"}

    def pooled(x: np.ndarray) -> np.ndarray:  # (B, T, H, W, 1) → per-block maxima
        b, t, h, w, _ = x.shape
        return x.reshape(b, t, h // pool_size, pool_size, w // pool_size, pool_size).max(axis=(3, 5))

    p, t = pooled(pred.numpy() * 255), pooled(target.numpy() * 255)
    expected = [numpy_csi(p, t, tau) for tau in SEVIR_THRESHOLDS]
    for tau, csi in zip(SEVIR_THRESHOLDS, expected):
        assert out[f"csi@{tau}_pool{pool_size}"].item() == pytest.approx(csi, abs=1e-12)
    assert out[f"csi_m_pool{pool_size}"].item() == pytest.approx(np.mean(expected), abs=1e-12)
    with pytest.raises(ValueError, match="pool_size must be an integer >= 2"):
        PooledCSI(SEVIR_THRESHOLDS, 1)


@pytest.mark.parametrize("pool_size", [1, 2])
@pytest.mark.parametrize("marker", ["missing_255", "nan_target", "nan_pred"])
def test_missing_pixels_are_excluded(pool_size, marker):
    pred, target = sevir_fields(2, shape=(2, 3, 4, 6, 1))
    pred[..., 4:, :] = 250 / 255  # would be false alarms at every threshold if counted
    if marker == "missing_255":
        target[..., 4:, :] = 1.0  # 255 in bytes
    elif marker == "nan_target":
        target[..., 4:, :] = torch.nan
    else:
        pred[..., 4:, :] = torch.nan
        target[..., 4:, :] = 254 / 255  # valid target above every threshold: misses if counted
    full = ContingencyScores(SEVIR_THRESHOLDS, pool_size=pool_size, missing_value=255)
    cropped = ContingencyScores(SEVIR_THRESHOLDS, pool_size=pool_size, missing_value=255)
    full.update(pred, target)
    cropped.update(pred[..., :4, :], target[..., :4, :])
    torch.testing.assert_close(full.counts, cropped.counts)


def test_missing_pixel_does_not_win_the_pooled_max():
    # one 2×2 block: the only "event" in the forecast sits on a missing target pixel
    pred = frame([[1.0, 0.0], [0.0, 0.0]])
    target = frame([[255.0, 0.0], [0.0, 0.0]])
    metric = ContingencyScores([0.5], scale=1.0, pool_size=2, missing_value=255)
    metric.update(pred, target)
    # the block is a correct negative, not a false alarm (nor a hit from the 255)
    torch.testing.assert_close(metric.counts, torch.tensor([[0], [0], [0], [1]]))


def test_mode_1_matches_manual_loop_over_leads():
    pred, target = sevir_fields(3)
    per_lead = ContingencyScores(SEVIR_THRESHOLDS, mode="1", pool_size=2)
    per_lead.update(pred, target)
    out = per_lead.compute()
    assert out["csi@74"].shape == (4,)
    for t in range(pred.shape[1]):
        single = ContingencyScores(SEVIR_THRESHOLDS, mode="0", pool_size=2)
        single.update(pred[:, t : t + 1], target[:, t : t + 1])
        for key, value in single.compute().items():
            assert out[key][t].item() == pytest.approx(value.item(), abs=1e-12), key


def test_mode_2_is_mean_of_mode_1(assert_results_close):
    pred, target = sevir_fields(4)
    mode1, mode2 = (
        ContingencyScores(SEVIR_THRESHOLDS, mode="1"),
        ContingencyScores(SEVIR_THRESHOLDS, mode="2"),
    )
    mode1.update(pred, target)
    mode2.update(pred, target)
    expected = {key: value.mean() for key, value in mode1.compute().items()}
    assert_results_close(mode2.compute(), expected, atol=1e-12)
    # and mode 2 differs from pooled mode 0 in general
    mode0 = ContingencyScores(SEVIR_THRESHOLDS, mode="0")
    mode0.update(pred, target)
    assert mode0.compute()["csi_m"].item() != pytest.approx(mode2.compute()["csi_m"].item(), abs=1e-9)


@pytest.mark.parametrize("mode", ["0", "1", "2"])
def test_streaming_halves_equal_one_update(mode, assert_results_close):
    pred, target = sevir_fields(5, shape=(4, 3, 8, 8, 1))
    whole, halves = (ContingencyScores(SEVIR_THRESHOLDS, mode=mode, pool_size=2) for _ in range(2))
    whole.update(pred, target)
    halves.update(pred[:2], target[:2])
    halves.update(pred[2:], target[2:])
    assert_results_close(whole.compute(), halves.compute(), atol=0)


@pytest.mark.parametrize("mode", ["0", "1"])
def test_merge_state_equals_one_update(mode, assert_results_close):
    pred, target = sevir_fields(6, shape=(4, 3, 8, 8, 1))
    whole, rank0, rank1, idle = (ContingencyScores(SEVIR_THRESHOLDS, mode=mode) for _ in range(4))
    whole.update(pred, target)
    rank0.update(pred[:1], target[:1])
    rank1.update(pred[1:], target[1:])
    rank0.merge_state(rank1)
    rank0.merge_state(idle)  # a metric that never saw data is neutral
    assert_results_close(whole.compute(), rank0.compute(), atol=0)
    idle.merge_state(rank0)  # and merging into an empty one adopts the state
    assert_results_close(whole.compute(), idle.compute(), atol=0)


def test_forward_accumulates_like_update(assert_results_close):
    pred, target = sevir_fields(7, shape=(4, 3, 8, 8, 1))
    by_forward, by_update = (
        ContingencyScores(SEVIR_THRESHOLDS, mode="1"),
        ContingencyScores(SEVIR_THRESHOLDS, mode="1"),
    )
    batch_value = by_forward(pred[:2], target[:2])
    by_forward(pred[2:], target[2:])
    by_update.update(pred, target)
    assert batch_value["csi@16"].shape == (3,)
    assert_results_close(by_forward.compute(), by_update.compute(), atol=0)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="mode"):
        ContingencyScores(SEVIR_THRESHOLDS, mode="3")
    with pytest.raises(ValueError, match="pool_size"):
        ContingencyScores(SEVIR_THRESHOLDS, pool_size=0)
    metric = ContingencyScores(SEVIR_THRESHOLDS, mode="1")
    pred, target = sevir_fields(8, shape=(1, 3, 4, 4, 1))
    metric.update(pred, target)
    with pytest.raises(ValueError, match="lead times"):
        metric.update(pred[:, :2], target[:, :2])
    with pytest.raises(ValueError, match="equal shape"):
        metric.update(pred, target[:, :2])
