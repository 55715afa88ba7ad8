"""Forecasting and scoring in bounded memory: lazy NetCDF/Zarr rows, batch-by-batch inference and
a NetCDF written one batch at a time, equal to the all-in-memory path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

from earthcast import inference
from earthcast.cli.predict import predict_file
from earthcast.io.arrays import LazyRows, read_samples
from earthcast.io.forecast import forecast_dataset, write_forecast, write_forecast_batches
from tests.cli.helpers import TINY_CONTRACT

N, T, S = 7, 4, 16


class _RecordingRows:
    """An (N, T, H, W) array that records every row range read from it."""

    def __init__(self, values: np.ndarray):
        self.values, self.reads = values, []
        self.shape, self.dtype = values.shape, values.dtype

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, rows: slice) -> np.ndarray:
        self.reads.append((rows.start or 0, min(rows.stop, len(self.values))))
        return self.values[rows]


class _Shift(nn.Module):
    """Deterministic stand-in model: the last context frame plus one, T times."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, T, H, W, C) -> (b, T, H, W, C)
        return x[:, -1:].repeat(1, T, 1, 1, 1) + 1.0


class _Members(nn.Module):
    """Ensemble stand-in: three members offset around the last frame."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, T, H, W, C) -> (b, 3, T, H, W, C)
        offsets = torch.tensor([-0.2, 0.0, 0.2]).view(1, 3, 1, 1, 1, 1)
        return x[:, None, -1:].repeat(1, 3, T, 1, 1, 1) + offsets


def _contexts(n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, T, S, S), dtype=np.float32)


def _netcdf(path: Path, values: np.ndarray) -> Path:
    times = pd.date_range("2020-07-01 10:00", periods=len(values), freq="7min").values
    xr.Dataset(
        {"vil": (("event", "time", "y", "x"), values)},
        coords={"event_time": ("event", times), "y": ("y", np.arange(S) * 500.0)},
    ).to_netcdf(path)
    return path


# ---------------------------------------------------------------- lazy rows


def test_lazy_rows_index_like_numpy(tmp_path: Path):
    values = _contexts()
    with read_samples(_netcdf(tmp_path / "in.nc", values), start=2, count=4) as samples:
        rows = samples.values
        assert isinstance(rows, LazyRows)
        assert rows.shape == (4, T, S, S) and rows.ndim == 4 and len(rows) == 4
        assert rows.dtype == np.float32
        selected = values[2:6]
        for key in (slice(None), slice(1, 3), slice(-2, None), slice(3, 99), slice(2, 1)):
            np.testing.assert_array_equal(rows[key], selected[key])
        np.testing.assert_array_equal(rows[1], selected[1])
        np.testing.assert_array_equal(rows[-1], selected[-1])
        np.testing.assert_array_equal(np.asarray(rows), selected)
        with_channel = rows[..., None]
        assert with_channel.shape == (4, T, S, S, 1)
        np.testing.assert_array_equal(with_channel[1:3], selected[1:3, ..., None])
        with pytest.raises(TypeError, match="reads rows"):
            rows[::2]
        assert samples.dataset is not None
    assert samples.dataset is None  # closed by the context manager


def test_lazy_rows_read_only_what_is_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A NetCDF selection is not loaded when read_samples returns, only when rows are sliced."""
    path = _netcdf(tmp_path / "in.nc", _contexts())
    requested = []
    original = xr.DataArray.__getitem__

    def spy(self, key):
        requested.append(key)
        return original(self, key)

    with read_samples(path) as samples:
        monkeypatch.setattr(xr.DataArray, "__getitem__", spy)
        assert requested == []
        samples.values[3:5]
    assert requested == [slice(3, 5)]


# ---------------------------------------------------------------- batch-by-batch inference


def test_iter_forecasts_reads_one_batch_at_a_time(monkeypatch: pytest.MonkeyPatch):
    contexts = _RecordingRows(_contexts())
    row_bytes = T * S * S * 4
    monkeypatch.setattr(inference, "CHECK_CHUNK_BYTES", 3 * row_bytes)
    batches = list(inference.iter_forecasts(_Shift(), contexts, TINY_CONTRACT, batch_size=2))
    # the value check reads chunks of 3 rows, then forecasting reads batches of 2
    assert contexts.reads == [(0, 3), (3, 6), (6, 7), (0, 2), (2, 4), (4, 6), (6, 7)]
    assert [start for start, _ in batches] == [0, 2, 4, 6]
    forecast = np.concatenate([f for _, f in batches])
    np.testing.assert_allclose(forecast[..., 0], contexts.values[:, -1:].repeat(T, axis=1) + 1.0)


def test_bad_values_fail_before_any_forecast(monkeypatch: pytest.MonkeyPatch):
    values = _contexts()
    values[5, 2, 3, 4] = np.nan
    calls = []
    model = _Shift()
    model.register_forward_hook(lambda *_: calls.append(1))
    monkeypatch.setattr(inference, "CHECK_CHUNK_BYTES", 2 * T * S * S * 4)
    with pytest.raises(ValueError, match="NaN \\(first at sample 5, frame 2\\)"):
        next(inference.iter_forecasts(model, values, TINY_CONTRACT, batch_size=2))
    assert calls == []
    values[5, 2, 3, 4] = 300.0  # byte data in a [0, 1] model: the message names the samples
    with pytest.raises(ValueError, match="in samples 4…5"):
        next(inference.iter_forecasts(model, values, TINY_CONTRACT, batch_size=2))


