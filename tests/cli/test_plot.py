"""`earthcast plot`: forecast panels (PNG) + GIF, and CSI vs lead time from score JSONs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from earthcast.io.forecast import forecast_dataset, write_forecast
from tests.cli.helpers import TINY_CONTRACT


@pytest.fixture(scope="module")
def forecast_nc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deterministic SEVIR-like forecast (3 samples, 4 leads, 16×16) in [0, 1]."""
    values = np.random.default_rng(4).random((3, 4, 16, 16, 1), dtype=np.float32)
    ds = forecast_dataset(values, TINY_CONTRACT, attrs={"model": "tiny"})
    return write_forecast(ds, tmp_path_factory.mktemp("forecast") / "forecast.nc")


def _colourful(path: Path) -> int:
    """Number of distinct colours in an image: a blank or failed figure has very few."""
    return len(np.unique(np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3), axis=0))


def test_panels_and_gif(cli, forecast_nc: Path, contexts: Path, targets: Path, tmp_path: Path):
    png, gif = tmp_path / "fig.png", tmp_path / "anim.gif"
    code, out, err = cli(
        "plot", "--forecast", forecast_nc, "--target", targets, "--context", contexts,
        "--out", png, "--gif", gif, "--sample", 1,
    )  # fmt: skip
    assert code == 0, err
    assert "context, truth, forecast" in out and "VIL" in out
    with Image.open(png) as image:
        width, height = image.size
    assert width > 4 * 100 and height > 3 * 100  # 4 columns × 3 rows of panels + colour bar
    assert _colourful(png) > 20
    with Image.open(gif) as animation:
        assert animation.n_frames == 4 + 4  # context frames, then lead times
        assert animation.size[0] > animation.size[1]  # truth | forecast side by side
    assert not list(tmp_path.glob(".*tmp*"))


def test_forecast_alone_and_ensemble(cli, tmp_path: Path):
    members = np.random.default_rng(5).random((2, 3, 4, 16, 16, 1), dtype=np.float32)
    path = write_forecast(forecast_dataset(members, TINY_CONTRACT), tmp_path / "ens.nc")
    png, gif = tmp_path / "ens.png", tmp_path / "ens.gif"
    code, out, err = cli("plot", "--forecast", path, "--out", png, "--gif", gif, "--member", 2)
    assert code == 0, err
    assert "ensemble mean, member 2" in out
    with Image.open(gif) as animation:
        assert animation.n_frames == 4


def test_colour_range_covers_truth_and_members_and_member_needs_an_ensemble(
    cli, contexts: Path, targets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import earthcast.viz.colormaps as colormaps

    seen = {}
    original = colormaps.colors_for

    def spy(*args, **kwargs):
        seen["data"] = kwargs["data"]
        return original(*args, **kwargs)

    monkeypatch.setattr(colormaps, "colors_for", spy)
    members = np.random.default_rng(7).random((3, 2, 4, 16, 16, 1), dtype=np.float32) * 0.1  # dim forecast
    path = write_forecast(forecast_dataset(members, TINY_CONTRACT), tmp_path / "dim.nc")
    code, _, err = cli("plot", "--forecast", path, "--target", targets, "--out", tmp_path / "p.png")
    assert code == 0, err
    truth = np.load(targets)[0] * 255  # the plot draws VIL codes
    assert seen["data"].max() >= truth.max() - 1e-3  # the truth is not clipped by the forecast's range
    deterministic = write_forecast(forecast_dataset(members[:, 0], TINY_CONTRACT), tmp_path / "det.nc")
    code, _, err = cli("plot", "--forecast", deterministic, "--member", 1, "--out", tmp_path / "q.png")
    assert code == 2 and "this forecast is deterministic" in err


def test_rain_rate_units_choose_the_rain_map(cli, tmp_path: Path):
    contract = {**TINY_CONTRACT, "dataset": "radar", "variable": "precip", "units": "mm/h", "scale": "raw"}
    values = np.random.default_rng(6).gamma(0.5, 4.0, (1, 4, 16, 16, 1)).astype(np.float32)
    path = write_forecast(forecast_dataset(values, contract), tmp_path / "rain.nc")
    code, out, err = cli("plot", "--forecast", path, "--out", tmp_path / "rain.png")
    assert code == 0, err
    assert "rain rate (mm/h)" in out


def test_csi_vs_lead(cli, contexts: Path, targets: Path, tmp_path: Path):
    jsons = []
    for name, pred in (("model_a", contexts), ("model_b", targets)):
        path = tmp_path / f"{name}.json"
        args = ("score", "--pred", pred, "--target", targets, "--metrics", "sevir", "--mode", "1")
        assert cli(*args, "--out", path, "--quiet")[0] == 0
        jsons.append(path)
    png = tmp_path / "csi.png"
    code, out, err = cli("plot", "--scores", *jsons, "--out", png)
    assert code == 0, err
    assert "model_a, model_b" in out
    with Image.open(png) as image:
        assert image.size[0] >= 900  # three panels per row
    assert _colourful(png) > 10
    assert json.loads(jsons[0].read_text())["csi@16"]  # inputs untouched
