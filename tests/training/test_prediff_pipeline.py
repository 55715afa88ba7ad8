"""PreDiff end to end on tiny synthetic N-body: VAE stage → diffusion stage → ensemble forecasts."""

from __future__ import annotations

import pytest
import torch

from earthcast.models.prediff.diffusion import KnowledgeGuidance
from earthcast.training.config import config_from_dict
from earthcast.training.diffusion_module import load_prediff
from earthcast.training.runner import fit

DATA = {
    "name": "nbody",
    "in_len": 3,
    "out_len": 2,
    "batch_size": 4,
    "num_workers": 0,
    "synthesize": True,
    "synthetic": {"size": 16, "seq_len": 5, "n_train": 16, "n_val": 4, "n_test": 4},
}
TRAINER = {
    "max_epochs": -1,
    "max_steps": 4,  # one epoch of 16 sequences: validation runs once
    "accelerator": "cpu",
    "devices": 1,
    "progress_bar": "none",
    "num_sanity_val_steps": 0,
    "early_stopping_patience": None,
    "log_every_n_steps": 1,
}


@pytest.fixture(scope="module")
def prediff_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("prediff")
    data = {**DATA, "root": str(root / "data")}
    vae = config_from_dict(
        {"name": "vae", "task": "vae", "model": "vae_tiny", "data": data, "trainer": TRAINER}
    )
    vae_run = fit(vae, out_dir=root / "vae")
    assert vae_run.last_ckpt is not None
    ldm = config_from_dict(
        {
            "name": "ldm",
            "task": "diffusion",
            "model": "prediff_tiny",
            "model_overrides": {"depth": [1, 1]},
            "task_options": {"vae_ckpt": str(vae_run.last_ckpt), "val_samples": 2, "val_steps": 2},
            "data": data,
            "trainer": TRAINER,
        }
    )
    run = fit(ldm, out_dir=root / "ldm")
    assert "val/crps" in run.metrics and run.metrics["val/crps"] > 0
    align = config_from_dict(
        {
            "name": "align",
            "task": "alignment",
            "model": "alignment_tiny",
            "task_options": {"vae_ckpt": str(vae_run.last_ckpt), "constraint": "mean_intensity"},
            "data": data,
            "trainer": TRAINER,
        }
    )
    aligned = fit(align, out_dir=root / "align")
    assert aligned.last_ckpt is not None and "val/loss" in aligned.metrics
    pytest.alignment_ckpt = aligned.last_ckpt  # for the --anticipate test below
    return run.last_ckpt


def test_diffusion_checkpoint_rebuilds_an_ensemble_forecaster(prediff_ckpt):
    model, contract = load_prediff(str(prediff_ckpt))
    assert (contract["in_len"], contract["out_len"]) == (3, 2)
    context = torch.rand(2, 3, 16, 16, 1)
    gen = torch.Generator().manual_seed(0)
    ens = model.forecast(context, 3, num_inference_steps=4, generator=gen)
    assert ens.shape == (2, 3, 2, 16, 16, 1) and torch.isfinite(ens).all()
    assert not torch.allclose(ens[:, 0], ens[:, 1])  # members differ
    again = model.forecast(context, 3, num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ens, again)  # seeded ensembles are reproducible
    with pytest.raises(TypeError, match=r"PreDiff takes a torch.Tensor.*torch.from_numpy"):
        model.forecast(context.numpy(), 3)


