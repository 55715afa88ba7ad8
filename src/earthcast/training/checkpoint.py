"""Checkpoints that carry their contract: atomic writing, resuming and loading a forecaster.

An earthcast checkpoint is a Lightning checkpoint written by ``earthcast fit``. Besides the usual
``state_dict`` / optimizer / loop states, its ``hyper_parameters`` hold everything needed to use
the network without the training code:

* ``model_name``, ``model_overrides``: rebuild the network with ``create_model(name, **overrides)``;
* ``model_config``: the resolved config of the network (a dict, for provenance);
* ``data_contract``: what the network assumes about its inputs (``CONTRACT_KEYS``, below);
* ``earthcast_version`` and ``experiment`` (the full experiment config as a dict).

Network weights live under ``net.`` in the ``state_dict``; the exponential moving average of
the weights, when training kept one, under ``ema.shadow.``.

Data contract keys (``CONTRACT_KEYS``; a dataset may add more, e.g. ``scale_factor``):

======================  ===================================================================
``dataset``             registered dataset name the model was trained on
``in_len``/``out_len``  context and forecast frames
``height``/``width``    frame size in pixels
``channels_in``/``_out`` input / output channels
``scale``               value scaling of the data (``"01"``: x/255, ``"255"``/``"raw"``: none,
                        ``"minmax"``/``"standard"``: see ``scale_factor``/``scale_offset``)
``units``, ``variable`` physical units and name of the (de-scaled) variable
``frame_interval_minutes`` minutes between frames (``None`` when not a clock time, e.g. months)
``thresholds``          event thresholds used for categorical scores, in ``units`` (may be [])
======================  ===================================================================
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from earthcast.data.specs import CONTRACT_KEYS
from earthcast.utils.io import atomic_path

NET_PREFIX = "net."
EMA_PREFIX = "ema.shadow."
LAST_NAME = "last.ckpt"
CHECKPOINT_DIR = "checkpoints"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file beside the target, then rename: a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)  # remote file systems: Lightning's way
            return
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint file safely (``weights_only``), turning every failure into a clear ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"checkpoint '{path}' does not exist" + (" (it is a directory)" if path.is_dir() else "")
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        AttributeError,
        KeyError,  # text that happens to start like a pickle opcode, e.g. b"h…"
        IndexError,
    ) as err:
        raise ValueError(
            f"'{path}' is not a readable PyTorch checkpoint (corrupt, truncated, or not written by "
            f"torch.save): {_load_error_reason(err)}"
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"'{path}' is not an earthcast checkpoint: it holds no 'state_dict'")
    return checkpoint


def _prediff_stage(hparams: Any) -> str | None:
    """Which PreDiff training stage wrote these hyper-parameters (None: none of them)."""
    if not isinstance(hparams, dict):
        return None
    if "alignment_config" in hparams:
        return "alignment (knowledge control)"
    if "vae_config" in hparams and "denoiser_config" not in hparams:
        return "VAE (stage 1)"
    return None


def _load_error_reason(err: Exception) -> str:
    """The informative part of a ``torch.load`` error (the weights-only preamble is noise here)."""
    if isinstance(err, (KeyError, IndexError)):
        return "its bytes are not a torch.save archive"
    text = str(err).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip()
    return text.splitlines()[0] if text else type(err).__name__


def checkpoint_info(checkpoint: dict[str, Any], path: str | os.PathLike = "<checkpoint>") -> dict[str, Any]:
    """``model_name``, ``model_overrides`` and ``data_contract`` of a loaded checkpoint (validated)."""
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or "model_name" not in hparams:
        if {"model", "config"} <= set(checkpoint):  # written by `earthcast convert-checkpoint`
            return _converted_info(checkpoint)
        stage = _prediff_stage(hparams)
        if stage is not None:
            raise ValueError(
                f"'{path}' is the {stage} checkpoint of a PreDiff run, not a forecaster: forecast with "
                "the diffusion stage's checkpoint"
                + (" and pass this one with --alignment" if stage == "alignment (knowledge control)" else "")
            )
        raise ValueError(
            f"'{path}' is not an earthcast checkpoint: its hyper_parameters have no 'model_name' "
            "(write checkpoints with `earthcast fit`, or convert reference weights with "
            "`earthcast convert-checkpoint`)"
        )
    contract = hparams.get("data_contract")
    missing = [k for k in CONTRACT_KEYS if not isinstance(contract, dict) or k not in contract]
    if missing:
        raise ValueError(f"'{path}' has an incomplete data contract: missing {missing}")
    return {
        "model_name": str(hparams["model_name"]),
        "model_overrides": dict(hparams.get("model_overrides") or {}),
        "data_contract": dict(contract),
        "prefix": NET_PREFIX,
    }


def _converted_info(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Contract of reference weights converted by ``earthcast convert-checkpoint``: from the preset."""
    from earthcast.data import DATASETS

    name, config = str(checkpoint["model"]), dict(checkpoint["config"])
    t_in, height, width, c_in = config["input_shape"]
    t_out, _, _, c_out = config["target_shape"]
    dataset = name.removeprefix("earthformer_").removesuffix("_tiny")
    info = DATASETS.create(dataset).info if dataset in DATASETS else {}
    contract = {
        **{k: None for k in CONTRACT_KEYS},
        **info,
        "dataset": dataset,
        **dict(in_len=t_in, out_len=t_out, height=height, width=width, channels_in=c_in, channels_out=c_out),
    }
    return {"model_name": name, "model_overrides": config, "data_contract": contract, "prefix": ""}


