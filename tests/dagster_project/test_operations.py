"""Operating the flywheel: discovery sensor, incremental backfill schedule, pools, retries."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import PARTITION_NAME_TAG

from dagster_project.assets import ingest, targets
from dagster_project.backfill import Materialized, stale_assets, with_execution_sets
from dagster_project.definitions import defs
from dagster_project.partitions import CHUNKS_PARTITION, POOL_ACCELERATOR, POOL_DECODE, POOL_DOWNLOAD
from dagster_project.resources import EngineResource, LakeResource, PAISourceResource
from dagster_project.schedules import incremental_backfill
from dagster_project.sensors import new_chunks
from tests.conftest import SMALL

ORDER = ["raw_chunks", "clip_index", "egomotion", "frames", "unicycle_targets", "commander_labels", "webdataset_shards"]
DEPS = {"clip_index": ["raw_chunks"], "egomotion": ["raw_chunks"], "frames": ["raw_chunks"],
        "unicycle_targets": ["clip_index", "egomotion"], "commander_labels": ["unicycle_targets"],
        "webdataset_shards": ["unicycle_targets", "commander_labels", "frames"]}


def _all(t: float = 100.0, rev: str = "r1") -> dict[str, Materialized]:
    return {a: Materialized(t + i, rev if a == "raw_chunks" else None) for i, a in enumerate(ORDER)}


def test_stale_assets_runs_missing_changed_and_downstream_only() -> None:
    assert stale_assets(ORDER, DEPS, _all(), source_revision="r1") == {}
    assert set(stale_assets(ORDER, DEPS, {}, source_revision="r1")) == set(ORDER)
    latest = _all()
    latest["commander_labels"] = Materialized(500.0)  # relabelled: only the shards follow
    assert stale_assets(ORDER, DEPS, latest, source_revision="r1") == {
        "webdataset_shards": "upstream commander_labels changed after it"}
    latest = _all()
    del latest["frames"]  # a partition whose frames never landed
    assert list(stale_assets(ORDER, DEPS, latest, source_revision="r1")) == ["frames", "webdataset_shards"]
    why = stale_assets(ORDER, DEPS, _all(), source_revision="r2")  # a new pinned revision: everything
    assert list(why) == ORDER and "r1 -> r2" in why["raw_chunks"]
    assert with_execution_sets(["frames", "webdataset_shards"], [frozenset({"clip_index", "egomotion", "frames"})]) == [
        "clip_index", "egomotion", "frames", "webdataset_shards"]


def test_heavy_assets_sit_in_pools_and_downloads_retry() -> None:
    graph = defs.resolve_asset_graph()
    pools = {k.to_user_string(): graph.get(k).pools for k in graph.materializable_asset_keys}
    assert pools["raw_chunks"] == {POOL_DOWNLOAD}
    assert pools["egomotion"] == pools["webdataset_shards"] == {POOL_DECODE}
    assert pools["train_field_agent"] == pools["navsim_eval"] == {POOL_ACCELERATOR}
    policy = defs.get_assets_def("raw_chunks").op.retry_policy
    assert policy.max_retries >= 2 and policy.backoff == dg.Backoff.EXPONENTIAL


@pytest.fixture
def resources(twin_dir: Path, tmp_path: Path) -> dict:
    return {"lake": LakeResource(root=str(tmp_path / "lake")), "engine": EngineResource(),
            "source": PAISourceResource(kind="mirror", mirror_dir=str(twin_dir))}


def test_sensor_registers_new_chunks_once(resources: dict) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CHUNKS_PARTITION, ["chunk_0000"])  # discovered earlier
    with dg.build_sensor_context(instance=instance, resources=resources, repository_def=defs.get_repository_def()) as ctx:
        result = new_chunks(ctx)
    assert result.dynamic_partitions_requests[0].partition_keys == ["chunk_0001"]
    assert result.run_requests == []  # registration only: incremental_backfill runs what a partition lacks
    instance.add_dynamic_partitions(CHUNKS_PARTITION, result.dynamic_partitions_requests[0].partition_keys)
    assert set(instance.get_dynamic_partitions(CHUNKS_PARTITION)) == {f"chunk_{i:04d}" for i in range(SMALL.chunks)}
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        again = new_chunks(ctx)
    assert isinstance(again, dg.SkipReason) and "no new chunks" in again.skip_message


def _tick(instance: dg.DagsterInstance, resources: dict) -> dict[str, list[str]]:
    # closed after the tick: the context enters an instance from its ref, whose defs-state context
    # variable would otherwise outlive it and break the next Definitions built in this process
    with dg.build_schedule_context(instance=instance, resources=resources,
                                   repository_def=defs.get_repository_def()) as ctx:
        result = incremental_backfill(ctx)
    from dagster._core.storage.defs_state.base import DefsStateStorage

    assert DefsStateStorage.get() is None or instance.defs_state_storage is DefsStateStorage.get()
    if isinstance(result, dg.SkipReason):
        return {}
    return {r.partition_key: sorted(k.to_user_string() for k in r.asset_selection) for r in result}


def test_schedule_backfills_only_missing_or_stale_partitions(resources: dict, tmp_path: Path) -> None:
    # a persistent instance (schedule contexts refuse an ephemeral one), entered in the test body
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        instance.add_dynamic_partitions(CHUNKS_PARTITION, ["chunk_0000", "chunk_0001"])
        assert dg.materialize([ingest.raw_chunks, ingest.chunk_index, targets.unicycle_targets],
                              partition_key="chunk_0000", instance=instance, resources=resources).success
        ticks = _tick(instance, resources)
        assert ticks["chunk_0000"] == ["commander_labels", "webdataset_shards"]  # what chunk_0000 still lacks
        assert ticks["chunk_0001"] == sorted(ORDER)  # never run: all of it
        # raw files fetched again (a repaired chunk): everything downstream of them, as one selection
        assert dg.materialize([ingest.raw_chunks], partition_key="chunk_0000", instance=instance,
                              resources=resources).success
        assert _tick(instance, resources)["chunk_0000"] == sorted(ORDER[1:])
        # a partition with a run queued or running is left to it: a second tick does not double it
        # (Dagster's run keys cannot: a schedule's are kept apart per tick time)
        running = dg.DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED,
                               tags={PARTITION_NAME_TAG: "chunk_0001"})
        instance.add_run(running)
        assert set(_tick(instance, resources)) == {"chunk_0000"}
        instance.report_run_failed(running)  # failed (a dead code server): the next tick runs it again
        assert set(_tick(instance, resources)) == {"chunk_0000", "chunk_0001"}
