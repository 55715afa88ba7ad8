"""``fit`` and ``evaluate``: experiment config in, Lightning ``Trainer`` run, checkpoints and metrics out.

Run directory layout (``trainer.out_dir``, default ``runs/<name>``)::

    checkpoints/last.ckpt          latest state (every epoch, every n steps if asked, at the end)
    checkpoints/best-*.ckpt        best state on the data set's selection metric
    logs/version_*/metrics.csv     CSVLogger (training loss every ``log_every_n_steps``)
    tb/version_*/                  TensorBoard
    data/<name>/                   synthetic data when ``data.root`` is unset

Distributed training is configured only through trainer flags (``strategy``, ``devices``,
``num_nodes``): Lightning launches the processes; this code is the same on one CPU and on many
GPUs. Every run is seeded (``seed_everything(seed, workers=True)``) and deterministic kernels are
requested where they exist.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch import callbacks as cb
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn

from earthcast.data.config import DataConfig
from earthcast.data.gridded_splits import reuse_training_statistics
from earthcast.training.checkpoint import (
    CHECKPOINT_DIR,
    LAST_NAME,
    AtomicCheckpointIO,
    find_resume_checkpoint,
    network_from_checkpoint,
    read_checkpoint,
)
from earthcast.training.compile import CompileNetworks
from earthcast.training.config import ExperimentConfig, TrainerConfig
from earthcast.training.forecast_module import ForecastSystem
from earthcast.training.initial_weights import InitialWeights, read_initial_weights
from earthcast.training.random_state import RandomState
from earthcast.training.resume_settings import ExperimentRecord, check_resume_settings, recorded_experiment
from earthcast.utils.allocator import CPU_ALLOCATORS, keep_freed_memory


@dataclass(frozen=True)
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
        best_ckpt: best checkpoint on the selection metric (``None`` without validation).
        last_ckpt: checkpoint of the final state (resume from it, or continue training).
        metrics: last logged value of every metric (``train/loss``, ``val/…``); for a resumed run
            that had already finished, the last values its CSV logs hold.
        out_dir: the run directory.
        already_finished: resumed from a checkpoint whose run had reached its step/epoch limit,
            so no step was taken (its schedule has ended: a longer run is a new run).
    """

    best_ckpt: Path | None
    last_ckpt: Path | None
    metrics: dict[str, float]
    out_dir: Path
    already_finished: bool = False


class LastCheckpoint(cb.ModelCheckpoint):
    """``last.ckpt`` at every trigger (epoch end, or every n steps) and once more when training ends.

    Lightning writes a "last" checkpoint only at a trigger where the same callback also saved a
    top-k file, and this one keeps none (``save_top_k=0``): without the override below, a run
    without ``checkpoint_every_n_steps`` wrote ``last.ckpt`` only when training ended, so a killed
    run had nothing to resume from and ``--resume auto`` started again from step 0.
    """

    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict) -> None:
        # no top-k files: mark the trigger as saved, so the "last" save that follows takes place
        self._last_global_step_saved = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(Path(self.dirpath) / LAST_NAME, weights_only=False)
        self.last_model_path = str(Path(self.dirpath) / LAST_NAME)


def run_dir(config: ExperimentConfig, out_dir: str | Path | None = None) -> Path:
    """The run directory: ``out_dir``, else ``trainer.out_dir``, else ``runs/<name>``."""
    return Path(out_dir or config.trainer.out_dir or Path("runs") / config.name).expanduser()


def resolve_data(config: ExperimentConfig, out: Path) -> DataConfig:
    """``config.data`` with ``root`` defaulting to ``<run dir>/data/<name>``."""
    return config.data if config.data.root else config.data.replace(root=str(out / "data" / config.data.name))