def test_seeded_ensembles_follow_the_sample_not_the_batch(prediff_ckpt):
    model, _ = load_prediff(str(prediff_ckpt))
    model.sampling = model.sampling.__class__(num_inference_steps=3, num_samples=3)
    contexts = torch.rand(3, 3, 16, 16, 1)
    model.seed_ensembles(7)
    together = model(contexts)  # samples 0, 1, 2 in one batch
    model.seed_ensembles(7, first_sample=1)
    alone = model(contexts[1:2])  # sample 1 on its own
    model.begin_batch(2)
    last = model(contexts[2:])
    torch.testing.assert_close(alone[0], together[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(last[0], together[2], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(together[0, 0], together[0, 1])  # members still differ
    model.seed_ensembles(8)
    assert not torch.allclose(model(contexts[:1]), together[:1])  # another seed, another ensemble


def test_forward_is_the_forecaster_contract_with_default_sampling(prediff_ckpt):
    model, _ = load_prediff(str(prediff_ckpt))
    model.sampling = model.sampling.__class__(num_inference_steps=2, num_samples=2)
    assert model(torch.rand(1, 3, 16, 16, 1)).shape == (1, 2, 2, 16, 16, 1)
    with pytest.raises(ValueError, match="T_in=3"):
        model(torch.rand(1, 4, 16, 16, 1))


def test_zero_guidance_is_bit_identical_and_guidance_moves_the_statistic(prediff_ckpt):
    model, _ = load_prediff(str(prediff_ckpt))
    context = torch.rand(2, 3, 16, 16, 1)

    def latent_mean(z, t):  # a known statistic of the latent: its mean, (B, 1)
        return z.flatten(1).mean(dim=1, keepdim=True)

    def guided(scale):
        return lambda ctx: KnowledgeGuidance(latent_mean, torch.full((len(ctx), 1), 3.0), scale=scale)

    def run(guidance):
        gen = torch.Generator().manual_seed(1)
        return model.forecast(context, 2, num_inference_steps=20, eta=1.0, guidance=guidance, generator=gen)

    plain = run(None)
    assert torch.equal(plain, run(guided(0.0)))
    latents = [model.vae.encode(run(guided(s)).flatten(0, 1)).mode().mean().item() for s in (0.0, 20.0)]
    assert latents[1] > latents[0]


def test_decoded_guidance_moves_the_decoded_statistic(prediff_ckpt):
    """Guidance on F(D(ẑ₀)) (no U_φ): steering the mean intensity of the decoded frames up or down
    moves the members' decoded mean intensity that way; λ = 0 changes nothing."""
    from earthcast.models.prediff.knowledge import MeanIntensity
    from earthcast.models.prediff.knowledge.guided import decoded_statistic

    model, _ = load_prediff(str(prediff_ckpt))
    context = torch.rand(2, 3, 16, 16, 1)
    constraint = MeanIntensity()

    def guided(scale, target):
        def factory(ctx):  # (B·S, T_in, H, W, C)
            wanted = torch.full((len(ctx), 1), target)
            return KnowledgeGuidance(decoded_statistic(model, constraint, ctx), wanted, scale=scale)

        return factory

    def mean_intensity(guidance):
        gen = torch.Generator().manual_seed(2)
        ens = model.forecast(context, 2, num_inference_steps=10, eta=1.0, guidance=guidance, generator=gen)
        return ens, float(ens.mean())

    plain, plain_mean = mean_intensity(None)
    assert torch.equal(plain, mean_intensity(guided(0.0, 1.0))[0])
    assert mean_intensity(guided(200.0, 1.0))[1] > plain_mean > mean_intensity(guided(200.0, 0.0))[1]


def test_cli_predict_writes_members_mean_and_exceedance(prediff_ckpt, tmp_path, capsys):
    import json

    import numpy as np
    import xarray as xr

    from earthcast.cli import main

    contexts = tmp_path / "ctx.npy"
    np.save(contexts, np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32))
    out = tmp_path / "fc.nc"
    args = ["predict", "--ckpt", str(prediff_ckpt), "--input", str(contexts), "--output", str(out), "--quiet"]
    assert main([*args, "--num-samples", "3", "--steps", "2", "--thresholds", "0.5"]) == 0
    with xr.open_dataset(out) as ds:
        names = list(ds.data_vars)
        members = next(ds[n] for n in names if "member" in ds[n].dims)
        assert members.sizes["member"] == 3 and members.sizes["lead_time"] == 2
        prob = next(ds[n] for n in names if n.endswith("exceedance_probability"))
        assert float(prob.min()) >= 0 and float(prob.max()) <= 1
    assert main([*args, "--overwrite", "--eta", "2"]) == 2  # bad sampling options are named
    with xr.open_dataset(out) as ds:  # how the ensemble was sampled travels with it
        assert "--num-samples 3 --steps 2" in ds.attrs["history"]
        record = json.loads(ds.attrs["sampling"])
        assert (record["num_samples"], record["num_inference_steps"], record["seed"]) == (3, 2, 0)
    assert main([*args, "--overwrite", "--num-samples", "0"]) == 2
    assert "--num-samples must be >= 1" in capsys.readouterr().err
    for ignored in (["--guidance-scale", "0"], ["--sampler", "ddpm", "--eta", "0.5"]):
        assert main([*args, "--overwrite", *ignored]) == 2  # flags that would do nothing are refused
    # with the same --seed, sample 1 gets the same members alone (--index 1) as in a batch of 2
    single = tmp_path / "one.nc"
    one = ["predict", "--ckpt", str(prediff_ckpt), "--input", str(contexts), "--output", str(single)]
    assert main([*one, "--quiet", "--num-samples", "3", "--steps", "2", "--index", "1"]) == 0
    with xr.open_dataset(out) as both, xr.open_dataset(single) as alone:
        name = next(n for n in alone.data_vars if "member" in alone[n].dims)
        np.testing.assert_allclose(alone[name].values[0], both[name].values[1], rtol=1e-4, atol=1e-5)


def test_sampling_options_are_refused_for_deterministic_checkpoints(tmp_path, capsys):
    from earthcast.cli.predict import configure_sampling

    class Args:
        num_samples, sampler, steps, eta, seed = 4, None, None, None, 0
        alignment, anticipate, guide_by, guidance_scale = None, None, None, None

    from earthcast.cli import UserError

    with pytest.raises(UserError, match="--num-samples: only ensemble"):
        configure_sampling(torch.nn.Linear(1, 1), Args())
    Args.num_samples, Args.guidance_scale = None, 0.0
    with pytest.raises(UserError, match="--guidance-scale: only ensemble"):
        configure_sampling(torch.nn.Linear(1, 1), Args())


def test_cli_predict_with_knowledge_control(prediff_ckpt, tmp_path, capsys):
    import numpy as np
    import xarray as xr

    from earthcast.cli import main

    contexts = tmp_path / "ctx.npy"
    np.save(contexts, np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32))
    base = ["predict", "--ckpt", str(prediff_ckpt), "--input", str(contexts), "--quiet"]
    base += ["--num-samples", "2", "--steps", "3", "--eta", "1"]
    plain, steered = tmp_path / "plain.nc", tmp_path / "steered.nc"
    assert main([*base, "--output", str(plain)]) == 0
    guided = [*base, "--alignment", str(pytest.alignment_ckpt), "--guidance-scale", "500"]
    assert main([*guided, "--anticipate=+2sigma", "--output", str(steered)]) == 0
    with xr.open_dataset(plain) as a, xr.open_dataset(steered) as b:
        name = next(n for n in a.data_vars if "member" in a[n].dims)
        assert not np.allclose(a[name].values, b[name].values)  # the guidance changed the samples
    decoded = tmp_path / "decoded.nc"
    assert main([*guided, "--anticipate=+2sigma", "--guide-by", "decoded", "--output", str(decoded)]) == 0
    with xr.open_dataset(plain) as a, xr.open_dataset(decoded) as b:
        name = next(n for n in a.data_vars if "member" in a[n].dims)
        assert not np.allclose(a[name].values, b[name].values)
    # λ = 0 through the CLI is the unguided ensemble: loading the alignment draws no member noise
    zero = tmp_path / "zero.nc"
    zero_args = [*base, "--alignment", str(pytest.alignment_ckpt), "--guidance-scale", "0"]
    assert main([*zero_args, "--anticipate=+2sigma", "--output", str(zero)]) == 0
    with xr.open_dataset(plain) as a, xr.open_dataset(zero) as b:
        name = next(n for n in a.data_vars if "member" in a[n].dims)
        np.testing.assert_array_equal(a[name].values, b[name].values)
    # an alignment network from another VAE's latents, or from other data, is refused
    recorded = torch.load(pytest.alignment_ckpt, weights_only=False)
    assert recorded["hyper_parameters"]["vae_fingerprint"] and recorded["hyper_parameters"]["data_contract"]
    for key, value, message in (
        ("vae_fingerprint", "0123456789abcdef", "latents of another VAE"),
        ("data_contract", {**recorded["hyper_parameters"]["data_contract"], "height": 32}, "height 32 vs 16"),
    ):
        foreign = tmp_path / f"foreign_{key}.ckpt"
        torch.save({**recorded, "hyper_parameters": {**recorded["hyper_parameters"], key: value}}, foreign)
        args = [
            *base,
            "--alignment",
            str(foreign),
            "--guidance-scale",
            "5",
            "--output",
            str(tmp_path / "f.nc"),
        ]
        assert main(args) == 2
        assert message in capsys.readouterr().err
    # the other stages' checkpoints are named when given where the forecaster belongs
    vae_ckpt = prediff_ckpt.parents[2] / "vae" / "checkpoints" / "last.ckpt"
    for stage, wrong in (
        ("VAE (stage 1)", vae_ckpt),
        ("alignment (knowledge control)", pytest.alignment_ckpt),
    ):
        args = ["predict", "--ckpt", str(wrong), "--input", str(contexts), "--output", str(tmp_path / "w.nc")]
        assert main(args) == 2
        assert f"is the {stage} checkpoint of a PreDiff run" in capsys.readouterr().err
    assert main([*guided, "--anticipate=two", "--output", str(tmp_path / "x.nc")]) == 2
    assert main([*base, "--anticipate=+1sigma", "--output", str(tmp_path / "y.nc")]) == 2


def test_later_stages_refuse_a_vae_trained_on_other_frames(prediff_ckpt, tmp_path):
    vae_ckpt = prediff_ckpt.parents[2] / "vae" / "checkpoints" / "last.ckpt"
    recorded = torch.load(vae_ckpt, weights_only=False)
    trained_on = recorded["hyper_parameters"]["data_contract"]
    assert trained_on["dataset"] == "nbody" and trained_on["channels_out"] == 1
    foreign = tmp_path / "foreign_vae.ckpt"
    other = {**trained_on, "dataset": "moving_mnist", "scale": "other"}
    torch.save(
        {**recorded, "hyper_parameters": {**recorded["hyper_parameters"], "data_contract": other}}, foreign
    )
    data = {**DATA, "root": str(prediff_ckpt.parents[2] / "data")}
    stages = {
        "diffusion": ("prediff_tiny", {"vae_ckpt": str(foreign)}),
        "alignment": ("alignment_tiny", {"vae_ckpt": str(foreign), "constraint": "mean_intensity"}),
    }
    for task, (model, options) in stages.items():
        config = config_from_dict(
            {
                "name": task,
                "task": task,
                "model": model,
                "task_options": options,
                "data": data,
                "trainer": TRAINER,
            }
        )
        with pytest.raises(ValueError, match=r"trained on other frames.*dataset 'moving_mnist' vs 'nbody'"):
            fit(config, out_dir=tmp_path / task)
