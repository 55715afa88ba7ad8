"""``earthcast benchmark``: budgets, name resolution, tables, failure rows and resuming."""

from __future__ import annotations

import csv
import json

import pytest

from earthcast.benchmark import parse_budget
from earthcast.benchmark.models import resolve_model
from earthcast.benchmark.table import table_rows
from earthcast.cli import main


@pytest.mark.parametrize(
    ("text", "seconds", "steps"),
    [
        ("15m", 900, None),
        ("90s", 90, None),
        ("1.5h", 5400, None),
        ("500steps", None, 500),
        ("7 step", None, 7),
    ],
)
def test_parse_budget(text, seconds, steps):
    budget = parse_budget(text)
    assert budget.seconds == seconds and budget.steps == steps


@pytest.mark.parametrize("text", ["", "fast", "10", "-5m", "2.5steps", "0s"])
def test_bad_budget_is_named(text):
    with pytest.raises(ValueError, match="budget"):
        parse_budget(text)


def test_wall_clock_budget_becomes_lightning_max_time():
    assert parse_budget("15m").max_time() == "00:00:15:00"
    assert parse_budget("26h").max_time() == "01:02:00:00"
    assert parse_budget("10steps").max_time() is None


def test_short_names_resolve_by_size_and_data():
    assert resolve_model("earthformer", "small", "nbody") == "earthformer_small"
    assert resolve_model("earthformer", "paper", "nbody") == "earthformer_nbody"
    assert resolve_model("earthformer_noglobal", "paper", "sevir") == "earthformer_noglobal_sevir"
    assert resolve_model("unet", "paper", "enso") == "unet_enso"
    assert resolve_model("unet", "paper", "nbody") == "unet_sevir"  # the SEVIR table's sizes
    assert resolve_model("convlstm", "tiny", "nbody") == "convlstm_tiny"
    assert resolve_model("persistence", "small", "nbody") == "persistence"
    with pytest.raises(ValueError, match="tried bogus_small"):
        resolve_model("bogus", "small", "nbody")


def test_table_scales_seed_columns_and_keeps_failures():
    results = [
        {
            "model": "a",
            "network": "a_x",
            "params_m": 1.5,
            "gflops": 2.0,
            "train_time_s": 10.0,
            "steps": 5,
            "status": "ok",
            "metrics": {"csi_m": 0.4, "csi@219": 0.1, "csi@181": 0.2, "mse": 0.0037},
        },
        {"model": "b", "status": "failed: RuntimeError: out of memory"},
    ]
    header, rows = table_rows(results, "sevir")
    assert header[6:10] == ["CSI-M", "CSI-219", "CSI-181", "MSE (×1e-3)"]
    assert rows[0][9] == "3.7"  # MSE shown ×1e3, as in the SEVIR table
    assert rows[1][-1].startswith("failed: RuntimeError") and rows[1][6] == "–"
    assert "CRPS" not in header  # no ensemble in the table


def test_table_adds_crps_when_an_ensemble_is_scored(tmp_path):
    from earthcast.benchmark.table import write_tables

    results = [
        {"model": "unet", "status": "ok", "metrics": {"mse": 0.5, "mae": 0.4}},
        {"model": "pysteps_steps", "status": "ok", "metrics": {"mse": 0.7, "mae": 0.5, "crps": 0.21}},
    ]
    header, rows = table_rows(results, "radar")
    assert header[6:9] == ["MSE", "MAE", "CRPS"]
    assert rows[0][8] == "–" and rows[1][8] == "0.21"
    _, csv_path = write_tables(results, "radar", tmp_path, "radar")
    assert csv_path.read_text().splitlines()[0].split(",")[6:9] == ["mse", "mae", "crps"]


TINY_DATA = [
    "--set",
    "data.synthetic.n_train=32",
    "--set",
    "data.synthetic.n_val=4",
    "--set",
    "data.synthetic.n_test=8",
    "--set",
    "data.synthetic.size=16",
    "--set",
    "data.synthetic.seq_len=8",
    "--set",
    "data.in_len=4",
    "--set",
    "data.out_len=4",
    "--set",
    "data.batch_size=4",
    "--set",
    "trainer.progress_bar=none",
]


def test_benchmark_trains_scores_tabulates_and_resumes(tmp_path, capsys):
    args = ["benchmark", "--data", "nbody", "--size", "tiny", "--budget", "2steps", "--out", str(tmp_path)]
    args += ["--models", "persistence,earthformer_noglobal,bogus", *TINY_DATA]
    assert main(args) == 0
    folder = tmp_path / "nbody"
    with (folder / "table.csv").open() as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    assert rows["persistence"]["status"] == "ok" and float(rows["persistence"]["params_m"]) == 0
    learned = rows["earthformer_noglobal"]
    assert learned["status"] == "ok" and learned["network"] == "earthformer_noglobal_tiny"
    assert int(learned["steps"]) == 2 and float(learned["gflops"]) > 0 and float(learned["mse"]) > 0
    assert float(learned["params_m"]) == pytest.approx(0.1, rel=0.5)
    assert rows["bogus"]["status"].startswith("failed: ValueError")
    assert (folder / "models" / "bogus.log").is_file() and (folder / "plot.png").stat().st_size > 0
    assert "| earthformer_noglobal |" in (folder / "table.md").read_text()

    first = json.loads((folder / "models" / "earthformer_noglobal.json").read_text())
    capsys.readouterr()
    assert main(args) == 0  # second run: finished models are read back, not retrained
    assert "finished earlier" in capsys.readouterr().out
    assert json.loads((folder / "models" / "earthformer_noglobal.json").read_text()) == first

    # other settings into the same folder would mix incomparable rows into the table
    other = [a.replace("2steps", "3steps") for a in args]
    assert main(other) == 2
    assert "other settings (changed: budget)" in capsys.readouterr().err
    assert main([*other, "--rerun"]) == 0  # trains every model again, from scratch, for 3 steps
    assert json.loads((folder / "models" / "earthformer_noglobal.json").read_text())["steps"] == 3
    assert json.loads((folder / "settings.json").read_text())["budget"] == "3 steps"


def test_benchmark_rejects_bad_arguments(tmp_path, capsys):
    assert main(["benchmark", "--data", "nbody", "--models", ",", "--out", str(tmp_path)]) == 2
    assert "--models is empty" in capsys.readouterr().err
    assert main(["benchmark", "--data", "nbody", "--budget", "soon", "--out", str(tmp_path)]) == 2
    assert "cannot read budget" in capsys.readouterr().err


def test_flops_are_counted_for_earthformer_with_global_vectors():
    import torch

    from earthcast.benchmark.models import gflops_per_sample
    from earthcast.models import create_model

    net = create_model("earthformer_tiny")  # global vectors + fused FFN: the case that broke
    assert net.config.num_global_vectors > 0
    assert gflops_per_sample(net, torch.randn(1, 4, 16, 16, 1)) > 0