def network_state(state_dict: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Entries of ``state_dict`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_forecaster(
    path: str | os.PathLike,
    map_location: Any = "cpu",
    use_ema: bool = True,
    *,
    expected_model: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the trained network of a checkpoint, ready for inference.

    Args:
        path: an earthcast checkpoint (``earthcast fit``) or converted reference weights.
        map_location: device for the weights (as ``torch.load``).
        use_ema: use the moving-average weights when the checkpoint has them.
        expected_model: if given, the registered model name the checkpoint must hold (e.g. the
            ``--model`` a user passed); a different model raises ``ValueError``.

    Returns:
        ``(model, data_contract)``: the network in eval mode and a copy of its data contract.

    Raises:
        ValueError: the file is missing, corrupt, not an earthcast checkpoint, of another model,
            or its weights do not fit the rebuilt network.
    """
    checkpoint = read_checkpoint(path, map_location)
    model, info = network_from_checkpoint(checkpoint, path, use_ema, expected_model)
    device = map_location if isinstance(map_location, (str, torch.device)) else "cpu"
    return model.to(device).eval(), dict(info["data_contract"])


def weights_prefix(checkpoint: dict[str, Any], prefix: str, use_ema: bool) -> str:
    """The state-dict prefix of the weights to load: the moving average (``EMA_PREFIX``) when
    asked for and an ``earthcast fit`` checkpoint (``prefix`` ``NET_PREFIX``) holds one, else
    ``prefix``."""
    has_ema = any(k.startswith(EMA_PREFIX) for k in checkpoint["state_dict"])
    return EMA_PREFIX if use_ema and prefix == NET_PREFIX and has_ema else prefix


def network_from_checkpoint(
    checkpoint: dict[str, Any],
    path: str | os.PathLike = "<checkpoint>",
    use_ema: bool = True,
    expected_model: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The network of a loaded checkpoint with its weights, and its :func:`checkpoint_info`."""
    from earthcast.models import MODELS, create_model

    info = checkpoint_info(checkpoint, path)
    name = info["model_name"]
    if expected_model is not None and expected_model.lower() != name.lower():
        raise ValueError(f"checkpoint '{path}' holds model '{name}', not '{expected_model}'")
    if name not in MODELS:
        raise ValueError(
            f"checkpoint '{path}' needs model '{name}', which is not registered here "
            f"(a missing plug-in?). Registered: {', '.join(MODELS.names())}"
        )
    model = create_model(name, **info["model_overrides"])
    state = checkpoint["state_dict"]
    prefix = weights_prefix(checkpoint, info["prefix"], use_ema)
    weights = network_state(state, prefix) if prefix else dict(state)
    try:
        result = model.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # shape mismatches
        lines = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        raise ValueError(
            f"the weights in '{path}' do not fit model '{name}': {'; '.join(lines[:3])}"
        ) from err
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"the weights in '{path}' do not fit model '{name}': missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return model, info


def find_resume_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """``<out_dir>/checkpoints/last.ckpt`` if it exists."""
    last = Path(out_dir) / CHECKPOINT_DIR / LAST_NAME
    return last if last.is_file() else None
