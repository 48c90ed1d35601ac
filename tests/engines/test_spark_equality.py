"""The Spark engine (local mode) writes the same lake as the embedded engine, table by table.

One twin chunk with one damaged clip goes through the per-chunk assets twice, in real Dagster
runs: once with FLYWHEEL_ENGINE=embedded, once with spark on local[2], where every stage is split
into one part per clip. Marked `spark`: `make test-slow` (and so CI) runs it, the quick loop not.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.assets import ingest, labels, shards, targets
from dagster_project.partitions import CHUNKS_PARTITION
from dagster_project.resources import EngineResource, LakeResource, PAISourceResource, _engine
from lake import io
from lake import tables as T
from tests.conftest import rewrite_zip
from tests.engines.test_engines import assert_tables_equal
from transforms import pai_layout as L

pytestmark = pytest.mark.spark

KEY = "chunk_0000"
SPINE = [ingest.raw_chunks, ingest.chunk_index, targets.unicycle_targets, labels.commander_labels, shards.webdataset_shards]
KEYS = {"chunks": ["path"], "clips": ["clip_id"], "egomotion": ["clip_id", "timestamp"], "frames": ["clip_id", "frame_index"],
        "unicycle_targets": ["clip_id", "t0_us"], "commander_labels": ["clip_id", "t0_us"], "shard_manifest": ["path"],
        "quarantine": ["stage", "clip_id", "kind", "reason"]}


@pytest.fixture(scope="module")
def lakes(twin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("engines")
    twin = root / "twin"
    shutil.copytree(twin_dir, twin)
    lost = sorted(_clips_of(twin))[1]
    member = L.FEATURES[L.EGOMOTION].members(lost)["egomotion"]
    rewrite_zip(twin / L.FEATURES[L.EGOMOTION].path(0), lambda m: {k: v for k, v in m.items() if k != member})
    out = {}
    for kind in ("embedded", "spark"):
        inst = dg.DagsterInstance.ephemeral()
        inst.add_dynamic_partitions(CHUNKS_PARTITION, [KEY])
        lake = root / kind
        res = dg.materialize(SPINE, partition_key=KEY, instance=inst, resources={
            "lake": LakeResource(root=str(lake)), "source": PAISourceResource(kind="mirror", mirror_dir=str(twin)),
            "engine": EngineResource(kind=kind, parts_per_core=4)},
            run_config={"ops": {"webdataset_shards": {"config": {"max_count": 5}}}})  # several shards per split
        assert res.success
        out[kind] = lake
    return out


def _clips_of(twin: Path) -> list[str]:
    import pandas as pd

    ix = pd.read_parquet(twin / "clip_index.parquet")
    return list(ix[ix["chunk"] == 0].index)


@pytest.mark.parametrize("table", [T.CHUNKS, T.CLIPS, T.EGOMOTION, T.FRAMES, T.UNICYCLE_TARGETS, T.COMMANDER_LABELS,
                                   T.SHARD_MANIFEST, T.QUARANTINE], ids=lambda t: t.name)
def test_spark_writes_the_same_table_as_embedded(lakes: dict[str, Path], table: T.Table) -> None:
    embedded, spark = (io.read(lakes[k], table, chunk=KEY) for k in ("embedded", "spark"))
    assert embedded.num_rows > 0, f"{table.name}: nothing to compare"
    if table is T.CHUNKS:  # bronze is fetched by the source, not the engine: the same files either way
        embedded, spark = (t.drop_columns(["local_path"]) for t in (embedded, spark))
    assert_tables_equal(spark, embedded, KEYS[table.name], table.name)


def test_the_damaged_clip_is_quarantined_by_both_and_the_rest_processed(lakes: dict[str, Path]) -> None:
    for lake in lakes.values():
        clips = io.read(lake, T.CLIPS, chunk=KEY).to_pylist()
        assert sorted(c["status"] for c in clips) == ["ok", "ok", "ok", "quarantined"]
        q = io.read(lake, T.QUARANTINE, chunk=KEY).to_pylist()
        assert [r["kind"] for r in q] == ["missing_member"]


def test_shard_files_are_byte_identical(lakes: dict[str, Path]) -> None:
    manifest = io.read(lakes["embedded"], T.SHARD_MANIFEST, chunk=KEY).to_pylist()
    assert len(manifest) >= 3
    for row in manifest:
        a, b = ((lakes[k] / "shards" / row["path"]).read_bytes() for k in ("embedded", "spark"))
        assert a == b, row["path"]


def test_the_engine_says_how_it_commits(lakes: dict[str, Path]) -> None:
    eng = _engine("spark", "local[2]", "auto", 4)  # the session the runs above used
    text = eng.describe()
    assert text.startswith("spark local[2] (2 cores)")
    if eng.delta_spark:  # a machine with the delta-spark jar on its classpath
        assert "through delta-spark" in text
    else:
        assert "committed through the embedded Delta writer (delta-rs)" in text and "io.delta:delta-spark_4.2_2.13" in text


def test_fetching_delta_spark_that_cannot_resolve_fails_clearly() -> None:
    """FLYWHEEL_SPARK_DELTA=packages on a machine without Maven: an error naming the package and
    the ways out (a new process: this one's Spark session is already up without it)."""
    code = ("from engines.spark import SparkSettings, start_session\n"
            "try:\n    start_session(SparkSettings(delta='packages'))\n    print('STARTED')\n"
            "except RuntimeError as e:\n    print('ERROR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300).stdout
    if "STARTED" in out:
        pytest.skip("this machine reaches Maven: the jar resolved")
    assert "ERROR Spark could not resolve io.delta:delta-spark_4.2_2.13:" in out
    assert "FLYWHEEL_SPARK_DELTA=off" in out
