"""Earthformer: config, presets, model, and the reference-checkpoint converter."""

from earthcast.models.earthformer.config import EarthformerConfig as EarthformerConfig
from earthcast.models.earthformer.convert import convert_reference_state_dict as convert_reference_state_dict
from earthcast.models.earthformer.model import Earthformer as Earthformer
from earthcast.models.earthformer.presets import PRESETS as PRESETS
from earthcast.models.earthformer.presets import get_preset as get_preset