def fit(
    config: ExperimentConfig,
    resume: str | Path | None = None,
    *,
    out_dir: str | Path | None = None,
    init_from: str | Path | None = None,
) -> FitResult:
    """Train ``config.model`` on ``config.data`` with Lightning.

    Args:
        config: the experiment.
        resume: ``None`` (new run; refused if the run directory already holds ``last.ckpt``),
            ``"auto"`` (continue from ``<run dir>/checkpoints/last.ckpt`` if present) or a path.
        out_dir: run directory (overrides ``trainer.out_dir``).
        init_from: a new forecasting run starts from this checkpoint's trained network, with a
            fresh optimiser and schedule (``training/initial_weights.py``); not with ``resume``.

    Returns:
        Best and last checkpoints, final metrics and the run directory.
    """
    out = run_dir(config, out_dir)
    ckpt_path = _resume_path(resume, out)
    # a resumed run goes on with the checkpoint's normalisation; its contract is checked in setup
    recorded, resumed_step, resumed_experiment = _resume_record(ckpt_path)
    initial = _initial_weights(init_from, config, ckpt_path)
    if initial is not None:  # the first run's normalisation and contract, as on resume
        recorded = initial[1]
    data = reuse_training_statistics(resolve_data(config, out), recorded)
    trainer_cfg = dataclasses.replace(config.trainer, out_dir=str(out))
    config = config.replace(data=data, trainer=trainer_cfg)
    check_resume_settings(resumed_experiment, config.to_dict(), ckpt_path)
    _seed_and_flags(trainer_cfg)
    from earthcast.data.datamodule import ForecastDataModule

    datamodule = ForecastDataModule(data, seed=trainer_cfg.seed)
    system, trainer_cfg = make_system(config, trainer_cfg)
    if recorded and isinstance(system, ForecastSystem):
        system.hparams["data_contract"] = recorded
    extra = [InitialWeights(init_from, initial[0])] if initial is not None else []
    trainer = build_trainer(
        trainer_cfg, out, system, data.batch_size, experiment=config.to_dict(), callbacks=extra
    )
    with warnings.catch_warnings():
        # Lightning warns that a mid-epoch resume cannot continue the data loader; ours can:
        # ForecastDataModule.state_dict resumes its sampler at the next batch (tests/training/test_resume.py)
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before")
        trainer.fit(
            system, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True
        )
    best = next((c.best_model_path for c in trainer.checkpoint_callbacks if c.monitor), "")
    last = out / CHECKPOINT_DIR / LAST_NAME
    metrics = _floats(trainer.callback_metrics)
    # a resumed run that had already reached its limit takes no step and logs nothing
    already_finished = resumed_step is not None and trainer.global_step == resumed_step and not metrics
    return FitResult(
        best_ckpt=Path(best).resolve() if best else None,
        last_ckpt=last.resolve() if last.is_file() else None,
        metrics=last_logged_metrics(out) if already_finished else metrics,
        out_dir=out,
        already_finished=already_finished,
    )


def make_system(
    config: ExperimentConfig, trainer_cfg: TrainerConfig
) -> tuple[L.LightningModule, TrainerConfig]:
    """The training system of ``config.task`` and the trainer settings it runs under.

    ``forecast``: :class:`ForecastSystem`; ``vae``: ``VAESystem`` (manual optimisation, so it clips
    and accumulates itself and the trainer does neither); ``diffusion``:
    ``LatentDiffusionSystem``; ``alignment``: ``AlignmentSystem``.
    """
    optim = dataclasses.asdict(config.optim)
    config = config.replace(task_options=_task_options(config, trainer_cfg))
    if config.task == "forecast":
        system = ForecastSystem(
            model_name=config.model,
            model_overrides=config.model_overrides,
            dataset=config.data.name,
            optim=optim,
            ema_decay=trainer_cfg.ema_decay,
            experiment=config.to_dict(),
        )
        return system, trainer_cfg
    if config.task == "vae":
        from earthcast.models.prediff.vae import AutoencoderKL, get_preset
        from earthcast.training.vae_module import VAESystem

        if trainer_cfg.global_batch_size is not None:
            raise ValueError(
                "task vae: set trainer.accumulate_grad_batches instead of trainer.global_batch_size"
            )
        vae = AutoencoderKL(get_preset(config.model).replace(**config.model_overrides))
        system = VAESystem(
            vae,
            optim=optim,
            gradient_clip_val=trainer_cfg.gradient_clip_val,
            accumulate_grad_batches=trainer_cfg.accumulate_grad_batches,
            **config.task_options,
        )
        manual = dataclasses.replace(trainer_cfg, gradient_clip_val=None, accumulate_grad_batches=1)
        return system, manual
    if config.task == "diffusion":
        from earthcast.training.diffusion_module import LatentDiffusionSystem

        system = LatentDiffusionSystem(
            denoiser=config.model,
            denoiser_overrides=config.model_overrides,
            optim=optim,
            dataset=config.data.name,
            experiment=config.to_dict(),
            **config.task_options,
        )
        return system, trainer_cfg
    return _alignment_system(config, optim), trainer_cfg


