"""`earthcast --help` and every sub-command's --help; CLI choices agree with the library."""

from __future__ import annotations

import pytest

COMMANDS = [
    ["predict"],
    ["score"],
    ["plot"],
    ["data"],
    ["data", "synth-sevir"],
    ["data", "synth-enso"],
    ["data", "nbody"],
    ["data", "moving-mnist"],
    ["data", "import-radar"],
]


def test_top_level_help_lists_the_commands(cli):
    code, out, _ = cli("--help")
    assert code == 0
    for name in ("predict", "score", "plot", "data"):
        assert name in out


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_sub_command_help(cli, command):
    code, out, _ = cli(*command, "--help")
    assert code == 0
    assert out.startswith("usage: earthcast " + " ".join(command))


def test_restated_choices_match_the_library():
    from earthcast.cli import data, score
    from earthcast.data.radar import RADAR_SOURCES, UNITS
    from earthcast.metrics import score as metrics_score

    assert score.KINDS == metrics_score.KINDS
    assert score.SCALES == metrics_score.SCALES
    assert score.MODES == metrics_score.MODES
    assert score.REDUCTIONS == metrics_score.REDUCTIONS
    assert set(data.RADAR_SOURCE_NAMES) == set(RADAR_SOURCES)
    assert set(data.RADAR_TRANSFORMS) == set(UNITS)
