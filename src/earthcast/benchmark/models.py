"""Which network a benchmark entry means, how it is shaped to the data, and what it costs.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel.

Short names resolve against the registry with the benchmark's size (``tiny``, ``small``,
``paper``) and data set, first match wins:

* a registered name is taken as is (``predrnn_sevir``, ``persistence``, ``pysteps_extrapolation``);
* ``tiny`` / ``small``: ``<name>_<size>`` then ``<name>_<data>_<size>`` (``unet_small``,
  ``earthformer_small``, ``earthformer_tiny``);
* ``paper``: ``<name>_<data>`` then ``<name>_<table>``, the table being ``enso`` for ENSO data and
  ``sevir`` otherwise (``earthformer_nbody``, ``convlstm_sevir``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

Size = Literal["tiny", "small", "paper"]
SIZES: tuple[str, ...] = ("tiny", "small", "paper")


def resolve_model(name: str, size: Size, data: str) -> str:
    """Registry name of benchmark entry ``name`` (ValueError listing what was tried)."""
    from earthcast.models import MODELS

    if name in MODELS:
        return name
    if size == "paper":
        table = "enso" if data == "enso" else "sevir"
        candidates = [f"{name}_{data}", f"{name}_{table}"]
    else:
        candidates = [f"{name}_{size}", f"{name}_{data}_{size}"]
    for candidate in candidates:
        if candidate in MODELS:
            return candidate
    raise ValueError(
        f"no registered model for '{name}' at size '{size}' (tried {', '.join(candidates)}); "
        "see `earthcast models` for the names"
    )


def shape_overrides(model_name: str, contract: dict[str, Any]) -> dict[str, Any]:
    """Overrides that fit a network with ``input_shape``/``target_shape`` fields (Earthformer) to the data.

    Networks with registry ``contract_fields`` (baselines, persistence) are shaped by the training
    system itself; this covers the configs that name whole shapes.
    """
    from earthcast.models import create_model

    with torch.device("meta"):  # only the config is needed
        config = getattr(create_model(model_name), "config", None)
    fields = set(config.to_dict()) if hasattr(config, "to_dict") else set()
    overrides: dict[str, Any] = {}
    if "input_shape" in fields:
        overrides["input_shape"] = [
            contract["in_len"],
            contract["height"],
            contract["width"],
            contract["channels_in"],
        ]
    if "target_shape" in fields:
        overrides["target_shape"] = [
            contract["out_len"],
            contract["height"],
            contract["width"],
            contract["channels_out"],
        ]
    return overrides


def build_network(model_name: str, overrides: dict[str, Any], contract: dict[str, Any]) -> nn.Module:
    """The network exactly as the training system builds it for these data."""
    from earthcast.models import create_model
    from earthcast.training.forecast_module import contract_defaults

    return create_model(model_name, **{**contract_defaults(model_name, contract), **overrides})


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def gflops_per_sample(net: nn.Module, sample: Tensor) -> float | None:
    """Forward GFLOPs for one sequence ``(1, T_in, H, W, C_in)`` (``torch.utils.flop_counter``).

    ``None`` for networks whose work happens outside PyTorch (pysteps forecasters).
    """
    from torch.utils.flop_counter import FlopCounterMode

    if type(net).__module__.startswith("earthcast.models.classical"):
        return None
    counter = FlopCounterMode(display=False)
    was_training = net.training
    net.eval()
    # with autograd on: the flop counter's module tracking asserts on custom autograd functions
    # (Earthformer's fused FFN) under no_grad; nothing is backpropagated
    with torch.enable_grad(), counter:
        net(sample)
    net.train(was_training)
    return counter.get_total_flops() / 1e9
