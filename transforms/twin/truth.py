"""The twin's ground truth of a chunk, as its readers (labelers, the evaluation) load it.

Real PAI has none: a chunk from the mirror or the hub has no twin/ files, and the readers fall
back to what the sensors show.
"""

from __future__ import annotations

import pandas as pd

from transforms.source import ChunkFiles
from transforms.twin.writer import twin_gt_paths


def load_twin_gt(files: ChunkFiles) -> dict[str, pd.DataFrame] | None:
    """The twin's ground-truth tables of a chunk (scenario, road, agents, intent), or None when the
    source has none (real PAI)."""
    paths = {name: files.files.get(rel) for name, rel in twin_gt_paths(files.chunk_id).items()}
    if any(p is None for p in paths.values()):
        return None
    return {name: pd.read_parquet(p) for name, p in paths.items()}
