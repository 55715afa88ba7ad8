"""earthcast — deep-learning Earth system forecasting (Earthformer, PreDiff and the bench around them)."""

from earthcast.data import create_datamodule as create_datamodule
from earthcast.data import list_datasets as list_datasets
from earthcast.models import create_model as create_model
from earthcast.models import list_models as list_models
from earthcast.typing import Batch as Batch
from earthcast.typing import Forecaster as Forecaster

__version__ = "0.1.0"
