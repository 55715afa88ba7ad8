"""Experiment configuration: frozen dataclasses (the only defaults), YAML deltas, ``--set`` overrides.

An experiment file (packaged under ``earthcast/configs/`` or any path) lists only what differs
from the dataclass defaults below, e.g.::

    name: nbody
    model: earthformer_nbody
    data: {name: nbody, root: data/nbody}
    trainer: {global_batch_size: 32}

``load_config(name_or_path, overrides)`` reads it, applies ``key.sub=value`` overrides (values
parsed as YAML, so ``1e-3``, ``[4, 16, 16, 1]`` and ``null`` work) and validates everything:
unknown keys raise ``ValueError`` listing the valid ones, and wrong types or values are named with
their dotted path. Recipes follow SPEC §2.8 (AdamW, warm-up + cosine, clip 1.0, seed 0).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from earthcast.data.config import DataConfig as DataConfig

Task = Literal["forecast", "vae", "diffusion", "alignment"]
TASKS: tuple[str, ...] = ("forecast", "vae", "diffusion", "alignment")
Precision = Literal["32", "bf16-mixed", "16-mixed", "64"]
Strategy = Literal["auto", "ddp", "fsdp", "ddp_spawn"]
ProgressBar = Literal["tqdm", "rich", "none"]
CpuAllocator = Literal["system", "reuse"]  # earthcast.utils.allocator
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a linear warm-up and a cosine decay (SPEC §2.8; built in ``training/optim.py``).

    Attributes:
        lr: peak learning rate.
        weight_decay: decoupled weight decay of every parameter except LayerNorm/RMSNorm
            parameters and biases.
        betas, eps: AdamW moments and denominator term.
        warmup_fraction: share of all optimiser steps spent warming up linearly.
        warmup_min_lr_ratio: learning rate at step 0, as a fraction of ``lr``.
        min_lr_ratio: learning rate at the last step, as a fraction of ``lr``.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_fraction: float = 0.2
    warmup_min_lr_ratio: float = 0.0
    min_lr_ratio: float = 1e-3

    def __post_init__(self) -> None:
        _require(
            self.lr > 0 and self.weight_decay >= 0 and self.eps > 0,
            f"optim: need lr > 0, weight_decay >= 0, eps > 0; got {self.lr}, {self.weight_decay}, {self.eps}",
        )
        _require(
            0 <= self.warmup_fraction < 1, f"optim.warmup_fraction={self.warmup_fraction} must be in [0, 1)"
        )
        for key in ("warmup_min_lr_ratio", "min_lr_ratio"):
            _require(0 <= getattr(self, key) <= 1, f"optim.{key}={getattr(self, key)} must be in [0, 1]")
        _require(all(0 <= b < 1 for b in self.betas), f"optim.betas={self.betas} must lie in [0, 1)")


def optim_config_from_dict(optim: dict[str, Any] | None, base: OptimConfig | None = None) -> OptimConfig:
    """``base`` (default: the :class:`OptimConfig` defaults) with the fields given in ``optim``.

    ``optim`` is a plain dict as stored in hparams or YAML, so ``betas`` may be a list; it becomes
    a tuple. Unknown keys raise ``TypeError``.
    """
    optim = dict(optim or {})
    if "betas" in optim:
        optim["betas"] = tuple(optim["betas"])
    return OptimConfig(**optim) if base is None else dataclasses.replace(base, **optim)


@dataclass(frozen=True)
class TrainerConfig:
    """Lightning ``Trainer`` settings plus run bookkeeping.

    Attributes:
        max_epochs: epochs to train (-1 with ``max_steps`` set: stop on steps only).
        max_steps: optimiser steps to train (-1: no limit).
        max_time: wall-clock limit of training, ``"DD:HH:MM:SS"`` (``None``: none); the run stops
            cleanly and writes ``last.ckpt`` when it is reached.
        precision: ``"32"``, ``"bf16-mixed"``, ``"16-mixed"`` or ``"64"``.
        accelerator: ``"auto"``, ``"cpu"``, ``"gpu"``, …; devices: count, list or ``"auto"``.
        strategy: ``"auto"``, ``"ddp"``, ``"fsdp"`` or ``"ddp_spawn"``; num_nodes: machines.
        accumulate_grad_batches: micro-batches per optimiser step.
        global_batch_size: if set, sequences per optimiser step over all devices; derives
            ``accumulate_grad_batches = global / (data.batch_size · devices · nodes)``.
        gradient_clip_val: clip the global gradient norm to this (``None``: no clipping).
        val_check_interval: validate every fraction of an epoch (float) or every n batches (int).
        check_val_every_n_epoch: validate every n epochs.
        limit_train_batches, limit_val_batches, limit_test_batches: fraction or count of batches.
        early_stopping_patience: validations without improvement before stopping (``None``: never).
        seed: seed of everything (weights, dropout, shuffling); the run is deterministic on CPU.
        deterministic: ``True``, ``False`` or ``"warn"`` (deterministic kernels where they exist).
        matmul_precision: ``torch.set_float32_matmul_precision`` (``"high"`` enables TF32).
        ema_decay: keep an exponential moving average of the weights with this decay and
            validate/test/predict with it (``None``: off).
        checkpoint_every_n_steps: also write ``last.ckpt`` every n optimiser steps (``None``: at
            the end of every epoch only).
        log_every_n_steps: logging interval of the training loss.
        num_sanity_val_steps: validation batches run before training.
        progress_bar: ``"tqdm"``, ``"rich"`` or ``"none"``.
        cpu_allocator: ``"reuse"`` (default) makes ``malloc`` keep freed memory when training on
            the CPU: 1.5× faster SEVIR-size steps for 1.4× the peak memory; ``"system"`` leaves it
            (see :mod:`earthcast.utils.allocator`).
        compile: ``torch.compile`` the networks in place (``true`` or a mode: ``"default"``,
            ``"reduce-overhead"``, ``"max-autotune"``, ``"max-autotune-no-cudagraphs"``); the first
            training and evaluation steps pay the compile time (see
            :mod:`earthcast.training.compile`). ``false`` (default): eager.
        out_dir: run directory (checkpoints, logs, synthetic data); ``None``: ``runs/<name>``.
    """

    max_epochs: int = 100
    max_steps: int = -1
    max_time: str | None = None
    precision: Precision = "32"
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    strategy: Strategy = "auto"
    num_nodes: int = 1
    accumulate_grad_batches: int = 1
    global_batch_size: int | None = None
    gradient_clip_val: float | None = 1.0
    val_check_interval: float | int = 1.0
    check_val_every_n_epoch: int = 1
    limit_train_batches: float | int = 1.0
    limit_val_batches: float | int = 1.0
    limit_test_batches: float | int = 1.0
    early_stopping_patience: int | None = 20
    seed: int = 0
    deterministic: bool | Literal["warn"] = "warn"
    matmul_precision: Literal["highest", "high", "medium"] = "highest"
    ema_decay: float | None = None
    checkpoint_every_n_steps: int | None = None
    log_every_n_steps: int = 50
    num_sanity_val_steps: int = 2
    progress_bar: ProgressBar = "tqdm"
    cpu_allocator: CpuAllocator = "reuse"
    compile: bool | CompileMode = False
    out_dir: str | None = None

    def __post_init__(self) -> None:
        _require(
            self.max_epochs >= -1 and self.max_steps >= -1, "trainer: max_epochs and max_steps must be >= -1"
        )
        _require(self.max_epochs != -1 or self.max_steps > 0, "trainer: max_epochs=-1 needs max_steps > 0")
        _require(
            self.max_time is None or re.fullmatch(r"\d+:\d{2}:\d{2}:\d{2}", str(self.max_time)) is not None,
            f"trainer.max_time={self.max_time!r} must read DD:HH:MM:SS, e.g. '00:00:15:00' for 15 minutes",
        )
        _require(self.accumulate_grad_batches >= 1, "trainer.accumulate_grad_batches must be >= 1")
        _require(
            self.global_batch_size is None or self.accumulate_grad_batches == 1,
            "trainer: set either global_batch_size or accumulate_grad_batches, not both",
        )
        _require(
            self.global_batch_size is None or self.global_batch_size >= 1,
            "trainer.global_batch_size must be >= 1",
        )
        _require(
            self.ema_decay is None or 0 < self.ema_decay < 1,
            f"trainer.ema_decay={self.ema_decay} must be in (0, 1)",
        )
        _require(  # Lightning skips clipping silently for a value <= 0
            self.gradient_clip_val is None or self.gradient_clip_val > 0,
            f"trainer.gradient_clip_val={self.gradient_clip_val} must be > 0 (or null: no clipping)",
        )
        _require(
            self.ema_decay is None or self.strategy != "fsdp",
            "trainer.ema_decay is not supported with strategy=fsdp (the average would mix weight shards)",
        )
        for key in ("checkpoint_every_n_steps", "early_stopping_patience"):
            value = getattr(self, key)
            _require(value is None or value >= 1, f"trainer.{key}={value} must be >= 1 (or null)")
        _require(
            self.num_nodes >= 1 and self.log_every_n_steps >= 1,
            "trainer: num_nodes and log_every_n_steps must be >= 1",
        )


@dataclass(frozen=True)
class ExperimentConfig:
    """One training/evaluation experiment.

    Attributes:
        model: registered model name (``earthcast models``); for the PreDiff stages the preset of
            the trained network (``vae_nbody``, ``prediff_nbody``, ``alignment_nbody``).
        data: the data set and its loaders.
        name: experiment name (default run directory ``runs/<name>``).
        task: training paradigm: ``forecast`` (deterministic forecasters), ``vae`` (PreDiff's
            first stage), ``diffusion`` (PreDiff's latent diffusion; needs
            ``task_options.vae_ckpt``), ``alignment`` (knowledge alignment network; needs
            ``task_options.vae_ckpt`` and ``task_options.constraint``).
        task_options: keyword arguments of the task's training system (e.g. ``vae_ckpt``,
            ``learn_logvar``, ``val_samples``).
        model_overrides: fields of the model's config to change, e.g. ``{base_units: 32}``.
        optim: optimiser and schedule: the task's recipe (:func:`task_optim`) with the fields
            the config gives (``None``: the recipe itself).
        trainer: trainer, checkpointing and logging.
    """

    model: str
    data: DataConfig
    name: str = "experiment"
    task: Task = "forecast"
    task_options: dict[str, Any] = field(default_factory=dict)
    model_overrides: dict[str, Any] = field(default_factory=dict)
    optim: OptimConfig | None = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self) -> None:
        from earthcast.data import DATASETS

        if self.optim is None:  # frozen: set once, here
            object.__setattr__(self, "optim", task_optim(self.task))
        _require(self.task in TASKS, f"task={self.task!r} must be one of {', '.join(TASKS)}")
        _check_model_name(self.task, self.model)  # ValueError listing the valid names
        DATASETS.get(self.data.name)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), as stored in checkpoints and printed by the CLI."""
        return _plain(dataclasses.asdict(self))

    def replace(self, **changes: Any) -> ExperimentConfig:
        return dataclasses.replace(self, **changes)


