"""earthcast — deep-learning Earth system forecasting (Earthformer, PreDiff and the bench around them)."""

from earthcast.models import create_model as create_model
from earthcast.models import list_models as list_models
from earthcast.typing import Batch as Batch
from earthcast.typing import Forecaster as Forecaster

__version__ = "0.1.0"
