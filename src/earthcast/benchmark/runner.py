"""``run_benchmark``: train every model under one budget, score all on one test split, tabulate.

Layout of ``<out>/<data>/``::

    table.md, table.csv, plot.png   the comparison (rewritten after every model)
    settings.json                   data, size, budget, optimiser and seed the table is made with
    models/<model>.json             one finished model's result and its settings (the resume record)
    models/<model>.log              traceback of a model that failed
    runs/<model>/                   its Lightning run (checkpoints, logs) and ``benchmark.json``
                                    (its settings and planned steps)
    models/stale/, runs/stale/      results and runs of other settings, moved aside (``records.py``)
    data/                           synthetic data shared by all models (when data.root is unset)

Fairness rules: the same data windows, seed, batch size, optimiser and learning-rate schedule for
every learned model; a wall-clock budget is converted per model into steps from a few timed real
training steps (``calibrate.py``) so each cosine schedule completes inside the budget, with
Lightning's ``max_time`` as a hard stop (a row it stopped early is flagged). Validation is off
during benchmark training (the budget goes to optimisation) and the final weights are scored on
the test split. Models without trainable parameters (persistence, pysteps) are scored directly.

Resuming: a model whose ``models/<model>.json`` was made under this run's settings is not run
again unless ``rerun`` is set; a model whose run was interrupted continues from its
``last.ckpt`` when the run was made under these settings, with the steps planned then. A result
or run of other settings is never reused or resumed: it is moved aside and the model trained
from scratch. A folder whose ``settings.json`` differs from the run's settings is refused (its
table would not be comparable) unless ``rerun`` is set, which makes the new settings the
folder's. The table lists every finished result of the folder's settings, not only the models
named in this run. A failing model is recorded with its error message in the table and the next
model runs.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from earthcast.benchmark.budget import Budget
from earthcast.benchmark.calibrate import checkpoint_every, plan_steps, time_real_steps
from earthcast.benchmark.models import (
    Size,
    build_network,
    count_parameters,
    gflops_per_sample,
    resolve_model,
    shape_overrides,
)
from earthcast.benchmark.records import (
    RUN_RECORD_NAME,
    SETTINGS_NAME,
    finished_results,
    now,
    plain,
    portable_root,
    read_json,
    set_aside,
    settings_changes,
    table_order,
)
from earthcast.benchmark.table import plot_results, write_tables
from earthcast.training.config import ExperimentConfig
from earthcast.utils.jsonsafe import write_json

#: ``max_time`` of a step budget: never reached, but it makes Lightning's timer run, whose state
#: in each checkpoint carries the training time across resumes.
UNLIMITED_TIME = "99:00:00:00"


@dataclass(frozen=True)
class BenchmarkConfig:
    """One benchmark run.

    Attributes:
        experiment: the experiment config that supplies data, optimiser and trainer settings.
        models: benchmark entries (short or registered names, see ``benchmark/models.py``).
        budget: training budget per model.
        size: model size the short names resolve to.
        out_dir: results root; the run writes to ``<out_dir>/<data>/``.
        rerun: run models again even when a finished result exists.
    """

    experiment: ExperimentConfig
    models: tuple[str, ...]
    budget: Budget
    size: Size = "small"
    out_dir: Path = Path("results")
    rerun: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return self.experiment.data.name

    @property
    def folder(self) -> Path:
        return Path(self.out_dir) / self.dataset


def run_benchmark(config: BenchmarkConfig) -> list[dict[str, Any]]:
    """Run every model of ``config`` (skipping finished ones) and write the table and plot.

    Returns:
        One result dict per model in the order given: ``model``, ``network``, ``status``
        (``"ok"`` or ``"failed: …"``), ``params_m``, ``gflops``, ``train_time_s``, ``steps``,
        ``planned_steps``, ``stopped_by_max_time``, ``metrics`` (test split), ``settings``.
        The table also lists the folder's earlier results of the same settings.
    """
    if not config.models:
        raise ValueError("no models to benchmark: give --models, e.g. earthformer,unet,persistence")
    folder = config.folder
    (folder / "models").mkdir(parents=True, exist_ok=True)
    experiment = _with_shared_data(config.experiment, folder)
    settings = comparable_settings(config, experiment)
    _claim_folder(config, settings)
    datamodule, contract = _prepare_data(experiment)
    results: list[dict[str, Any]] = []
    left_out: list[str] = []
    for index, model in enumerate(config.models, start=1):
        print(f"\n[{index}/{len(config.models)}] {model} — budget {config.budget}", flush=True)
        results.append(_run_one(model, config, experiment, settings, datamodule, contract))
        left_out = _write_outputs(results, config, settings)
    if left_out:
        print(
            f"  not in the table, made under other settings: {', '.join(left_out)} "
            "(name them in --models to train them again under these settings)",
            flush=True,
        )
    return results


def _with_shared_data(experiment: ExperimentConfig, folder: Path) -> ExperimentConfig:
    if experiment.data.root:
        return experiment
    return experiment.replace(data=experiment.data.replace(root=str(folder / "data")))


def comparable_settings(config: BenchmarkConfig, experiment: ExperimentConfig) -> dict[str, Any]:
    """What makes two results comparable: the data (store, options, windows), model size, budget,
    optimiser and seed. The model list is not part of it: adding a model to a table is fine.
    The data root is written as ``portable_root`` so that the same folder named another way
    (relative or absolute ``--out``, another working directory) holds the same settings."""
    as_dict = experiment.to_dict()
    data = {**as_dict["data"], "root": portable_root(as_dict["data"].get("root"), config.folder)}
    return plain(
        {
            "data": data,
            "size": config.size,
            "budget": str(config.budget),
            "optim": as_dict["optim"],
            "seed": as_dict["trainer"]["seed"],
        }
    )


def _claim_folder(config: BenchmarkConfig, settings: dict[str, Any]) -> None:
    """Refuse to mix results of other settings into a table; ``rerun`` makes the new settings the
    folder's (results of the old ones stay out of the table, and are moved aside, not deleted,
    when their model is trained again)."""
    path = config.folder / SETTINGS_NAME
    previous = _portable_settings(read_json(path), config.folder) if path.is_file() else None
    if previous is not None and previous != settings and not config.rerun:
        raise ValueError(
            f"{config.folder} holds benchmark results made with other settings (changed: "
            f"{'; '.join(settings_changes(previous, settings))}); write to another --out, or pass "
            "--rerun to make the new settings this folder's (results of the old settings are kept, "
            "out of the table)"
        )
    write_json(path, settings)


def _portable_settings(settings: dict[str, Any] | None, folder: Path) -> dict[str, Any] | None:
    """``settings.json`` written before roots were portable stored the root as given; read it
    from here the way it is written now."""
    if not settings or not isinstance(settings.get("data"), dict):
        return settings
    root = settings["data"].get("root")
    if root and not str(root).startswith("<"):
        settings = {**settings, "data": {**settings["data"], "root": portable_root(root, folder)}}
    return settings


def _prepare_data(experiment: ExperimentConfig):
    from earthcast.data.datamodule import ForecastDataModule

    datamodule = ForecastDataModule(experiment.data, seed=experiment.trainer.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule, datamodule.contract


def _result_path(config: BenchmarkConfig, model: str) -> Path:
    return config.folder / "models" / f"{model}.json"


def _run_dir(config: BenchmarkConfig, model: str) -> Path:
    return config.folder / "runs" / model


def _run_one(
    model: str,
    config: BenchmarkConfig,
    experiment: ExperimentConfig,
    settings: dict[str, Any],
    datamodule,
    contract,
) -> dict[str, Any]:
    path = _result_path(config, model)
    previous = read_json(path) if path.is_file() else None
    if previous is not None and previous.get("settings") != settings:
        _move_aside(path, previous.get("settings"), settings, "result")
        previous = None
    if previous is not None and not config.rerun:
        print(f"  finished earlier: {path} (use --rerun to train again)")
        return previous
    result: dict[str, Any] = {"model": model, "budget": str(config.budget), "settings": settings}
    try:
        _train_and_score(result, config, experiment, settings, datamodule, contract)
        result["status"] = "ok"
        # a model trained again keeps its place in the table
        result["added"] = (previous or {}).get("added") or now()
        write_json(path, result)
    except Exception as error:  # one failing model must not stop the table
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        result["status"] = f"failed: {type(error).__name__}: {message}"[:300]
        result["added"] = now()
        log = path.with_suffix(".log")
        log.write_text(traceback.format_exc())
        print(f"  {result['status']} (traceback in {log})", flush=True)
    return result


def _move_aside(path: Path, made_with: dict[str, Any] | None, settings: dict[str, Any], what: str) -> None:
    """Move a result or run of other settings out of the way, saying what differed and where it went."""
    changes = "; ".join(settings_changes(made_with, settings))
    where = set_aside(path, made_with)
    print(
        f"  {what} {path} was made under other settings ({changes}): moved to {where}; training from scratch"
    )


def _train_and_score(
    info: dict[str, Any],
    config: BenchmarkConfig,
    experiment: ExperimentConfig,
    settings: dict[str, Any],
    datamodule,
    contract,
) -> None:
    """Fill ``info`` step by step (what was learnt before a failure stays in the table)."""
    from earthcast.training.runner import evaluate, fit

    model = info["model"]
    network = resolve_model(model, config.size, config.dataset)
    overrides = shape_overrides(network, contract)  # everything else: the preset's own settings
    torch.manual_seed(experiment.trainer.seed)
    net = build_network(network, overrides, contract)
    batch = next(iter(datamodule.train_dataloader()))
    sample = torch.nan_to_num(batch["inputs"][:1])  # (1, T_in, H, W, C_in)
    info.update(network=network, params_m=count_parameters(net) / 1e6)
    info["gflops"] = gflops_per_sample(net, sample)
    run = experiment.replace(name=f"benchmark-{model}", model=network, model_overrides=overrides)
    scheduled_sampling = hasattr(getattr(net, "config", None), "sampling_steps")
    if not any(p.requires_grad for p in net.parameters()):
        print(f"  {network}: no trainable parameters, scored directly")
        info.update(train_time_s=0.0, steps=0, planned_steps=0, stopped_by_max_time=False)
        info["metrics"] = evaluate(network, _quiet_eval(run, config, model))
        return
    del net
    out = _run_dir(config, model)
    record = _usable_run(out, config, settings)
    if record is not None:  # the schedule it started with, not a new plan
        steps, step_s = int(record["planned_steps"]), record.get("seconds_per_step")
    else:
        steps, step_s = _plan(run, config, model)
        write_json(
            out / RUN_RECORD_NAME, {"settings": settings, "planned_steps": steps, "seconds_per_step": step_s}
        )
    info.update(planned_steps=steps, seconds_per_step=step_s)
    timing = f" ({step_s:.3g} s/step measured)" if step_s is not None else ""
    resuming = f", resuming {out}" if record is not None else ""
    print(f"  {network}: {info['params_m']:.3g} M parameters, {steps} steps{timing}{resuming}", flush=True)
    run = run.replace(trainer=_budget_trainer(run, config, model, steps))
    if scheduled_sampling:
        run = run.replace(model_overrides={**overrides, "sampling_steps": sampling_steps(steps)})
        info["sampling_steps"] = run.model_overrides["sampling_steps"]
    start = time.perf_counter()
    fitted = fit(run, resume="auto" if record is not None else None)
    elapsed = time.perf_counter() - start
    info["steps"], timer_s = _checkpoint_progress(fitted.last_ckpt)
    info["train_time_s"] = timer_s if timer_s is not None else elapsed
    info["stopped_by_max_time"] = config.budget.seconds is not None and (info["steps"] or 0) < steps
    if info["stopped_by_max_time"]:
        print(f"  stopped by the wall-clock limit at step {info['steps']} of {steps}", flush=True)
    info["train_loss"] = fitted.metrics.get("train/loss_epoch", fitted.metrics.get("train/loss"))
    info["metrics"] = evaluate(fitted.last_ckpt, _quiet_eval(run, config, model), use_ema=True)


SAMPLING_SHARE = 0.625
"""Share of a benchmark run over which a recurrent model's scheduled sampling decays to the
free-running forecast it is scored on: PredRNN's reference schedule ends at 50,000 of 80,000
iterations. The presets' fixed step counts (2,000–5,000) would leave a 150-step run almost fully
teacher-forced, then score it free-running."""


def sampling_steps(planned_steps: int) -> int:
    """``sampling_steps`` of a recurrent baseline trained for ``planned_steps`` (:data:`SAMPLING_SHARE`)."""
    return max(1, round(SAMPLING_SHARE * planned_steps))


def _usable_run(out: Path, config: BenchmarkConfig, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The record of a run in ``out`` to resume; ``None`` for a fresh start. A run of other (or
    unrecorded) settings is moved aside; ``rerun`` deletes a run of these settings (its result is
    being replaced)."""
    if not out.exists():
        return None
    record = read_json(out / RUN_RECORD_NAME)
    made_with = record.get("settings") if record and "planned_steps" in record else None
    if made_with != settings:
        _move_aside(out, made_with, settings, "run")
        return None
    if config.rerun:  # train again from scratch, not on from the previous run's checkpoint
        shutil.rmtree(out)
        return None
    # a run that stopped before its first checkpoint starts again (its logs stay)
    return record if (out / "checkpoints" / "last.ckpt").is_file() else None