def _check_model_name(task: str, model: str) -> None:
    if task == "forecast":
        from earthcast.models import MODELS

        MODELS.get(model)
    elif task == "vae":
        from earthcast.models.prediff.vae import get_preset

        get_preset(model)
    elif task == "diffusion":
        from earthcast.models.prediff.denoiser.config import get_denoiser_config

        get_denoiser_config(model)
    else:
        from earthcast.models.prediff.denoiser.config import get_alignment_config

        get_alignment_config(model)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


VAE_OPTIM = OptimConfig(
    lr=5e-6,
    weight_decay=0.0,
    betas=(0.5, 0.9),
    warmup_fraction=0.1,
    warmup_min_lr_ratio=0.1,
    min_lr_ratio=1e-3,
)
"""PreDiff's VAE recipe (SPEC §5.2): Adam β=(0.5, 0.9), lr 5e-6 for both networks, 10 % warm-up
from 0.1·lr, cosine to 1e-3·lr."""

LATENT_OPTIM = OptimConfig(
    lr=1e-3, weight_decay=0.01, warmup_fraction=0.1, warmup_min_lr_ratio=0.1, min_lr_ratio=1e-3
)
"""PreDiff's latent networks, the denoiser (SPEC §5.3) and the alignment network (§5.5): AdamW
lr 1e-3 with PyTorch's default weight decay 0.01 (the reference configs' 1e-5 is never passed),
cosine with 10 % warm-up from 0.1·lr down to 1e-3·lr."""

