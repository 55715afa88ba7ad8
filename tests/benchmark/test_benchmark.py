"""``earthcast benchmark``: budgets, name resolution, tables, failure rows and resuming."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

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
    assert csv_path.read_text().splitlines()[0].split(",")[8:11] == ["mse", "mae", "crps"]


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


def test_table_marks_models_the_wall_clock_limit_stopped(tmp_path):
    from earthcast.benchmark.table import write_tables

    results = [
        {"model": "unet", "status": "ok", "steps": 642, "planned_steps": 1497, "stopped_by_max_time": True},
        {"model": "convlstm", "status": "ok", "steps": 80, "planned_steps": 80, "stopped_by_max_time": False},
    ]
    _, rows = table_rows(results, "nbody")
    assert rows[0][5] == "642 †" and rows[1][5] == "80"
    md, csv_path = write_tables(results, "nbody", tmp_path, "nbody")
    assert "† stopped by the wall-clock limit" in md.read_text() and "unet 642 of 1497" in md.read_text()
    with csv_path.open() as f:
        unet = next(csv.DictReader(f))
    assert (
        unet["steps"] == "642" and unet["planned_steps"] == "1497" and unet["stopped_by_max_time"] == "True"
    )


def test_tables_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """table.md/table.csv were written in place: a run killed (or failing) while writing them
    left a truncated table where the previous one had been."""
    from earthcast.benchmark import table

    results = [{"model": "unet", "status": "ok", "metrics": {"mse": 0.5, "mae": 0.4}}]
    md, csv_path = table.write_tables(results, "nbody", tmp_path, "first")
    before = md.read_text(), csv_path.read_text()

    def failing_writer(*args, **kwargs):
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(table.csv, "writer", failing_writer)
    with pytest.raises(RuntimeError):
        table.write_tables(results, "nbody", tmp_path, "second")
    assert csv_path.read_text() == before[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv", "table.md"]


def test_planned_steps_leave_room_for_the_first_step_and_checkpoints():
    from earthcast.benchmark.calibrate import StepTiming, plan_steps

    # 0.9 × 10 s − 1 s first step − 19 checkpoints × 0.05 s = 7.05 s of 0.1 s steps
    assert plan_steps(10, StepTiming(first_s=1.0, step_s=0.1, checkpoint_s=0.05)) == 70
    # a short run checkpoints after every step: 0.8 s / (0.1 + 0.1) s
    assert plan_steps(1, StepTiming(first_s=0.1, step_s=0.1, checkpoint_s=0.1)) == 4
    assert plan_steps(1, StepTiming(first_s=5.0, step_s=0.1, checkpoint_s=0.0)) == 1


def test_settings_name_the_data_root_the_same_from_anywhere(tmp_path, monkeypatch):
    from earthcast.benchmark.records import portable_root, settings_changes

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "results" / "nbody"
    assert portable_root("results/nbody/data", Path("results/nbody")) == "<folder>/data"
    assert portable_root(str(folder / "data"), Path("results/nbody")) == "<folder>/data"
    assert portable_root("../elsewhere", folder) == str((tmp_path / "../elsewhere").resolve())
    old = {"budget": "2 steps", "data": {"root": "<folder>/data", "in_len": 4}}
    new = {"budget": "3 steps", "data": {"root": "<folder>/data", "in_len": 5}}
    assert settings_changes(old, new) == ['budget "2 steps" → "3 steps"', "data.in_len 4 → 5"]


def test_benchmark_trains_scores_tabulates_and_resumes(tmp_path, capsys, monkeypatch):
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
    # second run, the same folder named relative to another working directory: finished models
    # are read back, not retrained
    monkeypatch.chdir(tmp_path.parent)
    relative = [tmp_path.name if a == str(tmp_path) else a for a in args]
    assert main(relative) == 0
    assert "finished earlier" in capsys.readouterr().out
    assert json.loads((folder / "models" / "earthformer_noglobal.json").read_text()) == first

    # other settings into the same folder would mix incomparable rows into the table
    other = [a.replace("2steps", "3steps") for a in args]
    assert main(other) == 2
    assert 'other settings (changed: budget "2 steps" → "3 steps")' in capsys.readouterr().err
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


def _bench(out, models: str, budget: str, *extra: str) -> list[str]:
    args = ["benchmark", "--data", "nbody", "--size", "tiny", "--budget", budget, "--out", str(out)]
    return [*args, "--models", models, *extra, *TINY_DATA]


def _table(folder) -> dict[str, dict[str, str]]:
    with (folder / "table.csv").open() as f:
        return {r["model"]: r for r in csv.DictReader(f)}


def test_results_of_other_settings_are_set_aside_and_rows_accumulate(tmp_path, capsys):
    folder = tmp_path / "nbody"
    assert main(_bench(tmp_path, "unet,convlstm", "2steps")) == 0
    # --rerun of one model under a new budget: the other model's result is of the old budget
    assert main(_bench(tmp_path, "unet", "3steps", "--rerun")) == 0
    assert list(_table(folder)) == ["unet"]
    left_out = capsys.readouterr().out
    # a model added in a run of its own joins the rows of the earlier runs
    assert main(_bench(tmp_path, "persistence", "3steps")) == 0
    assert list(_table(folder)) == ["unet", "persistence"]
    capsys.readouterr()

    assert main(_bench(tmp_path, "unet,convlstm", "3steps")) == 0
    out = capsys.readouterr().out
    assert "finished earlier" in out and 'budget "2 steps" → "3 steps"' in out
    rows = _table(folder)
    assert list(rows) == ["unet", "persistence", "convlstm"]
    assert rows["convlstm"]["steps"] == "3" and rows["unet"]["steps"] == "3"  # not the 2-step result
    assert "budget 3 steps" in (folder / "table.md").read_text()
    # the 2-step result and run are kept aside, not deleted
    (stale,) = (folder / "models" / "stale").glob("*/convlstm.json")
    assert json.loads(stale.read_text())["steps"] == 2
    assert list((folder / "runs" / "stale").glob("*/convlstm/checkpoints/last.ckpt"))
    result = json.loads((folder / "models" / "convlstm.json").read_text())
    assert result["settings"]["budget"] == "3 steps" and result["planned_steps"] == 3
    assert "not in the table, made under other settings: convlstm" in left_out


def _add_callback(monkeypatch, callback) -> None:
    """Every trainer the benchmark builds (calibration and training) also runs ``callback``."""
    import earthcast.training.runner as training

    build = training.build_trainer

    def build_with_callback(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.callbacks.append(callback)
        return trainer

    monkeypatch.setattr(training, "build_trainer", build_with_callback)


def test_training_time_adds_up_over_a_resume(tmp_path, monkeypatch):
    import time

    import lightning as L

    class SlowThenInterrupted(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 1:
                time.sleep(3.0)  # before the checkpoint of step 1
            if trainer.global_step == 3:
                raise RuntimeError("interrupted")  # the checkpoint of step 2 is the last

    args = _bench(tmp_path, "unet", "10steps")
    with monkeypatch.context() as patch:
        _add_callback(patch, SlowThenInterrupted())
        assert main(args) == 1
    assert main(args) == 0  # resumes from step 2
    result = json.loads((tmp_path / "nbody" / "models" / "unet.json").read_text())
    assert result["train_time_s"] >= 3.0  # the 3 s before the interruption count
    assert result["steps"] == 10 and result["planned_steps"] == 10


def test_wall_clock_budget_plans_steps_that_fit(tmp_path, monkeypatch):
    import time

    import lightning as L

    class Overhead(L.Callback):
        """Per-step cost outside forward/backward/optimiser (loader, logging, callbacks)."""

        def on_train_batch_end(self, *args):
            time.sleep(0.2)

    _add_callback(monkeypatch, Overhead())
    assert main(_bench(tmp_path, "unet", "6s")) == 0
    result = json.loads((tmp_path / "nbody" / "models" / "unet.json").read_text())
    assert result["steps"] == result.get("planned_steps") and result["stopped_by_max_time"] is False
    assert 10 <= result["planned_steps"] <= 27 and result["seconds_per_step"] >= 0.2


def test_a_run_stopped_by_the_wall_clock_is_flagged(tmp_path, monkeypatch):
    import earthcast.benchmark.runner as runner
    from earthcast.benchmark.calibrate import StepTiming

    # a calibration far too optimistic: the schedule cannot finish in the budget
    monkeypatch.setattr(runner, "time_real_steps", lambda run, seconds: StepTiming(0.0, 1e-4, 0.0))
    assert main(_bench(tmp_path, "unet", "2s")) == 0
    result = json.loads((tmp_path / "nbody" / "models" / "unet.json").read_text())
    assert result["stopped_by_max_time"] is True and result["steps"] < result["planned_steps"]
    assert _table(tmp_path / "nbody")["unet"]["stopped_by_max_time"] == "True"
    assert "† stopped by the wall-clock limit" in (tmp_path / "nbody" / "table.md").read_text()


def test_a_diverged_model_is_tabulated_and_plotted_with_its_null_scores(tmp_path):
    """Results are strict JSON: a NaN score is stored as null and must read back as missing."""
    import json

    from earthcast.benchmark.table import plot_results, write_tables
    from earthcast.utils.jsonsafe import dumps

    rows = [
        {"model": "unet", "status": "ok", "metrics": {"mse": 0.5, "mae": 0.4, "ssim": 0.6}},
        {"model": "convlstm", "status": "ok", "metrics": {"mse": float("nan"), "mae": 0.7, "ssim": 0.1}},
    ]
    reloaded = json.loads(dumps(rows))
    assert reloaded[1]["metrics"]["mse"] is None
    write_tables(reloaded, "nbody", tmp_path, "diverged")
    assert plot_results(reloaded, "nbody", tmp_path / "plot.png").is_file()
    table = (tmp_path / "table.md").read_text()
    assert "convlstm" in table and "unet" in table


def test_recurrent_baselines_finish_scheduled_sampling_inside_the_budget(tmp_path):
    """A recurrent model is scored free-running, so its truth-feeding schedule must end inside the
    run (as PredRNN's 50k of 80k iterations), not after the preset's fixed 2,000 steps."""
    from earthcast.benchmark.runner import SAMPLING_SHARE, sampling_steps

    assert sampling_steps(8) == 5 and sampling_steps(1) == 1 and SAMPLING_SHARE < 1
    args = ["benchmark", "--data", "nbody", "--size", "tiny", "--budget", "8steps", "--out", str(tmp_path)]
    assert main([*args, "--models", "predrnn,unet", *TINY_DATA]) == 0
    models = tmp_path / "nbody" / "models"
    predrnn = json.loads((models / "predrnn.json").read_text())
    assert predrnn["steps"] == 8 and predrnn["sampling_steps"] == 5
    checkpoint = torch.load(
        tmp_path / "nbody" / "runs" / "predrnn" / "checkpoints" / "last.ckpt", weights_only=False
    )
    assert checkpoint["hyper_parameters"]["model_overrides"]["sampling_steps"] == 5
    assert "sampling_steps" not in json.loads((models / "unet.json").read_text())  # not recurrent
