"""Real shards of the session twin's first chunk, exported once for the trainer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelers.build import label_windows, load_twin_gt, window_contexts
from labelers.kinematic import KinematicLabeler
from transforms import shards as S
from transforms.index import index_chunk
from transforms.source import mirror_source
from transforms.unicycle import targets_for_chunk


@pytest.fixture(scope="session")
def shard_dir(twin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<dir>/{train,val,test}/chunk_0000-NNNNN.tar at 128x72, kinematic labels."""
    files = mirror_source(twin_dir).fetch_chunk(0)
    ix = index_chunk(files, chunk="chunk_0000")
    targets = targets_for_chunk(ix.egomotion, ix.clips, chunk="chunk_0000").table
    labels = label_windows(KinematicLabeler(), window_contexts(targets, load_twin_gt(files)), chunk="chunk_0000").table
    out = tmp_path_factory.mktemp("shards")
    S.export_shards(files, S.windows_for_chunk(targets, labels, ix.egomotion, chunk="chunk_0000"), out,
                    S.ShardConfig(image_width=128, image_height=72, max_count=12), chunk="chunk_0000")
    return out


@pytest.fixture(scope="session")
def shard_urls(shard_dir: Path) -> dict[str, list[str]]:
    return {s: sorted(str(p) for p in (shard_dir / s).glob("*.tar")) for s in ("train", "val", "test")}
