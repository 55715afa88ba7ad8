"""`make demo` path, shortened: data → training → scores vs persistence → report files."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from earthcast.cli import main as cli_main


def test_demo_quick_run_writes_report_and_beats_persistence_on_mse(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli_main(["demo", "--out", str(out), "--quick"]) == 0
    assert "earthformer MSE" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    ef, pe = metrics["test"]["earthformer"], metrics["test"]["persistence"]
    assert metrics["earthformer_beats_persistence_on_mse"] and ef["mse"] < pe["mse"]
    for scores in (ef, pe):
        assert {"mse", "mae", "ssim", "csi_m"} <= set(scores)
    assert metrics["params"]["earthformer"] > 10_000 and metrics["params"]["persistence"] == 0
    report = (out / "report.md").read_text()
    assert "| persistence | 0 |" in report and "Earthformer (`earthformer_nbody_tiny`)" in report
    assert f"{ef['mse']:.2f}" in report
    png = Image.open(out / "forecast.png")
    assert png.width > 400 and png.height > 300
    gif = Image.open(out / "forecast.gif")
    assert gif.n_frames >= 5
    # the PreDiff part: an ensemble verified with probabilistic scores and plotted
    prediff = metrics["prediff"]
    assert 0 < prediff["crps_fair"] <= prediff["crps"] and prediff["spread"] > 0
    assert "## PreDiff" in report and Image.open(out / "prediff" / "ensemble.png").height > 300
    sampled = json.loads((out / "prediff" / "metrics.json").read_text())
    assert f"{sampled['num_samples']}-member DDIM-{sampled['ddim_steps']} " in report  # what really ran
    # re-running reuses the finished run instead of refusing or retraining
    assert cli_main(["demo", "--out", str(out), "--quick"]) == 0


@pytest.mark.parametrize(
    ("ratio", "phrase"), [(0.003, "far too confident"), (0.9, "roughly matches"), (2.4, "disagree more")]
)
def test_the_report_reads_the_spread_skill_ratio(ratio: float, phrase: str):
    from earthcast.demo_prediff import dispersion_note

    assert phrase in dispersion_note(ratio)