TASK_OPTIM: dict[str, OptimConfig] = {"vae": VAE_OPTIM, "diffusion": LATENT_OPTIM, "alignment": LATENT_OPTIM}
"""The recipe an experiment's ``optim`` section starts from, per task (others: the
:class:`OptimConfig` defaults, the Earthformer recipe of SPEC §2.8). The section lists only the
fields that differ, so a VAE config setting ``lr`` keeps the VAE's betas and warm-up."""


def task_optim(task: str) -> OptimConfig:
    """The optimiser recipe of ``task`` (see :data:`TASK_OPTIM`)."""
    return TASK_OPTIM.get(task, OptimConfig())


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------- loading


def list_configs() -> list[str]:
    """Names of the packaged experiment configs (``earthcast/configs/*.yaml``)."""
    folder = resources.files("earthcast") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_config_file(name_or_path: str | Path) -> dict[str, Any]:
    """The raw mapping of a YAML file, or of a packaged config given by name."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        text, where = path.read_text(), str(path)
    else:
        packaged = resources.files("earthcast") / "configs" / f"{name_or_path}.yaml"
        if not packaged.is_file():
            raise ValueError(
                f"no config file '{name_or_path}' and no packaged config of that name; "
                f"packaged configs: {', '.join(list_configs())}"
            )
        text, where = packaged.read_text(), f"packaged config '{name_or_path}'"
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{where} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must hold a mapping of settings, not a {type(raw).__name__}")
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"trainer.max_epochs=5"`` → ``(["trainer", "max_epochs"], 5)``; the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    path = key.strip().split(".")
    if not sep or not all(path):
        raise ValueError(f"override '{text}' is not of the form key.sub=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise ValueError(f"override '{text}': the value is not valid YAML ({err})") from err
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``raw`` with every ``key.sub=value`` override set (intermediate mappings created)."""
    out = _plain(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, key in enumerate(path[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                prefix = ".".join(path[: i + 1])
                raise ValueError(f"override '{text}': '{prefix}' is not a mapping")
            node = child
        node[path[-1]] = value
    return out


def load_config(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a packaged config (by name) or a YAML file, apply overrides, validate.

    Raises:
        ValueError: unknown file/name, unknown keys (the message lists the valid ones), values of
            the wrong type or out of range (named with their dotted path).
    """
    return config_from_dict(apply_overrides(read_config_file(name_or_path), overrides))


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from a nested mapping; its ``optim``
    section changes fields of the task's recipe (:func:`task_optim`)."""
    optim = raw.get("optim", {})
    if isinstance(optim, dict) and isinstance(raw.get("task", "forecast"), str):
        recipe = dataclasses.asdict(task_optim(raw.get("task", "forecast")))
        raw = {**raw, "optim": {**recipe, **optim}}
    return _build(ExperimentConfig, raw, "")


def _build(cls: type, raw: Any, where: str) -> Any:
    label = where[:-1] if where else "the config"
    if not isinstance(raw, dict):
        raise ValueError(f"{label} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        keys = ", ".join(f"{where}{k}" for k in unknown)
        raise ValueError(
            f"unknown key(s) {keys}; valid keys{' of ' + where[:-1] if where else ''}: {', '.join(fields)}"
        )
    required = [n for n, f in fields.items() if _is_required(f) and n not in raw]
    if required:
        raise ValueError(f"missing required key(s): {', '.join(where + n for n in required)}")
    hints = typing.get_type_hints(cls)
    values = {name: _convert(value, hints[name], f"{where}{name}") for name, value in raw.items()}
    try:
        return cls(**values)
    except TypeError as err:
        raise ValueError(f"{label}: {err}") from err


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _convert(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against annotation ``tp`` (and converted where YAML is ambiguous)."""
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where + ".")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        # the option of the value's own type first: in ``float | int``, an int 1 must stay 1
        # (Lightning reads limit_*_batches=1 as one batch, 1.0 as the whole epoch)
        options.sort(key=lambda option: type(value) is not option)
        for option in options:
            try:
                return _convert(value, option, where)
            except ValueError:
                if dataclasses.is_dataclass(option) and isinstance(value, dict):
                    raise  # a section of the config: its own message names the field
                continue
    elif origin is Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
            if isinstance(choice, str) and type(value) in (int, float) and str(value) == choice:
                return choice  # precision: 32 → "32"
    elif origin in (tuple, list):
        if isinstance(value, (list, tuple)):
            return _convert_sequence(value, origin, args, where)
    elif origin is dict or tp is dict:
        if isinstance(value, dict):
            return dict(value)
    elif _scalar_ok(value, tp):
        return float(value) if tp is float else value
    raise ValueError(f"{where}: expected {_describe(tp)}, got {value!r}")


def _convert_sequence(value: list | tuple, origin: Any, args: tuple, where: str) -> Any:
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    item = args[0] if args else Any
    converted = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(converted) if origin is tuple else converted


def _scalar_ok(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                float(value)
            except ValueError:
                return False
            return True
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    raise TypeError(f"unsupported annotation {tp!r}")


def _describe(tp: Any) -> str:
    """Human name of an annotation, for error messages."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        return "a list"
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(tp, "a mapping" if origin is dict or tp is dict else str(tp))


def to_yaml(config: ExperimentConfig) -> str:
    """The full resolved config as YAML (every field, defaults included)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