def test_forecast_arrays_gathers_the_batches():
    values = _contexts()
    whole = inference.forecast_arrays(_Members(), values, TINY_CONTRACT, batch_size=3)
    assert whole.shape == (N, 3, T, S, S, 1)
    np.testing.assert_allclose(whole[:, 1, :, ..., 0], values[:, -1:].repeat(T, axis=1), atol=1e-7)


def test_forecast_arrays_takes_tensors_keeps_the_mode_and_names_layout_mistakes():
    values = _contexts()
    model = _Shift().train()
    from_tensor = inference.forecast_arrays(model, torch.from_numpy(values), TINY_CONTRACT)
    np.testing.assert_array_equal(from_tensor, inference.forecast_arrays(model, values, TINY_CONTRACT))
    assert model.training  # handed back in the mode it came in
    with pytest.raises(ValueError, match=r"array\[None\]"):  # one context without its sample axis
        inference.forecast_arrays(model, values[0], TINY_CONTRACT)
    with pytest.raises(ValueError, match=r"holds no contexts \(N = 0\)"):
        inference.forecast_arrays(model, values[:0], TINY_CONTRACT)


# ---------------------------------------------------------------- NetCDF written in batches


@pytest.mark.parametrize("ensemble", [False, True])
def test_batched_file_equals_the_in_memory_file(tmp_path: Path, ensemble: bool):
    rng = np.random.default_rng(3)
    shape = (N, 3, T, S, S, 1) if ensemble else (N, T, S, S, 1)
    forecast = rng.random(shape, dtype=np.float32)
    times = pd.date_range("2021-05-03 17:05", periods=N, freq="13min").values
    options = {
        "sample_index": np.arange(10, 10 + N),
        "reference_time": times,
        "thresholds": [16.0, 133.0] if ensemble else None,
        "attrs": {"title": "batched"},
    }
    whole = write_forecast(forecast_dataset(forecast, TINY_CONTRACT, **options), tmp_path / "whole.nc")
    batches = [(0, forecast[:3]), (3, forecast[3:4]), (4, forecast[4:])]  # uneven batches
    batched = write_forecast_batches(batches, tmp_path / "batched.nc", TINY_CONTRACT, **options)
    with xr.open_dataset(whole) as a, xr.open_dataset(batched) as b:
        xr.testing.assert_identical(a, b)
        assert b["vil"].encoding["chunksizes"][:2] == ((1, 1) if ensemble else (1, T))
        assert b.encoding["unlimited_dims"] == {"sample"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batched.nc", "whole.nc"]


def _zeros(n: int) -> np.ndarray:
    return np.zeros((n, T, S, S, 1), np.float32)


@pytest.mark.parametrize(
    ("batches", "message"),
    [
        (
            [(0, np.zeros((2, T, S, S, 1), np.float32)), (3, np.zeros((1, T, S, S, 1), np.float32))],
            "out of order",
        ),
        ([(0, np.zeros((2, T, S, S, 1), np.float32))], "hold 2 samples, but 3"),
    ],
)
def test_broken_batches_leave_no_file(tmp_path: Path, batches, message: str):
    out = tmp_path / "broken.nc"
    with pytest.raises(ValueError, match=message):
        write_forecast_batches(batches, out, TINY_CONTRACT, sample_index=np.arange(3))
    assert list(tmp_path.iterdir()) == []


def test_predict_from_netcdf_in_batches_equals_one_pass(tmp_path: Path):
    """predict_file on a NetCDF input, batch 2, gives the all-at-once forecast and keeps the times."""
    values = _contexts()
    path = _netcdf(tmp_path / "in.nc", values)
    out = predict_file(_Shift(), dict(TINY_CONTRACT), path, tmp_path / "out.nc", batch_size=2, start=1)
    expected = values[1:, -1:].repeat(T, axis=1) + 1.0
    with xr.open_dataset(out) as ds:
        np.testing.assert_allclose(ds["vil"].values, expected)
        assert ds["sample"].values.tolist() == list(range(1, N))
        assert ds["time"].values[0] == np.datetime64("2020-07-01T10:07")
        np.testing.assert_array_equal(ds["y"].values, np.arange(S) * 500.0)


def test_scores_of_lazy_rows_equal_scores_of_arrays(tmp_path: Path):
    from earthcast.metrics import score_arrays

    pred, target = _contexts(seed=4), _contexts(seed=5)
    expected = score_arrays(pred, target, "sevir", chunk_size=N)
    with (
        read_samples(_netcdf(tmp_path / "pred.nc", pred)) as p,
        read_samples(_netcdf(tmp_path / "target.nc", target)) as t,
    ):
        assert isinstance(p.values, LazyRows)
        streamed = score_arrays(p.values, t.values, "sevir", chunk_size=3)
    assert streamed.keys() == expected.keys()
    for key, value in expected.items():
        assert streamed[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
