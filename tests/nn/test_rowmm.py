"""oneDNN row matmuls compute what torch.mm computes (to float32 rounding), forward and backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from earthcast.nn import rowmm
from earthcast.nn.dropout import quantised
from earthcast.nn.mlp import PositionwiseFFN
from earthcast.nn.norm_linear import norm_linear
from tests.nn.test_fused_ops import fused_ffn

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch")


@pytest.fixture
def onednn():
    rowmm.set_cpu_matmul("onednn")
    yield
    rowmm.set_cpu_matmul(None)


def _close(a, b, scale=1.0):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize(("m", "k", "o"), [(300, 16, 48), (1000, 64, 256), (513, 96, 7)])
def test_row_products_equal_float64_matmuls(onednn, m, k, o):
    x, w, b, g = torch.randn(m, k), torch.randn(o, k), torch.randn(o), torch.randn(m, o)
    assert rowmm.uses_onednn(x)
    xd, wd, bd, gd = x.double(), w.double(), b.double(), g.double()
    _close(rowmm.linear_rows(x, w, b), (xd @ wd.t() + bd).float(), k**0.5)
    _close(rowmm.linear_rows(x, w, b, alpha=1.25), (1.25 * xd @ wd.t() + bd).float(), k**0.5)
    _close(rowmm.rows_times(g, w), (gd @ wd).float(), o**0.5)
    _close(rowmm.weight_grad(g, x), (gd.t() @ xd).float(), m**0.5)


def test_non_contiguous_rows_and_outputs_of_their_own(onednn):
    x = torch.randn(64, 600).t()  # (600, 64), column-major
    w = torch.randn(32, 64)
    y = rowmm.linear_rows(x, w)
    _close(y, (x.double() @ w.double().t()).float(), 8.0)
    assert y.is_contiguous() and not y._is_view()


def test_the_policy_chooses_the_kernel_and_rejects_unknown_names(monkeypatch):
    x = torch.randn(rowmm.MIN_ROWS, 8)
    rowmm.set_cpu_matmul("blas")
    try:
        assert not rowmm.uses_onednn(x)
        rowmm.set_cpu_matmul("onednn")
        assert rowmm.uses_onednn(x)
        assert not rowmm.uses_onednn(x[:-1])  # too few rows: torch.mm
        assert rowmm.uses_onednn(x.view(2, -1, 8))  # rows of the last axis, any leading shape
        assert not rowmm.uses_onednn(x.double())  # oneDNN path is float32 only
        with pytest.raises(ValueError, match="unknown CPU matmul policy"):
            rowmm.set_cpu_matmul("fastest")
        rowmm.set_cpu_matmul(None)
        monkeypatch.setenv(rowmm.ENV_VAR, "blas")
        assert rowmm.cpu_matmul_policy() == "blas" and not rowmm.uses_onednn(x)
        monkeypatch.setenv(rowmm.ENV_VAR, "gpu")
        with pytest.raises(ValueError, match="EARTHCAST_CPU_MATMUL='gpu'"):
            rowmm.uses_onednn(x)
        monkeypatch.setenv(rowmm.ENV_VAR, "auto")
        assert rowmm.uses_onednn(x) in (True, False)
    finally:
        rowmm.set_cpu_matmul(None)


def test_linear_layer_matches_nn_linear_in_value_and_gradient(onednn):
    ours, plain = rowmm.Linear(24, 40), torch.nn.Linear(24, 40)
    plain.load_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == ["weight", "bias"]
    x = torch.randn(4, 100, 24)
    weights = torch.randn(4, 100, 40)
    grads = []
    for layer in (ours, plain):
        xi = x.clone().requires_grad_()
        (layer(xi) * weights).sum().backward()
        grads.append((xi.grad, layer.weight.grad, layer.bias.grad))
    for a, b in zip(*grads):
        _close(a, b, 20.0)


def test_linear_output_may_be_changed_in_place(onednn):
    """Dropout and residual adds write into Linear outputs: the oneDNN output must allow it."""
    layer = rowmm.Linear(16, 16)
    x = torch.randn(2, 300, 16, requires_grad=True)
    y = layer(x)
    y.mul_(2.0)
    y.sum().backward()
    _close(x.grad, 2.0 * layer.weight.sum(0).expand_as(x), 10.0)


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_fused_ffn_on_onednn_matches_the_blas_kernel(p):
    ffn = PositionwiseFFN(32, 128, dropout=p, activation="gelu")
    x = torch.randn(600, 32)
    results = []
    for policy in ("blas", "onednn"):
        rowmm.set_cpu_matmul(policy)
        try:
            ffn.zero_grad()
            xi = x.clone().requires_grad_()
            y = fused_ffn(ffn, xi, p, 77)
            (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
            results.append([y.detach(), xi.grad] + [q.grad.clone() for q in ffn.parameters()])
        finally:
            rowmm.set_cpu_matmul(None)
    assert quantised(p)[1] >= 1.0
    for a, b in zip(*results):
        _close(a, b, 30.0)


def test_norm_linear_on_onednn_matches_plain_composition(onednn):
    norm, lin = torch.nn.LayerNorm(32), torch.nn.Linear(32, 96)
    x = torch.randn(700, 32)
    outs = []
    for fused in (True, False):
        norm.zero_grad()
        lin.zero_grad()
        xi = x.clone().requires_grad_()
        y = norm_linear(xi, norm, lin) if fused else lin(norm(xi))
        (y * torch.cos(torch.arange(y.numel(), dtype=y.dtype)).view_as(y)).sum().backward()
        outs.append([y.detach(), xi.grad, norm.weight.grad, lin.weight.grad, lin.bias.grad])
    for a, b in zip(*outs):
        _close(a, b, 30.0)


def test_tiny_earthformer_trains_the_same_on_either_kernel(monkeypatch):
    from earthcast.models.earthformer import Earthformer, get_preset

    torch.manual_seed(3)
    cfg = get_preset("earthformer_nbody_tiny")
    model = Earthformer(cfg).train()
    x = torch.randn(1, *cfg.input_shape)
    target = torch.randn(1, *cfg.target_shape)
    runs = []
    calls, conv_rows = [], rowmm._conv_rows
    monkeypatch.setattr(rowmm, "_conv_rows", lambda *a: calls.append(1) or conv_rows(*a))
    for policy in ("blas", "onednn"):
        rowmm.set_cpu_matmul(policy)
        try:
            model.zero_grad()
            torch.manual_seed(11)  # same dropout masks on both runs
            loss = F.mse_loss(model(x), target)
            loss.backward()
            runs.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
        finally:
            rowmm.set_cpu_matmul(None)
    assert len(calls) > 10  # the oneDNN run really used it
    (loss_a, grads_a), (loss_b, grads_b) = runs
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-4, atol=1e-6)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-4 * float(a.abs().max()) + 1e-7)


def test_auto_calibration_leaves_the_global_random_stream_alone(monkeypatch):
    """``auto`` measures both kernels on first use, mid-training: drawing its test matrices from
    torch's global generator would change every later dropout mask (and break exact resume)."""
    monkeypatch.setattr(rowmm, "_auto_choice", None)
    rowmm.set_cpu_matmul("auto")
    try:
        torch.manual_seed(5)
        expected = torch.rand(3)
        torch.manual_seed(5)
        rowmm.uses_onednn(torch.zeros(rowmm.MIN_ROWS, 4))
        assert rowmm._auto_choice is not None
        assert torch.equal(torch.rand(3), expected)
    finally:
        rowmm.set_cpu_matmul(None)


def test_auto_calibration_is_not_counted_as_the_callers_work(monkeypatch):
    """The first ``auto`` call times two 4096×256×256 products; inside a FLOP counter (the
    benchmark's GFLOPs column) those are not the model's work."""
    from torch.utils.flop_counter import FlopCounterMode

    monkeypatch.setattr(rowmm, "_auto_choice", None)
    rowmm.set_cpu_matmul("auto")
    try:
        x, w = torch.randn(rowmm.MIN_ROWS, 8), torch.randn(4, 8)
        with FlopCounterMode(display=False) as counter:
            rowmm.linear_rows(x, w)
        assert rowmm._auto_choice is not None  # the probe ran inside the counter
        assert counter.get_total_flops() == 2 * rowmm.MIN_ROWS * 8 * 4
    finally:
        rowmm.set_cpu_matmul(None)
