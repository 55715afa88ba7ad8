"""AdamW groups, the warm-up + cosine schedule and its horizon (SPEC §2.8)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from earthcast.nn.norm import RMSNorm
from earthcast.training.config import OptimConfig
from earthcast.training.optim import WarmupCosine, build_optimizer, param_groups, steps_per_epoch, total_steps


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(4, 8)
        self.proj = nn.Linear(8, 8)
        self.ln = nn.LayerNorm(8)
        self.rms = RMSNorm(8)
        self.gn = nn.GroupNorm(2, 8)
        self.conv = nn.Conv2d(8, 8, 1, bias=False)
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)
        self.global_vectors = nn.Parameter(torch.zeros(2, 8))


def _names(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_decay_everything_but_layernorm_and_biases():
    model = _Toy()
    decay, no_decay = param_groups(model, weight_decay=0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert _names(model, decay) == {
        "embed.weight",
        "proj.weight",
        "gn.weight",
        "conv.weight",
        "global_vectors",
    }
    assert _names(model, no_decay) == {"proj.bias", "ln.weight", "ln.bias", "rms.weight", "gn.bias"}


def test_frozen_parameters_are_not_optimised():
    optimizer, _ = build_optimizer(_Toy(), OptimConfig(), 10)
    n_params = sum(len(g["params"]) for g in optimizer.param_groups)
    assert n_params == 10  # 12 parameters minus the frozen Linear's two


@pytest.mark.parametrize("start", [0.0, 0.1])
def test_schedule_shape(start):
    n, warmup_fraction, end = 100, 0.2, 1e-3
    f = WarmupCosine(n, warmup_fraction, start, end)
    values = [f(s) for s in range(n + 5)]
    assert values[0] == pytest.approx(start)
    assert values[20] == pytest.approx(1.0)  # peak exactly where the warm-up ends
    assert max(values) == pytest.approx(1.0) and values.index(max(values)) == 20
    assert values[10] == pytest.approx(start + (1 - start) * 0.5)  # linear warm-up
    assert values[60] == pytest.approx(end + (1 - end) * 0.5)  # cosine midpoint
    assert values[n] == pytest.approx(end) and values[n + 4] == pytest.approx(end)  # floor, no restart
    assert all(a <= b for a, b in itertools.pairwise(values[:21]))
    assert all(a >= b for a, b in itertools.pairwise(values[20 : n + 1]))


def test_scheduler_steps_per_optimizer_step():
    model = nn.Linear(2, 2)
    optimizer, scheduler = build_optimizer(model, OptimConfig(lr=1.0, warmup_fraction=0.5), 4)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:3] == pytest.approx([0.0, 0.5, 1.0])
    assert lrs[4] == pytest.approx(1e-3)


def test_schedule_state_survives_a_checkpoint():
    model = nn.Linear(2, 2)
    optimizer, scheduler = build_optimizer(model, OptimConfig(), 50)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    fresh_opt, fresh = build_optimizer(model, OptimConfig(), 50)
    fresh_opt.load_state_dict(optimizer.state_dict())
    fresh.load_state_dict(scheduler.state_dict())
    assert fresh.get_last_lr() == pytest.approx(scheduler.get_last_lr())


def test_horizon_counts_sequences_not_micro_batches():
    # 35_718 SEVIR training sequences, total batch 32 = micro 2 × accumulate 16, 100 epochs
    assert total_steps(35_718, micro_batch=2, epochs=100, accumulate=16) == math.ceil(35_718 / 32) * 100
    # the same global batch on 4 ranks with accumulate 4
    assert total_steps(35_718, micro_batch=2, epochs=100, world_size=4, accumulate=4) == 1117 * 100


@pytest.mark.parametrize(
    "n,micro,world,acc,limit,expected",
    [
        (10, 2, 1, 1, 1.0, 5),
        (11, 2, 1, 1, 1.0, 6),  # the last, partial batch still steps
        (11, 2, 2, 1, 1.0, 3),  # each rank: ceil(11/2) = 6 sequences, 3 batches
        (20, 2, 1, 3, 1.0, 4),  # 10 batches, accumulate 3: the last partial accumulation steps
        (20, 2, 1, 1, 0.5, 5),
        (20, 2, 1, 1, 3, 3),
    ],
)
def test_steps_per_epoch(n, micro, world, acc, limit, expected):
    assert steps_per_epoch(n, micro, world, acc, limit) == expected


def test_max_steps_caps_the_horizon():
    assert total_steps(100, 2, epochs=10, max_steps=7) == 7
    assert total_steps(100, 2, epochs=-1, max_steps=70) == 70
    with pytest.raises(ValueError, match="no optimiser step"):
        total_steps(100, 2, epochs=0)


@pytest.mark.parametrize(
    "kwargs, phrases",
    [
        (  # 16 sequences / batch 2 = 8 batches; 1 % of them rounds down to none
            dict(n_sequences=16, micro_batch=2, epochs=1, limit_batches=0.01),
            ("trainer.limit_train_batches=0.01", "int(8 × 0.01) = 0", "at least 0.125", "count of batches"),
        ),
        (
            dict(n_sequences=16, micro_batch=2, epochs=1, limit_batches=0),
            ("limit_train_batches=0 trains on no",),
        ),
        (dict(n_sequences=0, micro_batch=2, epochs=3), ("training split is empty", "data.root")),
        (dict(n_sequences=16, micro_batch=2, epochs=0), ("trainer.max_epochs=0", "max_steps > 0")),
    ],
    ids=["fraction-rounds-to-zero", "zero-limit", "empty-split", "zero-epochs"],
)
def test_no_step_names_the_setting_and_the_fix(kwargs, phrases):
    with pytest.raises(ValueError, match="no optimiser step") as err:
        total_steps(**kwargs)
    for phrase in phrases:
        assert phrase in str(err.value)
    assert "data.batch_size 2" in str(err.value) and "accumulate_grad_batches 1" in str(err.value)
