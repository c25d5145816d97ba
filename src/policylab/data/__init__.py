"""Offline datasets: the one format (Parquet + JSON sidecar), loaders, importers, samplers, measures.

`data` never imports a pillar: the recipes that train behaviour policies live in `catalog`.
"""

from policylab.data.format import (
                                   DatasetError,
                                   Episode,
                                   OfflineData,
                                   episodes_of,
                                   load_dataset,
                                   read_metadata,
                                   save_dataset,
)
from policylab.data.importers import episodes_from_d4rl, import_d4rl, read_d4rl_file
from policylab.data.minari_io import export_minari, import_minari
from policylab.data.samplers import SAMPLERS, TrajectorySegments, UniformTransitions

__all__ = ["SAMPLERS", "DatasetError", "Episode", "OfflineData", "TrajectorySegments", "UniformTransitions",
           "episodes_from_d4rl", "episodes_of", "export_minari", "import_d4rl", "import_minari", "load_dataset",
           "read_d4rl_file", "read_metadata", "save_dataset"]
