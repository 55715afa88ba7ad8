"""The JSON reports of `earthcast fit` and `earthcast test`: strict JSON, what was scored, one-line errors.

The training and scoring themselves are stubbed (``runner.fit`` / ``runner.evaluate``): these tests
are about what the CLI prints, and a real diverged run takes far longer than they need to.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from earthcast.cli.test import EVALUATION_RESETS, _for_this_machine, _scored_weights
from earthcast.training.config import TrainerConfig
from earthcast.utils.jsonsafe import dumps, strict_json
from tests.cli.helpers import TINY_CONTRACT, TINY_MODEL


def _strict_loads(text: str) -> Any:
    """``json.loads`` as strict readers (``jq``) do it: ``NaN`` / ``Infinity`` are errors."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"invalid JSON constant {constant} in: {text}")

    return json.loads(text, parse_constant=refuse)


def test_strict_json_nulls_every_non_finite_number():
    value = {"a": math.nan, "b": [1.0, math.inf, (-math.inf, 2)], "c": {"d": "x", "e": 3, "f": None}}
    assert strict_json(value) == {"a": None, "b": [1.0, None, [None, 2]], "c": {"d": "x", "e": 3, "f": None}}
    assert _strict_loads(dumps(value)) == strict_json(value)


def test_fit_report_of_a_diverged_run_is_strict_json(cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from earthcast.training import runner

    result = runner.FitResult(
        best_ckpt=None,
        last_ckpt=tmp_path / "last.ckpt",
        metrics={"train/loss": math.nan, "val/mse": math.inf, "lr": 1e-3},
        out_dir=tmp_path,
    )
    monkeypatch.setattr(runner, "fit", lambda config, resume=None, out_dir=None, init_from=None: result)
    code, out, err = cli("fit", "nbody")
    assert code == 0, err
    assert _strict_loads(out)["metrics"] == {"train/loss": None, "val/mse": None, "lr": 1e-3}


def test_test_report_is_strict_json_and_says_what_was_scored(cli, monkeypatch: pytest.MonkeyPatch):
    from earthcast.training import runner

    monkeypatch.setattr(runner, "evaluate", lambda *args, **kwargs: {"mse": math.nan, "loss": math.inf})
    code, out, err = cli("test", "nbody", "--model", "persistence")
    assert code == 0, err
    report = _strict_loads(out)
    assert report["metrics"] == {"mse": None, "loss": None}
    assert report["weights"] == "untrained" and report["model"] == "persistence"


def _checkpoint(*prefixes: str, converted: bool = False) -> dict[str, Any]:
    """A loaded checkpoint whose state dict has one tensor under each of ``prefixes``."""
    state = {f"{prefix}w": torch.zeros(1) for prefix in prefixes}
    if converted:  # `earthcast convert-checkpoint` layout: bare weights, the model and its config
        config = {"input_shape": [4, 16, 16, 1], "target_shape": [4, 16, 16, 1]}
        return {"state_dict": state, "model": TINY_MODEL, "config": config}
    return {
        "state_dict": state,
        "hyper_parameters": {"model_name": TINY_MODEL, "data_contract": TINY_CONTRACT},
    }


@pytest.mark.parametrize(
    "checkpoint, use_ema, expected",
    [
        (_checkpoint("net.", "ema.shadow."), True, "ema"),
        (_checkpoint("net.", "ema.shadow."), False, "raw"),  # --no-ema
        (_checkpoint("net."), True, "raw"),  # trained without an EMA
        (_checkpoint("ema.shadow.", converted=True), True, "raw"),  # converted weights load whole
    ],
    ids=["ema", "no-ema-flag", "no-ema-in-checkpoint", "converted"],
)
def test_scored_weights_follow_the_loading_rule(checkpoint, use_ema, expected):
    assert _scored_weights(checkpoint, "x.ckpt", use_ema) == expected


def test_recorded_hardware_and_limits_are_reset_to_the_defaults():
    recorded = {
        "model": "earthformer_nbody_tiny",
        "trainer": {
            "accelerator": "gpu",
            "devices": 4,
            "strategy": "ddp",
            "num_nodes": 2,
            "limit_train_batches": 0.1,
            "limit_val_batches": 3,
            "limit_test_batches": 0.5,
            "precision": "bf16-mixed",
            "seed": 7,
        },
    }
    trainer = _for_this_machine(recorded)["trainer"]
    defaults = TrainerConfig()
    assert {k: trainer[k] for k in EVALUATION_RESETS} == {k: getattr(defaults, k) for k in EVALUATION_RESETS}
    assert trainer["accelerator"] == "auto" and trainer["limit_test_batches"] == 1.0
    assert trainer["precision"] == "bf16-mixed" and trainer["seed"] == 7  # the rest is the run's own
    assert recorded["trainer"]["accelerator"] == "gpu"  # the checkpoint's record is not changed


def test_lightning_misconfiguration_is_one_line(cli, monkeypatch: pytest.MonkeyPatch):
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from earthcast.training import runner

    def refuse(config, resume=None, out_dir=None, init_from=None):
        raise MisconfigurationException("`CUDAAccelerator` can not run on your system\n  since it is absent.")

    monkeypatch.setattr(runner, "fit", refuse)
    code, out, err = cli("fit", "nbody")
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(
        "earthcast fit: error: `CUDAAccelerator` can not run on your system since it is absent. "
    )
    assert "--set trainer.KEY=VALUE" in err
