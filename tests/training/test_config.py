"""Experiment configs: packaged YAML deltas, validation messages and ``--set`` overrides."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from earthcast.training.config import (
    DataConfig,
    ExperimentConfig,
    OptimConfig,
    TrainerConfig,
    config_from_dict,
    list_configs,
    load_config,
    parse_override,
    read_config_file,
    to_yaml,
)

PACKAGED = [
    "demo",
    "enso",
    "moving_mnist",
    "nbody",
    "nbody_small",
    "prediff_demo",
    "prediff_demo_alignment",
    "prediff_demo_vae",
    "radar",
    "radar_sources",
    "sevir",
    "sevirlr",
]


def test_packaged_configs_are_listed():
    assert list_configs() == PACKAGED


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_config_loads_and_holds_only_deltas(name):
    config = load_config(name)
    assert isinstance(config, ExperimentConfig) and config.name == name
    raw = read_config_file(name)
    defaults = {
        "optim": dataclasses.asdict(OptimConfig()),
        "trainer": dataclasses.asdict(TrainerConfig()),
        "data": {
            f.name: f.default for f in dataclasses.fields(DataConfig) if f.default is not dataclasses.MISSING
        },
    }
    for section, values in raw.items():
        if section in defaults:
            restated = {k: v for k, v in values.items() if defaults[section].get(k, object()) == v}
            assert not restated, f"{name}.yaml restates defaults {restated}"


def test_recipes_follow_the_spec():
    sevir, enso, nbody = load_config("sevir"), load_config("enso"), load_config("nbody")
    assert (sevir.optim.lr, sevir.optim.weight_decay, sevir.trainer.global_batch_size) == (1e-3, 0.0, 32)
    assert (enso.optim.lr, enso.optim.weight_decay, enso.trainer.global_batch_size) == (1e-4, 1e-5, 64)
    assert (enso.data.batch_size, enso.trainer.early_stopping_patience) == (16, 5)
    assert (nbody.data.batch_size, nbody.trainer.max_epochs, nbody.trainer.seed) == (2, 100, 0)
    assert nbody.trainer.gradient_clip_val == 1.0 and nbody.optim.warmup_fraction == 0.2
    assert nbody.optim.min_lr_ratio == 1e-3 and nbody.trainer.precision == "32"


def test_overrides_are_dotted_and_yaml_typed():
    config = load_config(
        "nbody",
        [
            "optim.lr=1e-4",  # PyYAML reads this as a string; the float field converts it
            "optim.betas=[0.8, 0.9]",
            "trainer.precision=bf16-mixed",
            "trainer.devices=2",
            "trainer.deterministic=false",
            "trainer.ema_decay=0.999",
            "model_overrides.base_units=32",
            "data.options.rescale='255'",
            "data.root=/data/nbody",
        ],
    )
    assert config.optim.lr == 1e-4 and config.optim.betas == (0.8, 0.9)
    assert config.trainer.precision == "bf16-mixed" and config.trainer.devices == 2
    assert config.trainer.deterministic is False and config.trainer.ema_decay == 0.999
    assert config.model_overrides == {"base_units": 32}
    assert config.data.options == {"rescale": "255"} and config.data.root == "/data/nbody"


def test_prediff_stages_start_from_their_own_recipes():
    """An optim section changes fields of the task's recipe (SPEC §5.2, §5.3, §5.5), so a VAE
    config giving only ``lr`` still trains with β = (0.5, 0.9) and a 10 % warm-up from 0.1·lr."""
    vae = load_config("prediff_demo_vae")
    assert vae.optim.lr == 2e-3 and vae.optim.betas == (0.5, 0.9)
    assert (vae.optim.weight_decay, vae.optim.warmup_fraction, vae.optim.warmup_min_lr_ratio) == (
        0.0,
        0.1,
        0.1,
    )
    for name in ("prediff_demo", "prediff_demo_alignment"):
        latent = load_config(name).optim
        assert (latent.weight_decay, latent.warmup_fraction, latent.warmup_min_lr_ratio) == (0.01, 0.1, 0.1)
    assert load_config("nbody").optim == OptimConfig()  # forecasting: the Earthformer recipe
    direct = ExperimentConfig(model="vae_tiny", data=DataConfig(name="nbody"), task="vae")
    assert direct.optim.betas == (0.5, 0.9)
    assert config_from_dict(vae.to_dict()) == vae  # the resolved recipe round-trips


def test_settings_a_task_does_not_use_are_refused_or_routed():
    from earthcast.training.runner import make_system

    forecast = load_config("nbody", ["task_options={ema_decay: 0.99}"])
    with pytest.raises(ValueError, match=r"task forecast takes no task_options \(got \['ema_decay'\]\)"):
        make_system(forecast, forecast.trainer)
    vae = load_config("prediff_demo_vae", ["trainer.ema_decay=0.999"])
    with pytest.raises(ValueError, match=r"task vae keeps no weight average"):
        make_system(vae, vae.trainer)
    diffusion = load_config("prediff_demo", ["trainer.ema_decay=0.9999", "task_options.vae_ckpt=x.ckpt"])
    with pytest.raises(
        ValueError, match=r"trainer.ema_decay=0.9999 and task_options.ema_decay=0.995 disagree"
    ):
        make_system(diffusion, diffusion.trainer)
    routed = load_config("prediff_demo", ["trainer.ema_decay=0.9999", "task_options={vae_ckpt: x.ckpt}"])
    system, _ = make_system(routed, routed.trainer)
    assert system.hparams.ema_decay == 0.9999


def test_batch_limits_keep_integers_apart_from_fractions():
    """Lightning reads ``limit_train_batches=1`` as one batch and ``1.0`` as the whole epoch."""
    config = load_config(
        "nbody",
        [
            "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=0.5",
            "trainer.limit_test_batches=3",
            "trainer.val_check_interval=1",
        ],
    )
    trainer = config.trainer
    assert (trainer.limit_train_batches, type(trainer.limit_train_batches)) == (1, int)
    assert (trainer.limit_val_batches, type(trainer.limit_val_batches)) == (0.5, float)
    assert type(trainer.limit_test_batches) is int and type(trainer.val_check_interval) is int


def test_parse_override():
    assert parse_override("a.b.c=[1, 2]") == (["a", "b", "c"], [1, 2])
    assert parse_override("x=null") == (["x"], None)
    assert parse_override("x=") == (["x"], None)
    for bad in ("no_equals", "=3", "a..b=1"):
        with pytest.raises(ValueError, match=r"key.sub=value"):
            parse_override(bad)


def test_unknown_keys_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown key\(s\) trainer\.max_epoch;.*max_epochs.*precision"):
        load_config("nbody", ["trainer.max_epoch=3"])
    with pytest.raises(ValueError, match=r"unknown key\(s\) learning_rate;.*model.*data.*optim.*trainer"):
        load_config("nbody", ["learning_rate=3"])
    with pytest.raises(ValueError, match=r"data\.batchsize.*batch_size"):
        load_config("nbody", ["data.batchsize=3"])


@pytest.mark.parametrize(
    "override,match",
    [
        ("trainer.max_epochs=many", r"trainer\.max_epochs: expected an integer, got 'many'"),
        ("trainer.max_epochs=2.5", r"trainer\.max_epochs: expected an integer"),
        ("optim.lr=fast", r"optim\.lr: expected a number"),
        ("trainer.precision=8", r"trainer\.precision: expected one of '32'"),
        ("trainer.strategy=horovod", r"trainer\.strategy: expected one of"),
        ("optim.betas=[0.9]", r"optim\.betas: expected 2 values"),
        ("trainer.gradient_clip_val=yes", r"gradient_clip_val: expected a number or null"),
        ("trainer.gradient_clip_val=-1", r"gradient_clip_val=-1.0 must be > 0 \(or null: no clipping\)"),
        ("data.num_workers=-1", r"data\.num_workers=-1 must be >= 0"),
        ("optim.warmup_fraction=1.5", r"warmup_fraction=1.5 must be in \[0, 1\)"),
        ("model=earthformer_nbdy", r"unknown model 'earthformer_nbdy'.*earthformer_nbody"),
        ("data.name=sevr", r"unknown dataset 'sevr'.*sevir"),
        ("trainer=3", r"trainer must be a mapping"),
    ],
)
def test_wrong_values_are_named(override, match):
    with pytest.raises(ValueError, match=match):
        load_config("nbody", [override])


def test_missing_required_keys(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: x\ndata: {name: nbody}\n")
    with pytest.raises(ValueError, match=r"missing required key.*model"):
        load_config(path)
    path.write_text("model: persistence\ndata: {root: x}\n")
    with pytest.raises(ValueError, match=r"missing required key.*data\.name"):
        load_config(path)


def test_unknown_config_name_lists_the_packaged_ones(tmp_path):
    with pytest.raises(ValueError, match=r"packaged configs: demo, enso"):
        load_config("nbdy")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match=r"not valid YAML"):
        load_config(bad)


def test_global_batch_and_accumulation_are_exclusive():
    with pytest.raises(ValueError, match=r"either global_batch_size or accumulate_grad_batches"):
        load_config("nbody", ["trainer.accumulate_grad_batches=4"])
    assert load_config("nbody", ["trainer.global_batch_size=null", "trainer.accumulate_grad_batches=4"])


def test_resolved_config_round_trips_through_yaml():
    config = load_config("enso", ["model_overrides.base_units=32"])
    assert config_from_dict(yaml.safe_load(to_yaml(config))) == config
