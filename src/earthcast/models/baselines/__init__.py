"""Reference forecasters without learned dynamics (registered in ``earthcast.models``)."""

from earthcast.models.baselines.persistence import Persistence as Persistence
from earthcast.models.baselines.persistence import PersistenceConfig as PersistenceConfig
