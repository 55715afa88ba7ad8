"""Cached cuboid index/mask tensors built under ``torch.inference_mode`` must not break training."""

from __future__ import annotations

import torch

import earthcast


def test_training_after_inference_mode_forward():
    model = earthcast.create_model("earthformer_sevir_tiny", padding_type="ignore")  # masks + bias indices
    x = torch.rand(1, *model.config.input_shape)
    with torch.inference_mode():
        model.eval()(x)
    model.train()(x).square().mean().backward()
    dead = model.unused_parameter_names()
    assert all(p.grad is not None for n, p in model.named_parameters() if n not in dead)
