"""``run_benchmark``: train every model under one budget, score all on one test split, tabulate.

Layout of ``<out>/<data>/``::

    table.md, table.csv, plot.png   the comparison (rewritten after every model)
    settings.json                   data, size, budget, optimiser and seed the results were made with
    models/<model>.json             one finished model's result (the resume record)
    models/<model>.log              traceback of a model that failed
    runs/<model>/                   its Lightning run (checkpoints, logs)
    data/                           synthetic data shared by all models (when data.root is unset)

Fairness rules: the same data windows, seed, batch size, optimiser and learning-rate schedule for
every learned model; a wall-clock budget is converted per model into steps from a timed
calibration (``models.seconds_per_step``) so each cosine schedule completes inside the budget,
with Lightning's ``max_time`` as a hard stop. Validation is off during benchmark training (the
budget goes to optimisation) and the final weights are scored on the test split. Models without
trainable parameters (persistence, pysteps) are scored directly.

Resuming: a model with ``models/<model>.json`` is not run again unless ``rerun`` is set; a model
whose run was interrupted continues from its ``last.ckpt``. A folder whose ``settings.json``
differs from the run's settings is refused (its results are not comparable) unless ``rerun`` is
set, which trains every model again from scratch. A failing model is recorded with its
error message in the table and the next model runs.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from earthcast.benchmark.budget import Budget
from earthcast.benchmark.models import (
    Size,
    build_network,
    count_parameters,
    gflops_per_sample,
    resolve_model,
    seconds_per_step,
    shape_overrides,
)
from earthcast.benchmark.table import plot_results, write_tables
from earthcast.training.config import ExperimentConfig
from earthcast.utils.io import atomic_path

#: Fraction of a wall-clock budget given to optimiser steps (data loading and checkpointing
#: take the rest), so the schedule ends before the hard ``max_time`` stop.
STEP_SHARE = 0.9


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
        ``metrics`` (test split).
    """
    if not config.models:
        raise ValueError("no models to benchmark: give --models, e.g. earthformer,unet,persistence")
    folder = config.folder
    (folder / "models").mkdir(parents=True, exist_ok=True)
    experiment = _with_shared_data(config.experiment, folder)
    _claim_folder(config, experiment)
    datamodule, contract = _prepare_data(experiment)
    results = []
    for index, model in enumerate(config.models, start=1):
        print(f"\n[{index}/{len(config.models)}] {model} — budget {config.budget}", flush=True)
        results.append(_run_one(model, config, experiment, datamodule, contract))
        _write_outputs(results, config)
    return results


def _with_shared_data(experiment: ExperimentConfig, folder: Path) -> ExperimentConfig:
    if experiment.data.root:
        return experiment
    return experiment.replace(data=experiment.data.replace(root=str(folder / "data")))


SETTINGS_NAME = "settings.json"


def comparable_settings(config: BenchmarkConfig, experiment: ExperimentConfig) -> dict[str, Any]:
    """What makes two results comparable: the data (store, options, windows), model size, budget,
    optimiser and seed. The model list is not part of it: adding a model to a table is fine."""
    plain = experiment.to_dict()
    return {
        "data": plain["data"],
        "size": config.size,
        "budget": str(config.budget),
        "optim": plain["optim"],
        "seed": plain["trainer"]["seed"],
    }


def _claim_folder(config: BenchmarkConfig, experiment: ExperimentConfig) -> None:
    """Refuse to mix results of other settings into a table (they would be reused as finished);
    ``rerun`` starts the folder's models afresh under the new settings instead."""
    settings = json.loads(json.dumps(comparable_settings(config, experiment), default=str))
    path = config.folder / SETTINGS_NAME
    previous = json.loads(path.read_text()) if path.is_file() else None
    if previous is not None and previous != settings and not config.rerun:
        changed = sorted(k for k in settings if previous.get(k) != settings[k])
        raise ValueError(
            f"{config.folder} holds benchmark results made with other settings (changed: "
            f"{', '.join(changed)}); write to another --out, or pass --rerun to train every model "
            "again under the new settings"
        )
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(settings, indent=2))