def _task_options(config: ExperimentConfig, trainer_cfg: TrainerConfig) -> dict[str, Any]:
    """``task_options`` with ``trainer.ema_decay`` routed to the task that keeps an average, so
    no setting is silently ignored: forecasting takes no task options (its EMA is
    ``trainer.ema_decay``), the diffusion stage's EMA is ``task_options.ema_decay`` or
    ``trainer.ema_decay`` (not two different values), the VAE and alignment stages keep none."""
    options, ema = dict(config.task_options), trainer_cfg.ema_decay
    if config.task == "forecast" and options:
        raise ValueError(
            f"task forecast takes no task_options (got {sorted(options)}); the forecasting settings are "
            "model_overrides, optim and trainer (its weight average is trainer.ema_decay)"
        )
    if config.task == "diffusion" and ema is not None:
        if options.get("ema_decay", ema) != ema:
            raise ValueError(
                f"trainer.ema_decay={ema} and task_options.ema_decay={options['ema_decay']} disagree; "
                "the diffusion stage keeps one average of the denoiser: set one of them"
            )
        options["ema_decay"] = ema
    if config.task in ("vae", "alignment") and ema is not None:
        raise ValueError(f"task {config.task} keeps no weight average: remove trainer.ema_decay={ema}")
    return options


def _alignment_system(config: ExperimentConfig, optim: dict[str, Any]) -> L.LightningModule:
    """U_φ for ``config.model`` sized from the data and the VAE; the constraint fitted/loaded first.

    ``task_options``: ``vae_ckpt`` (required), ``constraint`` (``mean_intensity`` | ``nbody_energy``),
    ``estimator_ckpt`` (``nbody_energy``: a trained energy estimator); other keys go to
    ``AlignmentSystem``. ``mean_intensity`` fits its context regressor on the training split here.
    """
    from earthcast.data.datamodule import ForecastDataModule
    from earthcast.models.prediff.denoiser.alignment import AlignmentNetwork
    from earthcast.models.prediff.denoiser.config import get_alignment_config
    from earthcast.models.prediff.knowledge.constraints import get_constraint
    from earthcast.training.alignment_module import AlignmentSystem
    from earthcast.training.vae_module import load_vae

    options = dict(config.task_options)
    missing = [k for k in ("vae_ckpt", "constraint") if k not in options]
    if missing:
        raise ValueError(
            f"task alignment needs task_options {missing} (a VAE checkpoint and a constraint name)"
        )
    datamodule = ForecastDataModule(config.data, seed=config.trainer.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    contract = datamodule.contract
    vae = load_vae(options.pop("vae_ckpt"), data_contract=contract)
    factor = vae.config.downsample_factor
    shape = {
        "target_len": contract["out_len"],
        "latent_hw": (contract["height"] // factor, contract["width"] // factor),
        "latent_channels": vae.config.latent_channels,
    }
    net = AlignmentNetwork(get_alignment_config(config.model, **{**shape, **config.model_overrides}))
    name = options.pop("constraint")
    if name == "nbody_energy":
        from earthcast.training.estimator_module import load_energy_estimator

        if "estimator_ckpt" not in options:
            raise ValueError(
                "constraint nbody_energy needs task_options.estimator_ckpt (a trained energy estimator)"
            )
        constraint = get_constraint(name, estimator=load_energy_estimator(options.pop("estimator_ckpt")))
    else:
        constraint = get_constraint(name)
        constraint.regressor.fit(datamodule.train_dataloader())  # μ_τ, σ_τ from training contexts only
    return AlignmentSystem(vae, net, constraint, optim=optim, **options)


def evaluate(
    ckpt_or_model_name: str | Path,
    config: ExperimentConfig,
    *,
    split: str = "test",
    use_ema: bool = True,
) -> dict[str, float]:
    """Score a checkpoint, or an untrained registered model (e.g. ``persistence``), on one split.

    Args:
        ckpt_or_model_name: path of an earthcast checkpoint, or a registered model name (built
            with ``config.model_overrides``; models that follow the data get their shapes from it).
        config: supplies the data, the trainer flags (devices, strategy, limits) and the seed.
        split: ``"test"`` or ``"val"``.
        use_ema: score the EMA weights when the checkpoint has them.

    Returns:
        ``{metric: value}`` without the split prefix, e.g. ``{"mse": …, "csi_m": …, "loss": …}``.
    """
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    out = run_dir(config)
    system = _system_for(ckpt_or_model_name, config, use_ema)
    # a checkpoint is scored on data normalised as it was trained
    data = reuse_training_statistics(resolve_data(config, out), system.hparams.get("data_contract"))
    trainer_cfg = config.trainer
    _seed_and_flags(trainer_cfg)
    from earthcast.data.datamodule import ForecastDataModule

    datamodule = ForecastDataModule(data, seed=trainer_cfg.seed)
    trainer = build_trainer(trainer_cfg, out, system, data.batch_size, evaluating=True)
    run = trainer.test if split == "test" else trainer.validate
    results = run(system, datamodule=datamodule, verbose=False)
    prefix = f"{split}/"
    return {k.removeprefix(prefix): v for k, v in _floats(results[0] if results else {}).items()}


def _system_for(ckpt_or_model_name: str | Path, config: ExperimentConfig, use_ema: bool) -> ForecastSystem:
    from earthcast.models import MODELS

    path = Path(ckpt_or_model_name)
    if path.suffix in (".ckpt", ".pt", ".pth") or path.exists():
        net, info = network_from_checkpoint(read_checkpoint(path), path, use_ema)
        return ForecastSystem(
            net,
            model_name=info["model_name"],
            model_overrides=info["model_overrides"],
            dataset=config.data.name,
            data_contract=info["data_contract"],
        )
    if str(ckpt_or_model_name) not in MODELS:
        raise ValueError(
            f"'{ckpt_or_model_name}' is neither a checkpoint file nor a registered model "
            f"({', '.join(MODELS.names())})"
        )
    # the experiment's model_overrides configure its own model, not another one scored in its place
    overrides = config.model_overrides if str(ckpt_or_model_name) == config.model else {}
    return ForecastSystem(
        model_name=str(ckpt_or_model_name),
        model_overrides=overrides,
        dataset=config.data.name,
        experiment=config.to_dict(),
    )


_DDP_LAUNCHERS = ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")


def _strategy(strategy: str, system: L.LightningModule) -> str:
    """``strategy``, except that plain DDP becomes its ``_find_unused_parameters_true`` variant for
    systems whose backward passes each reach only some of their parameters (``partial_backward``:
    the VAE's generator and critic steps); plain DDP would stop them with an error."""
    if getattr(system, "partial_backward", False) and strategy in _DDP_LAUNCHERS:
        return f"{strategy}_find_unused_parameters_true"
    return strategy


def build_trainer(
    cfg: TrainerConfig,
    out: Path,
    system: ForecastSystem,
    micro_batch: int,
    evaluating: bool = False,
    experiment: dict[str, Any] | None = None,
    callbacks: list[cb.Callback] | None = None,
) -> L.Trainer:
    """A Lightning ``Trainer`` for ``cfg``: loggers, checkpoints, early stopping, LR monitor, progress
    bar; ``experiment`` is written into every checkpoint (``training/resume_settings.py``);
    ``callbacks`` are added to these."""
    callbacks = [CpuAllocatorPolicy(cfg.cpu_allocator), *(callbacks or [])]
    if experiment is not None:
        callbacks.append(ExperimentRecord(experiment))
    if cfg.compile:
        callbacks.append(CompileNetworks(cfg.compile))
    if cfg.progress_bar == "rich":
        callbacks.append(cb.RichProgressBar())
    elif cfg.progress_bar == "tqdm":
        callbacks.append(cb.TQDMProgressBar())
    loggers: list[Any] | bool = False
    if not evaluating:
        loggers = [CSVLogger(out, name="logs"), TensorBoardLogger(out, name="tb", default_hp_metric=False)]
        callbacks += [cb.ModelSummary(max_depth=1), *_training_callbacks(cfg, out, system)]  # summary → log
    trainer = L.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=_strategy(cfg.strategy, system),
        num_nodes=cfg.num_nodes,
        precision=cfg.precision,
        max_epochs=cfg.max_epochs,
        max_steps=cfg.max_steps,
        max_time=cfg.max_time,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        gradient_clip_val=cfg.gradient_clip_val,
        val_check_interval=cfg.val_check_interval,
        check_val_every_n_epoch=cfg.check_val_every_n_epoch,
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches,
        limit_test_batches=cfg.limit_test_batches,
        num_sanity_val_steps=cfg.num_sanity_val_steps,
        log_every_n_steps=cfg.log_every_n_steps,
        deterministic=cfg.deterministic,
        default_root_dir=out,
        logger=loggers,
        callbacks=callbacks,
        enable_checkpointing=not evaluating,
        enable_progress_bar=cfg.progress_bar != "none",
        enable_model_summary=not evaluating,
        use_distributed_sampler=False,  # ForecastDataModule shards with its own resumable sampler
        # no_grad, not inference_mode, for evaluation: networks cache index tensors (cuboid masks,
        # relative-bias indices) and a tensor cached in inference mode cannot be used for training
        inference_mode=False,
        plugins=[AtomicCheckpointIO()],
    )
    if cfg.global_batch_size is not None:
        trainer.accumulate_grad_batches = _accumulation(
            cfg.global_batch_size, micro_batch, trainer.world_size
        )
    return trainer


def _training_callbacks(cfg: TrainerConfig, out: Path, system: ForecastSystem) -> list[cb.Callback]:
    ckpt_dir = out / CHECKPOINT_DIR
    every = cfg.checkpoint_every_n_steps
    callbacks: list[cb.Callback] = [
        LastCheckpoint(
            dirpath=ckpt_dir,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every,
            every_n_epochs=None if every else 1,
            # at every epoch's end, after its validation, even when validation is not every epoch
            save_on_train_epoch_end=True,
        ),
        cb.LearningRateMonitor(logging_interval="step"),
        RandomState(),  # every rank's random stream resumes too
    ]
    if cfg.limit_val_batches != 0:
        monitor, mode = system.selection_metric, system.selection_mode
        callbacks.append(
            cb.ModelCheckpoint(
                dirpath=ckpt_dir,
                filename="best-{epoch:03d}-{step:07d}",
                monitor=monitor,
                mode=mode,
                save_top_k=1,
                auto_insert_metric_name=False,
                save_on_train_epoch_end=False,  # decide when validation has produced the metric
            )
        )
        if cfg.early_stopping_patience is not None:
            callbacks.append(
                # checked after each validation only: at the end of a training epoch there may be
                # no validation result yet (max_steps inside the first epoch), and Lightning
                # would then stop the run with an error before any checkpoint is written
                cb.EarlyStopping(
                    monitor=monitor,
                    mode=mode,
                    patience=cfg.early_stopping_patience,
                    check_on_train_epoch_end=False,
                )
            )
    return callbacks


def _accumulation(global_batch: int, micro_batch: int, world_size: int) -> int:
    per_step = micro_batch * world_size
    if global_batch % per_step:
        raise ValueError(
            f"trainer.global_batch_size={global_batch} is not a multiple of data.batch_size × devices × "
            f"nodes = {micro_batch} × {world_size}"
        )
    return global_batch // per_step


def _resume_path(resume: str | Path | None, out: Path) -> Path | None:
    last = find_resume_checkpoint(out)
    if resume is None:
        if last is not None:
            raise ValueError(
                f"{out} already holds a run ({last}); continue it with resume='auto' (--resume auto) "
                "or choose another run directory"
            )
        return None
    _remove_partial_writes(out / CHECKPOINT_DIR)
    if str(resume) == "auto":
        if last is None and (out / CHECKPOINT_DIR).is_dir():  # a run was here, but left nothing to resume
            rank_zero_warn(
                f"--resume auto: {out / CHECKPOINT_DIR} holds no {LAST_NAME}, so this run starts from "
                "step 0 (its best-*.ckpt files hold weights only for scoring, not a training state)"
            )
        return last
    path = Path(resume)
    if not path.is_file():
        raise ValueError(f"cannot resume: checkpoint '{path}' does not exist")
    return path


def _initial_weights(
    init_from: str | Path | None, config: ExperimentConfig, resumed: Path | None
) -> tuple[dict, dict] | None:
    """``(weights, data contract)`` a new run starts from, or ``None`` (see :func:`fit`)."""
    if init_from is None:
        return None
    if config.task != "forecast":
        raise ValueError(f"--init-from starts forecasting runs; task {config.task} trains from scratch")
    if resumed is not None:
        raise ValueError(
            f"--init-from starts a new run, but this one resumes from '{resumed}' (which has its own "
            "weights); write the new run to another --out"
        )
    return read_initial_weights(init_from, config.model, dict(config.model_overrides))


def _resume_record(
    ckpt_path: Path | None,
) -> tuple[dict[str, Any] | None, int | None, dict[str, Any] | None]:
    """The data contract, global step and experiment of the checkpoint a run resumes from (read
    through ``read_checkpoint``, so a truncated or foreign file is refused with a clear message
    before Lightning opens it); ``(None, None, None)`` for a new run."""
    if ckpt_path is None:
        return None, None, None
    checkpoint = read_checkpoint(ckpt_path)
    contract = checkpoint.get("hyper_parameters", {}).get("data_contract")
    return contract, checkpoint.get("global_step"), recorded_experiment(checkpoint)


def _remove_partial_writes(ckpt_dir: Path) -> None:
    """Delete temporary files a killed run left while writing a checkpoint (``.<name>.<random>.tmp``)."""
    for tmp in ckpt_dir.glob(".*.ckpt.*.tmp") if ckpt_dir.is_dir() else ():
        tmp.unlink(missing_ok=True)


def _seed_and_flags(cfg: TrainerConfig) -> None:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision(cfg.matmul_precision)


def last_logged_metrics(out: Path) -> dict[str, float]:
    """The last value of every metric in the newest ``logs/version_*/metrics.csv`` of a run that
    holds any rows (``{}`` when there is none); ``epoch`` and ``step`` are not metrics."""
    import csv

    def version(path: Path) -> int:
        suffix = path.parent.name.removeprefix("version_")
        return int(suffix) if suffix.isdigit() else -1

    for log in sorted((out / "logs").glob("version_*/metrics.csv"), key=version, reverse=True):
        with open(log, newline="") as f:
            rows = list(csv.DictReader(f))
        values = {
            key: float(value)
            for row in rows
            for key, value in row.items()
            if key not in ("epoch", "step") and value not in ("", None)
        }  # later rows overwrite earlier ones: the last value of each metric
        if values:
            return values
    return {}


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    """Scalar metrics as Python floats (NaN kept: a diverged run should say so)."""
    return {
        key: float(value.detach().cpu()) if isinstance(value, torch.Tensor) else float(value)
        for key, value in metrics.items()
        if not isinstance(value, torch.Tensor) or value.numel() == 1
    }


class CpuAllocatorPolicy(cb.Callback):
    """Applies ``trainer.cpu_allocator`` in every training process whose accelerator is the CPU.

    ``"reuse"`` calls :func:`keep_freed_memory` at setup (in each DDP process); ``"system"`` leaves
    ``malloc`` as it is. ``applied`` records what happened, for logs and tests.
    """

    def __init__(self, policy: str) -> None:
        if policy not in CPU_ALLOCATORS:
            raise ValueError(f"cpu_allocator={policy!r}: choose one of {CPU_ALLOCATORS}")
        self.policy = policy
        self.applied = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.policy == "reuse" and isinstance(trainer.accelerator, CPUAccelerator):
            self.applied = keep_freed_memory()
