"""A 10-clip twin chunk for the fault suite, and its clean run through the chunk stages."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import webdataset as wds

from dagster_project.partitions import CHUNKS_PARTITION
from dagster_project.resources import EngineResource, LakeResource, PAISourceResource
from lake import io
from lake import tables as T
from tests.faults.damage import chain_assets, chain_checks
from transforms.twin.writer import TwinConfig, write_twin

FAULT_TWIN = TwinConfig(chunks=1, clips_per_chunk=10, seed=11, width=64, height=48, seconds=10.0)
SHARDS = {"image_width": 64, "image_height": 48, "max_count": 40}


@dataclass
class Run:
    """What a chain run left in its lake, per clip."""

    lake: Path
    ok: bool
    targets: Counter
    labels: Counter
    samples: Counter  # samples in the shard files the manifest lists
    quarantine: dict[tuple[str, str], str]  # (stage, clip_id) -> kind


def resources(lake: Path, mirror: Path) -> dict:
    return {"lake": LakeResource(root=str(lake)), "source": PAISourceResource(kind="mirror", mirror_dir=str(mirror)),
            "engine": EngineResource()}


def new_instance(keys: tuple[str, ...] = ("chunk_0000",)) -> dg.DagsterInstance:
    inst = dg.DagsterInstance.ephemeral()
    inst.add_dynamic_partitions(CHUNKS_PARTITION, list(keys))
    return inst


def run_chain(lake: Path, mirror: Path, *, separate: bool = False, key: str = "chunk_0000",
              instance: dg.DagsterInstance | None = None) -> Run:
    """raw_chunks -> ... -> webdataset_shards with their blocking QA checks, in one run or one run per
    asset (as a retry or a backfill would)."""
    assets = chain_assets()
    inst = instance or new_instance()
    groups = [[a] for a in assets] if separate else [assets]
    ok = True
    for group in groups:
        res = dg.materialize([*group, *chain_checks(group)], partition_key=key, instance=inst,
                             resources=resources(lake, mirror), raise_on_error=False,
                             run_config={"ops": {"webdataset_shards": {"config": SHARDS}}}
                             if any(k.path[-1] == "webdataset_shards" for a in group for k in a.keys) else None)
        ok = ok and res.success
    return collect(lake, ok)


def collect(lake: Path, ok: bool = True) -> Run:
    manifest = io.read(lake, T.SHARD_MANIFEST).to_pylist()
    urls = [str(lake / "shards" / r["path"]) for r in manifest]
    keys = [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)] if urls else []
    q = io.read(lake, T.QUARANTINE).to_pylist()
    return Run(lake, ok, Counter(io.read(lake, T.UNICYCLE_TARGETS).column("clip_id").to_pylist()),
               Counter(io.read(lake, T.COMMANDER_LABELS).column("clip_id").to_pylist()),
               Counter(k.rsplit("_", 1)[0] for k in keys), {(r["stage"], r["clip_id"]): r["kind"] for r in q})


@pytest.fixture(scope="session")
def fault_twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_twin(tmp_path_factory.mktemp("fault_twin"), FAULT_TWIN)


@pytest.fixture
def fault_copy(fault_twin: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "mirror"
    shutil.copytree(fault_twin, dst)
    return dst


@pytest.fixture(scope="session")
def clean_run(fault_twin: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    run = run_chain(tmp_path_factory.mktemp("clean") / "lake", fault_twin)
    assert run.ok and not run.quarantine and sum(run.samples.values()) == sum(run.targets.values()) > 0
    return run
