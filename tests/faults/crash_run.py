"""A stage run in its own process, for the kill -9 tests: `python -m tests.faults.crash_run STAGE LAKE MIRROR`.

The test sets FLYWHEEL_CRASH_AT to the point where the process must die (lake/faults.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dagster as dg

from tests.faults.conftest import SHARDS, new_instance, resources

TRAIN = dict(profile="tiny", steps=4, batch_size=8, val_every=2, checkpoint_every=2, warmup_steps=1,
             val_max_samples=8, stats_samples=32)


def main(stage: str, lake: str, mirror: str, extra: str = "{}") -> None:
    from dagster_project.assets import ingest, shards

    cfg = json.loads(extra)
    if stage == "index":
        dg.materialize([ingest.chunk_index], partition_key="chunk_0000", instance=new_instance(),
                       resources=resources(Path(lake), Path(mirror)))
    elif stage == "shards":
        dg.materialize([shards.webdataset_shards], partition_key="chunk_0000", instance=new_instance(),
                       resources=resources(Path(lake), Path(mirror)),
                       run_config={"ops": {"webdataset_shards": {"config": {**SHARDS, **cfg}}}})
    elif stage == "train":
        train_run(lake, mirror)
    else:
        raise SystemExit(f"unknown stage {stage!r}")


def train_run(lake: str, runs: str):
    from lake import io
    from lake import tables as T
    from trainers.data import shards_from_manifest
    from trainers.train import TrainConfig, train

    s = shards_from_manifest(io.read(lake, T.SHARD_MANIFEST), Path(lake) / "shards", labeler="kinematic",
                             labeler_version="1.0")
    return train(TrainConfig(**TRAIN), train_urls=s.train, val_urls=s.val, runs_dir=runs, data_version=s.data_version,
                 progress_bar=False)


if __name__ == "__main__":
    main(*sys.argv[1:])
