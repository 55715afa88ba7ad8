"""Model registry: ``create_model(name, **overrides)`` and ``list_models()``.

Every entry is a factory taking keyword overrides and returning an ``nn.Module`` that follows the
``Forecaster`` contract ``(B, T_in, H, W, C) → (B, T_out, H, W, C)``. Third-party packages add
models through the ``earthcast.models`` entry-point group.

Built-ins: the Earthformer presets (``earthformer_*``), ``persistence`` and the learned baselines
``<model>_<preset>`` of ``baselines/catalog.py`` (``unet_sevir``, ``predrnn_tiny``, …). A factory may carry a
``contract_fields`` mapping ``{config field: data-contract key}``; training and evaluation fill
those fields from the data unless they are overridden (persistence takes ``out_len`` and
``channels_out`` from the data it is scored on).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from earthcast._registry import Registry

MODELS: Registry[nn.Module] = Registry("model", "earthcast.models")


def _earthformer_factory(preset: str):
    def build(**overrides: Any) -> nn.Module:
        from earthcast.models.earthformer import Earthformer, get_preset

        return Earthformer(get_preset(preset), **overrides)

    build.__doc__ = f"Earthformer with the '{preset}' preset."
    return build


def persistence(**overrides: Any) -> nn.Module:
    """Last-frame persistence (no parameters); ``out_len`` / ``channels_out`` follow the data."""
    from earthcast.models.baselines.persistence import Persistence

    return Persistence(**overrides)


# Config fields that a trainer fills from the data contract unless they are overridden explicitly.
persistence.contract_fields = {"out_len": "out_len", "channels_out": "channels_out"}


def pysteps_extrapolation(**overrides: Any) -> nn.Module:
    """Lucas-Kanade + semi-Lagrangian extrapolation through pysteps (extra ``earthcast[pysteps]``)."""
    from earthcast.models.classical import LKExtrapolation
    from earthcast.models.classical._common import import_pysteps

    import_pysteps()  # fail here, with the install hint, rather than on the first forward
    return LKExtrapolation(**overrides)


pysteps_extrapolation.contract_fields = {"out_len": "out_len", "channels_out": "channels_out"}


def pysteps_steps(**overrides: Any) -> nn.Module:
    """STEPS ensemble ``(B, S, T, H, W, C)`` through pysteps (extra ``earthcast[pysteps]``)."""
    from earthcast.models.classical import STEPSNowcast
    from earthcast.models.classical._common import import_pysteps

    import_pysteps()
    return STEPSNowcast(**overrides)


pysteps_steps.contract_fields = {"out_len": "out_len", "channels_out": "channels_out"}


def _baseline_factory(key: str, preset: str):
    from earthcast.models.baselines._base import CONTRACT_FIELDS

    def build(**overrides: Any) -> nn.Module:
        from earthcast.models.baselines.catalog import build_baseline

        return build_baseline(key, preset, **overrides)

    build.__doc__ = f"{key} baseline, '{preset}' preset (shapes follow the data)."
    build.contract_fields = dict(CONTRACT_FIELDS)
    return build


def _register_builtins() -> None:
    from earthcast.models.baselines.catalog import BASELINES, PRESET_NAMES
    from earthcast.models.earthformer.presets import PRESETS

    for name in PRESETS:
        MODELS.add(name, _earthformer_factory(name))
    MODELS.add("persistence", persistence)
    MODELS.add("pysteps_extrapolation", pysteps_extrapolation)
    MODELS.add("pysteps_steps", pysteps_steps)
    for key in BASELINES:
        for preset in PRESET_NAMES:
            MODELS.add(f"{key}_{preset}", _baseline_factory(key, preset))


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build registered model ``name``; ``overrides`` replace fields of its config."""
    return MODELS.create(name, **overrides)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, optionally filtered by a substring."""
    names = MODELS.names()
    return [n for n in names if pattern is None or pattern in n]


_register_builtins()
