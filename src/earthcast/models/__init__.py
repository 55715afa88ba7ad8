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


#: pysteps' Lucas-Kanade declustering scale (20 pixels) was chosen for 1 km grids; on coarser
#: grids the same distance spans fewer pixels.
_LK_DECLUSTER_KM = 20.0


def _settings_from_data(overrides: dict[str, Any], steps: bool) -> dict[str, Any]:
    """Turn the contract's ``units`` / ``km_per_pixel`` (filled by the trainer) into config fields.

    For STEPS, ``units`` names the transform when no ``transform`` is given (what ``import_radar``
    writes: "dBR", "mm/h", "log(1 + mm/h)"; other units mean "not precipitation", which STEPS
    refuses, rather than the dBR default). ``km_per_pixel`` sets
    the Lucas-Kanade ``decl_scale`` to the 20 km of pysteps' default on 1 km grids, unless given,
    and STEPS' ``kmperpixel``.
    """
    from earthcast.models.classical.scaling import transform_for_units

    overrides = dict(overrides)
    units, km = overrides.pop("units", None), overrides.pop("km_per_pixel", None)
    transform = transform_for_units(units)
    if steps and transform is not None:
        overrides.setdefault("transform", transform)
    if km:
        overrides.setdefault("decl_scale", max(1, round(_LK_DECLUSTER_KM / float(km))))
        if steps:
            overrides.setdefault("kmperpixel", float(km))
    return overrides


def pysteps_extrapolation(**overrides: Any) -> nn.Module:
    """Lucas-Kanade + semi-Lagrangian extrapolation through pysteps (extra ``earthcast[pysteps]``).

    Values are advected as they are; from the data it takes the shapes and the pixel size
    (``km_per_pixel`` → ``decl_scale``).
    """
    from earthcast.models.classical import LKExtrapolation
    from earthcast.models.classical._common import import_pysteps

    import_pysteps()  # fail here, with the install hint, rather than on the first forward
    return LKExtrapolation(**_settings_from_data(overrides, steps=False))


pysteps_extrapolation.contract_fields = {
    "out_len": "out_len",
    "channels_out": "channels_out",
    "km_per_pixel": "km_per_pixel",
}


def pysteps_steps(**overrides: Any) -> nn.Module:
    """STEPS ensemble ``(B, S, T, H, W, C)`` through pysteps (extra ``earthcast[pysteps]``).

    From the data it takes the shapes and the rain encoding (``scaling.to_dbr`` needs the
    transform, dry threshold and floor, and the normalisation), the frame interval and pixel size.
    """
    from earthcast.models.classical import STEPSNowcast
    from earthcast.models.classical._common import import_pysteps

    import_pysteps()
    return STEPSNowcast(**_settings_from_data(overrides, steps=True))


pysteps_steps.contract_fields = {
    "out_len": "out_len",
    "channels_out": "channels_out",
    "transform": "transform",
    "units": "units",
    "precip_threshold": "precip_threshold",
    "zerovalue": "zerovalue",
    "scale_factor": "scale_factor",
    "scale_offset": "scale_offset",
    "timestep_minutes": "frame_interval_minutes",
    "km_per_pixel": "km_per_pixel",
}


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
