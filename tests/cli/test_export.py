"""`earthcast export`: a torch.export program that equals the trained network at any batch size,
carries the data contract, needs no earthcast to run, and leaves the network's caches real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import earthcast
from earthcast.export import export_forecaster, read_exported_contract
from earthcast.nn.cuboid import masks
from earthcast.training.checkpoint import load_forecaster
from tests.cli.helpers import TINY_CONTRACT, TINY_MODEL


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_ckpt: Path) -> Path:
    out = tmp_path_factory.mktemp("export") / "tiny.pt2"
    from earthcast.cli import main

    assert main(["export", "--ckpt", str(tiny_ckpt), "--out", str(out), "--max-batch", "64"]) == 0
    return out


def test_program_equals_the_network_at_any_batch(exported: Path, tiny_ckpt: Path):
    program = torch.export.load(exported).module()
    model, contract = load_forecaster(tiny_ckpt)
    for batch in (1, 5, 64):
        x = torch.rand(batch, 4, 16, 16, 1, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            torch.testing.assert_close(program(x), model(x), rtol=1e-4, atol=1e-5)
    assert read_exported_contract(exported) == json.loads(json.dumps(contract))
    assert not list(exported.parent.glob(".*tmp"))


def test_predict_runs_an_exported_program(
    cli, exported: Path, tiny_ckpt: Path, contexts: Path, tmp_path: Path
):
    """`earthcast predict --ckpt model.pt2` gives the checkpoint's forecast, with its contract and
    provenance from inside the file."""
    from_program, from_ckpt = tmp_path / "program.nc", tmp_path / "ckpt.nc"
    for source, out in ((exported, from_program), (tiny_ckpt, from_ckpt)):
        code, _, err = cli("predict", "--ckpt", source, "--input", contexts, "--output", out, "--quiet")
        assert code == 0, err
    with xr.open_dataset(from_program) as a, xr.open_dataset(from_ckpt) as b:
        np.testing.assert_allclose(a["vil"].values, b["vil"].values, rtol=1e-4, atol=1e-5)
        assert a["vil"].attrs["units"] == b["vil"].attrs["units"] == "1"
        assert a.attrs["model"] == f"{TINY_MODEL} (exported program)"
        assert a.attrs["model_trained_with"] == "earthcast 0.1.0"


def test_program_runs_without_earthcast(exported: Path, tmp_path: Path):
    """A fresh interpreter that cannot import earthcast loads and runs the file."""
    script = (
        "import sys; sys.modules['earthcast'] = None\n"  # any import of earthcast now fails
        "import torch\n"
        f"program = torch.export.load({str(exported)!r}).module()\n"
        "print(tuple(program(torch.zeros(2, 4, 16, 16, 1)).shape))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("(2, 4, 16, 16, 1)")


def test_export_leaves_the_eager_network_untouched(tmp_path: Path):
    """torch.export runs the model's Python on fake tensors: nothing it builds may be cached (the
    cuboid masks and position indices once were, and the next eager call returned a FakeTensor)."""
    model = earthcast.create_model("earthformer_enso_tiny").eval()
    x = torch.rand(2, *model.config.input_shape)
    _clear_tensor_caches()
    export_forecaster(model, _contract(model), tmp_path / "m.pt2", max_batch=8)  # on empty caches
    with torch.no_grad():
        after = model(x)
    _clear_tensor_caches()
    with torch.no_grad():
        fresh = model(x)
    assert type(after) is torch.Tensor
    torch.testing.assert_close(after, fresh, rtol=0, atol=0)


def _clear_tensor_caches() -> None:
    from earthcast.nn import folded_upsample, resample
    from earthcast.nn.cuboid import relative_bias

    for cached in (
        masks.self_attention_mask,
        masks.cross_attention_mask,
        relative_bias.relative_index,
        folded_upsample._phase_taps_cpu,
        resample._block_taps_cpu,
    ):
        cached.cache_clear()


def test_models_that_leave_pytorch_are_refused(tmp_path: Path):
    class _ThroughNumpy(nn.Module):
        def forward(self, x):
            return torch.from_numpy(np.asarray(x.numpy()))[:, :4]

    with pytest.raises(ValueError, match=r"torch\.export cannot capture"):
        export_forecaster(_ThroughNumpy(), TINY_CONTRACT, tmp_path / "n.pt2")
    assert not list(tmp_path.iterdir())


def test_bad_requests_are_named(cli, tiny_ckpt: Path, exported: Path, tmp_path: Path):
    code, _, err = cli("export", "--ckpt", tiny_ckpt, "--out", exported)
    assert code == 2 and "pass --overwrite" in err
    code, _, err = cli("export", "--ckpt", tiny_ckpt, "--out", tmp_path / "model.onnx")
    assert code == 2 and "must end in .pt2" in err
    fake = tmp_path / "ldm.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"task": "diffusion"}}, fake)
    code, _, err = cli("export", "--ckpt", fake, "--out", tmp_path / "ldm.pt2")
    assert code == 2 and "earthcast predict" in err
    broken = tmp_path / "broken.pt2"
    broken.write_bytes(exported.read_bytes()[:1000])
    code, _, err = cli("predict", "--ckpt", broken, "--input", fake, "--output", tmp_path / "o.nc")
    assert code == 2 and "Re-create it with `earthcast export`" in err


def test_outputs_that_cannot_be_written_are_refused_before_exporting(
    cli, tiny_ckpt: Path, tmp_path: Path, monkeypatch
):
    """A folder at --out gave "pass --overwrite", and with --overwrite an IsADirectoryError
    traceback after the whole export; an unwritable folder a PermissionError on a hidden name."""
    folder = tmp_path / "dir.pt2"
    folder.mkdir()
    for extra in ((), ("--overwrite",)):
        code, _, err = cli("export", "--ckpt", tiny_ckpt, "--out", folder, *extra)
        assert code == 2 and "is a folder" in err and "--overwrite" not in err and "Traceback" not in err
    assert folder.is_dir() and not any(folder.iterdir())
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)  # tests run as root
    code, _, err = cli("export", "--ckpt", tiny_ckpt, "--out", tmp_path / "m.pt2")
    assert code == 2 and f"cannot write in '{tmp_path}'" in err and "Traceback" not in err, err


def test_exported_forecaster_names_bad_input(exported: Path):
    from earthcast.export import load_exported

    forecaster, _ = load_exported(exported)
    assert forecaster.metadata["max_batch"] == 64
    assert forecaster(torch.rand(64, 4, 16, 16, 1)).shape == (64, 4, 16, 16, 1)
    with pytest.raises(ValueError, match=r"batches of 1 … 64 .*got 65.*--batch-size 64"):
        forecaster(torch.rand(65, 4, 16, 16, 1))
    with pytest.raises(
        ValueError, match=r"contexts \(B, T_in, H, W, C_in\) = \(B, 4, 16, 16, 1\), got \(2, 4, 8, 8, 1\)"
    ):
        forecaster(torch.rand(2, 4, 8, 8, 1))
    with pytest.raises(TypeError, match=r"torch\.from_numpy"):
        forecaster(np.zeros((1, 4, 16, 16, 1), np.float32))


def _contract(model) -> dict:
    t_in, h, w, c_in = model.config.input_shape
    t_out, _, _, c_out = model.config.target_shape
    keys = ("in_len", "out_len", "height", "width", "channels_in", "channels_out")
    return dict(zip(keys, (t_in, t_out, h, w, c_in, c_out)))