def _prepare_data(experiment: ExperimentConfig):
    from earthcast.data.datamodule import ForecastDataModule

    datamodule = ForecastDataModule(experiment.data, seed=experiment.trainer.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule, datamodule.contract


def _result_path(config: BenchmarkConfig, model: str) -> Path:
    return config.folder / "models" / f"{model}.json"


def _run_one(
    model: str, config: BenchmarkConfig, experiment: ExperimentConfig, datamodule, contract
) -> dict[str, Any]:
    path = _result_path(config, model)
    if path.is_file() and not config.rerun:
        result = json.loads(path.read_text())
        print(f"  finished earlier: {path} (use --rerun to train again)")
        return result
    result: dict[str, Any] = {"model": model, "budget": str(config.budget)}
    try:
        _train_and_score(result, config, experiment, datamodule, contract)
        result["status"] = "ok"
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=2))
    except Exception as error:  # one failing model must not stop the table
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        result["status"] = f"failed: {type(error).__name__}: {message}"[:300]
        log = path.with_suffix(".log")
        log.write_text(traceback.format_exc())
        print(f"  {result['status']} (traceback in {log})", flush=True)
    return result


def _train_and_score(
    info: dict[str, Any], config: BenchmarkConfig, experiment: ExperimentConfig, datamodule, contract
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
    if not any(p.requires_grad for p in net.parameters()):
        print(f"  {network}: no trainable parameters, scored directly")
        info.update(train_time_s=0.0, steps=0, metrics=evaluate(network, _quiet_eval(run, config, model)))
        return
    steps, step_s = _steps_for(net, batch, config.budget)
    info["seconds_per_step"] = step_s
    timing = f" ({step_s:.3g} s/step measured)" if step_s is not None else ""
    print(f"  {network}: {info['params_m']:.3g} M parameters, {steps} steps{timing}", flush=True)
    del net
    run = run.replace(trainer=_budget_trainer(run, config, model, steps))
    if config.rerun:  # train again from scratch, not on from the previous run's checkpoint
        shutil.rmtree(run.trainer.out_dir, ignore_errors=True)
    last = Path(run.trainer.out_dir) / "checkpoints" / "last.ckpt"
    start = time.perf_counter()
    fitted = fit(run, resume="auto" if last.is_file() else None)
    info["train_time_s"] = time.perf_counter() - start
    info["steps"] = _trained_steps(fitted.last_ckpt)
    info["train_loss"] = fitted.metrics.get("train/loss_epoch", fitted.metrics.get("train/loss"))
    info["metrics"] = evaluate(fitted.last_ckpt, _quiet_eval(run, config, model), use_ema=True)


def _steps_for(net, batch, budget: Budget) -> tuple[int, float | None]:
    if budget.steps is not None:
        return budget.steps, None
    step_s = seconds_per_step(net, batch)
    return max(1, int(STEP_SHARE * budget.seconds / step_s)), step_s


def _budget_trainer(run: ExperimentConfig, config: BenchmarkConfig, model: str, steps: int):
    return dataclasses.replace(
        run.trainer,
        max_steps=steps,
        max_epochs=-1,
        max_time=config.budget.max_time(),
        limit_val_batches=0,
        num_sanity_val_steps=0,
        early_stopping_patience=None,
        checkpoint_every_n_steps=max(1, steps // 10),  # an interrupted benchmark loses ≤ 10 %
        out_dir=str(config.folder / "runs" / model),
    )


def _quiet_eval(run: ExperimentConfig, config: BenchmarkConfig, model: str) -> ExperimentConfig:
    return run.replace(trainer=dataclasses.replace(run.trainer, out_dir=str(config.folder / "runs" / model)))


def _trained_steps(ckpt: Path | None) -> int | None:
    if ckpt is None:
        return None
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    return int(state.get("global_step", 0))


def _write_outputs(results: list[dict[str, Any]], config: BenchmarkConfig) -> None:
    title = (
        f"earthcast benchmark: {config.dataset}, size {config.size}, budget {config.budget} per model, "
        f"test split"
    )
    md, csv_path = write_tables(results, config.dataset, config.folder, title)
    plot = plot_results(results, config.dataset, config.folder / "plot.png")
    print(f"  table: {md}, {csv_path}" + (f", plot: {plot}" if plot else ""), flush=True)
