"""Real shards of the session twin's first chunk, exported once for the trainer tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from labelers.build import label_windows, window_contexts
from labelers.kinematic import KinematicLabeler
from transforms import shards as S
from transforms.index import index_chunk
from transforms.source import ChunkFiles, mirror_source
from transforms.twin.truth import load_twin_gt
from transforms.unicycle import targets_for_chunk


@dataclass(frozen=True)
class Chunk0:
    files: ChunkFiles
    egomotion: pa.Table
    targets: pa.Table


@pytest.fixture(scope="session")
def chunk0(twin_dir: Path) -> Chunk0:
    """The session twin's first chunk, indexed, with its unicycle targets."""
    files = mirror_source(twin_dir).fetch_chunk(0)
    ix = index_chunk(files, chunk="chunk_0000")
    return Chunk0(files, ix.egomotion, targets_for_chunk(ix.egomotion, ix.clips, chunk="chunk_0000").table)


@pytest.fixture(scope="session")
def shard_dir(chunk0: Chunk0, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<dir>/{train,val,test}/chunk_0000-t-NNNNN.tar at 128x72, kinematic labels."""
    files, targets = chunk0.files, chunk0.targets
    labels = label_windows(KinematicLabeler(), window_contexts(targets, load_twin_gt(files)), chunk="chunk_0000").table
    out = tmp_path_factory.mktemp("shards")
    S.export_shards(files, S.windows_for_chunk(targets, labels, chunk0.egomotion, chunk="chunk_0000"), out,
                    S.ShardConfig(image_width=128, image_height=72, max_count=12), chunk="chunk_0000", version="t")
    return out


@pytest.fixture(scope="session")
def shard_urls(shard_dir: Path) -> dict[str, list[str]]:
    return {s: sorted(str(p) for p in (shard_dir / s).glob("*.tar")) for s in ("train", "val", "test")}


# a few steps of the tiny profile: enough for checkpoints, reloads and plans, not for skill
QUICK = dict(batch_size=8, val_every=6, checkpoint_every=6, warmup_steps=2, val_max_samples=16, stats_samples=64)


@pytest.fixture(scope="session")
def tiny_run(shard_urls: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from trainers.train import TrainConfig, train

    runs = tmp_path_factory.mktemp("runs")
    res = train(TrainConfig(profile="tiny", steps=12, **QUICK), train_urls=shard_urls["train"],
                val_urls=shard_urls["val"], runs_dir=runs, data_version="test-data")
    return res, runs
