"""The CUDA paths against the CPU: every tiny Earthformer preset, a feature-rich network, cuboid
attention's SDPA kernels, dropout, bf16 autocast, torch.compile (Inductor) and a Lightning fit.

Marked ``gpu``: deselected where no CUDA device is present (``tests/conftest.py``); run them on a
GPU machine with ``pytest -m gpu tests/gpu``. Float64 comparisons are strict (both sides run the
same mathematics; no TF32, no activation kink flips), float32 ones loose.
"""

from __future__ import annotations

import copy

import pytest
import torch

import earthcast
from earthcast.models import list_models
from earthcast.nn.cuboid.self_attention import CuboidSelfAttention
from earthcast.nn.dropout import dropout
from tests.conftest import GPU_TEST_DEVICE
from tests.models.test_compile import FEATURE_RICH, NO_DROPOUT

pytestmark = pytest.mark.gpu
DEVICE = torch.device(GPU_TEST_DEVICE or "cuda")
TINY = sorted(n for n in list_models() if n.startswith("earthformer") and n.endswith("_tiny"))


@pytest.fixture(autouse=True)
def _no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _step(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor):
    """Output and ``{name: grad}`` of one MSE step."""
    model.zero_grad(set_to_none=True)
    out = model(x)
    torch.nn.functional.mse_loss(out, target).backward()
    grads = {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach().cpu(), grads


def _pair(name: str, dtype: torch.dtype, **overrides):
    """The same network on the CPU and on the device, with inputs and targets for batch 2."""
    cpu = earthcast.create_model(name, **NO_DROPOUT, **overrides).to(dtype).train()
    device = copy.deepcopy(cpu).to(DEVICE)
    x = torch.randn(2, *cpu.config.input_shape, dtype=dtype)
    target = torch.randn(2, *cpu.config.target_shape, dtype=dtype)
    return cpu, device, x, target


@pytest.mark.parametrize(
    ("name", "overrides"),
    [(n, {}) for n in TINY] + [("earthformer_tiny", FEATURE_RICH)],
    ids=[*TINY, "feature_rich"],
)
def test_device_equals_cpu_in_float64(name: str, overrides: dict):
    cpu, device, x, target = _pair(name, torch.float64, **overrides)
    out_cpu, grads_cpu = _step(cpu, x, target)
    out_dev, grads_dev = _step(device, x.to(DEVICE), target.to(DEVICE))
    torch.testing.assert_close(out_dev, out_cpu, rtol=1e-9, atol=1e-11)
    read = {n for n, _ in cpu.named_parameters()} - cpu.unused_parameter_names()
    assert grads_dev.keys() == grads_cpu.keys() == read
    for key, grad in grads_cpu.items():
        torch.testing.assert_close(grads_dev[key], grad, rtol=1e-7, atol=1e-10, msg=key)


@pytest.mark.parametrize("name", ["earthformer_sevir_tiny", "earthformer_enso_tiny"])
def test_device_equals_cpu_in_float32(name: str):
    """The float32 kernels (SDPA, cuDNN) against the CPU's fused ones, outputs and gradients."""
    cpu, device, x, target = _pair(name, torch.float32)
    out_cpu, grads_cpu = _step(cpu, x, target)
    out_dev, grads_dev = _step(device, x.to(DEVICE), target.to(DEVICE))
    torch.testing.assert_close(out_dev, out_cpu, rtol=1e-3, atol=1e-4)
    scale = max(g.abs().max() for g in grads_cpu.values())
    worst = max((grads_dev[k] - g).abs().max() for k, g in grads_cpu.items())
    assert worst <= 1e-2 * scale, f"largest gradient difference {worst:.3g} of {scale:.3g}"


@pytest.mark.parametrize("padding_type", ["ignore", "zeros"])
def test_sdpa_equals_eager_cuboid_attention(padding_type: str):
    """Shifted, masked cuboids with global vectors: the SDPA kernel equals the explicit one."""
    torch.manual_seed(0)
    layer = CuboidSelfAttention(
        32, 4, cuboid_size=(2, 4, 4), shift_size=(1, 2, 2), padding_type=padding_type, num_global_vectors=3
    )
    layer = layer.to(DEVICE, torch.float64)
    x = torch.randn(2, 5, 10, 9, 32, device=DEVICE, dtype=torch.float64)
    g = torch.randn(2, 3, 32, device=DEVICE, dtype=torch.float64)
    outputs = {}
    for backend in ("sdpa", "eager"):
        layer.backend = backend
        outputs[backend] = layer(x, g)
    for fast, plain in zip(outputs["sdpa"], outputs["eager"]):
        assert torch.isfinite(fast).all()
        torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-12)


def test_dropout_on_the_device_is_unbiased_and_fresh():
    x = torch.ones(4_000_000, device=DEVICE)
    first, second = dropout(x, 0.3), dropout(x, 0.3)
    assert first.device.type == DEVICE.type
    assert abs(float((first == 0).float().mean()) - 0.3) < 0.002
    assert abs(float(first.mean()) - 1.0) < 0.005  # kept values are scaled by 1 / 0.7
    assert not torch.equal(first, second)