def _plan(run: ExperimentConfig, config: BenchmarkConfig, model: str) -> tuple[int, float | None]:
    """Steps for the budget, and for a wall-clock budget the measured seconds per step."""
    budget = config.budget
    if budget.steps is not None:
        return budget.steps, None
    assert budget.seconds is not None
    timing = time_real_steps(run.replace(trainer=_budget_trainer(run, config, model, 1)), budget.seconds)
    print(
        f"  calibration: first step {timing.first_s:.3g} s, then {timing.step_s:.3g} s/step, "
        f"checkpoint {timing.checkpoint_s:.3g} s",
        flush=True,
    )
    return plan_steps(budget.seconds, timing), timing.step_s


def _budget_trainer(run: ExperimentConfig, config: BenchmarkConfig, model: str, steps: int):
    return dataclasses.replace(
        run.trainer,
        max_steps=steps,
        max_epochs=-1,
        max_time=config.budget.max_time() or UNLIMITED_TIME,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        early_stopping_patience=None,
        checkpoint_every_n_steps=checkpoint_every(steps),
        out_dir=str(_run_dir(config, model)),
    )


def _quiet_eval(run: ExperimentConfig, config: BenchmarkConfig, model: str) -> ExperimentConfig:
    return run.replace(trainer=dataclasses.replace(run.trainer, out_dir=str(_run_dir(config, model))))


