"""The short-row softmax equals torch.softmax, values and gradients."""

from __future__ import annotations

import pytest
import torch

from earthcast.nn.attention import mask_value
from earthcast.nn.softmax import SHORT_ROW, softmax_last


@pytest.mark.parametrize("length", [1, 3, 10, 15, 16, 31])
def test_softmax_last_equals_torch_softmax_with_gradients(length):
    torch.manual_seed(length)
    x = (torch.randn(6, 4, 5, length, dtype=torch.float64) * 8).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = softmax_last(x), torch.softmax(x_ref, dim=-1)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-14)
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    (y_ref * weights).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-13)
    uses_explicit = type(y.grad_fn).__name__ == "_ShortRowSoftmaxBackward"
    assert uses_explicit == (length < SHORT_ROW)


def test_short_row_softmax_is_stable_for_huge_and_fully_masked_logits():
    x = torch.tensor([[1000.0, 999.0, -1000.0], [mask_value(torch.float32)] * 3])
    y = softmax_last(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, torch.softmax(x, dim=-1))


def test_short_row_softmax_passes_gradcheck():
    x = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(softmax_last, (x,))