def test_training_with_dropout_gives_every_parameter_a_gradient():
    model = earthcast.create_model("earthformer_enso_tiny").to(DEVICE).train()
    x = torch.randn(2, *model.config.input_shape, device=DEVICE)
    out_a, out_b = model(x), model(x)
    assert not torch.equal(out_a, out_b)  # dropout is on
    out_a.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ["earthformer_sevirlr_tiny", "earthformer_nbody_tiny"])
def test_bf16_autocast_is_close_to_float32(name: str):
    model = earthcast.create_model(name, **NO_DROPOUT).to(DEVICE).train()
    x = torch.randn(2, *model.config.input_shape, device=DEVICE)
    reference = model(x).detach()
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        out = model(x)
    out.float().square().mean().backward()
    relative = float((out.float() - reference).norm() / reference.norm())
    assert relative < 0.1, f"bf16 differs from fp32 by {relative:.3f} (relative norm)"
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_inductor_compiled_model_equals_eager():
    from earthcast.training.compile import compile_in_place

    torch.manual_seed(0)
    model = earthcast.create_model("earthformer_enso_tiny", **NO_DROPOUT).to(DEVICE).train()
    x = torch.randn(2, *model.config.input_shape, device=DEVICE)
    target = torch.randn(2, *model.config.target_shape, device=DEVICE)
    out_eager, grads_eager = _step(model, x, target)
    torch._dynamo.reset()
    compile_in_place(model, "default", fullgraph=True)
    out_compiled, grads_compiled = _step(model, x, target)
    torch.testing.assert_close(out_compiled, out_eager, rtol=1e-4, atol=1e-5)
    for key, grad in grads_eager.items():
        torch.testing.assert_close(grads_compiled[key], grad, rtol=1e-3, atol=1e-5, msg=key)


def _fit_config(root, **trainer):
    from earthcast.training.config import config_from_dict

    return config_from_dict(
        {
            "name": "gpu_fit",
            "model": "earthformer_nbody_tiny",
            "data": {
                "name": "nbody",
                "in_len": 4,
                "out_len": 4,
                "batch_size": 2,
                "num_workers": 0,
                "root": str(root / "data"),
                "synthesize": True,
                "synthetic": {"size": 16, "seq_len": 8, "n_train": 8, "n_val": 4, "n_test": 2},
            },
            "trainer": {
                "max_epochs": 1,
                "max_steps": 4,  # one epoch of 8 sequences: validation runs once
                "accelerator": "gpu" if DEVICE.type == "cuda" else "cpu",
                "devices": 1,
                "progress_bar": "none",
                "num_sanity_val_steps": 0,
                "early_stopping_patience": None,
                **trainer,
            },
        }
    )


def _check_fitted(result) -> None:
    from earthcast.training.checkpoint import load_forecaster

    assert result.last_ckpt is not None and torch.isfinite(torch.tensor(result.metrics["val/loss"]))
    model, _ = load_forecaster(result.last_ckpt)  # on the CPU
    with torch.no_grad():
        forecast = model(torch.rand(1, 4, 16, 16, 1))
    assert forecast.shape == (1, 4, 16, 16, 1) and torch.isfinite(forecast).all()


def test_bf16_fit_on_the_device_writes_a_checkpoint_the_cpu_can_use(tmp_path):
    from earthcast.training.runner import fit

    _check_fitted(fit(_fit_config(tmp_path, precision="bf16-mixed"), out_dir=tmp_path / "run"))


def test_fsdp_fit_writes_an_ordinary_checkpoint(tmp_path):
    """FSDP (one GPU; Lightning allows FSDP on GPUs only): the checkpoint loads like any other."""
    from earthcast.training.runner import fit

    if DEVICE.type != "cuda":
        pytest.skip("Lightning runs FSDP on GPUs only")
    _check_fitted(fit(_fit_config(tmp_path, strategy="fsdp"), out_dir=tmp_path / "run"))


def test_exported_program_runs_on_the_device(tmp_path):
    """A program exported on the CPU (`earthcast export`) loads onto the device and forecasts as the
    network does there."""
    from earthcast.export import export_forecaster, load_exported

    model = earthcast.create_model("earthformer_sevirlr_tiny").eval()
    t_in, h, w, c_in = model.config.input_shape
    t_out, _, _, c_out = model.config.target_shape
    contract = dict(
        zip(
            ("in_len", "out_len", "height", "width", "channels_in", "channels_out"),
            (t_in, t_out, h, w, c_in, c_out),
        )
    )
    export_forecaster(model, contract, tmp_path / "m.pt2", max_batch=8)
    program, loaded = load_exported(tmp_path / "m.pt2", DEVICE)
    assert loaded == contract
    x = torch.rand(3, t_in, h, w, c_in)
    with torch.no_grad():
        expected = model.to(DEVICE)(x.to(DEVICE)).cpu()
        got = program(x.to(DEVICE)).cpu()
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4)