def _checkpoint_progress(ckpt: Path | None) -> tuple[int | None, float | None]:
    """Optimiser steps and training seconds recorded in a checkpoint. The seconds are those of
    Lightning's timer, which a resumed run restores: they add up over every part of the run
    that led to these weights (the part an interruption threw away is not counted)."""
    if ckpt is None:
        return None, None
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    timer = next((v for k, v in (state.get("callbacks") or {}).items() if str(k).startswith("Timer")), None)
    seconds = (timer or {}).get("time_elapsed", {}).get("train")
    return int(state.get("global_step", 0)), None if seconds is None else float(seconds)


def _write_outputs(
    results: list[dict[str, Any]], config: BenchmarkConfig, settings: dict[str, Any]
) -> list[str]:
    """Table and plot of every finished result of these settings in the folder, with this run's
    rows (failures included) in their place; returns the models left out for other settings."""
    earlier, left_out = finished_results(config.folder / "models", settings)
    rows = {r["model"]: r for r in earlier} | {r["model"]: r for r in results}
    ordered = table_order(rows.values())
    title = (
        f"earthcast benchmark: {config.dataset}, size {config.size}, budget {config.budget} per model, "
        f"test split"
    )
    md, csv_path = write_tables(ordered, config.dataset, config.folder, title)
    plot = plot_results(ordered, config.dataset, config.folder / "plot.png")
    print(f"  table: {md}, {csv_path}" + (f", plot: {plot}" if plot else ""), flush=True)
    return [m for m in left_out if m not in rows]
