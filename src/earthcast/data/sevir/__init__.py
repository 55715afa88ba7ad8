"""SEVIR VIL and SEVIR-LR: catalogue → lazy HDF5 reader → map-style dataset of windows.

``SEVIRDataset(root, split, variant="sevir" | "sevirlr")`` is the entry point;
``write_synthetic_sevir`` writes a small store in the real layout for tests and demos.
"""

from earthcast.data.sevir.catalog import load_events as load_events
from earthcast.data.sevir.catalog import read_catalog as read_catalog
from earthcast.data.sevir.dataset import VARIANTS as VARIANTS
from earthcast.data.sevir.dataset import SEVIRDataset as SEVIRDataset
from earthcast.data.sevir.reader import SEVIRReader as SEVIRReader
from earthcast.data.sevir.synth import write_synthetic_sevir as write_synthetic_sevir
