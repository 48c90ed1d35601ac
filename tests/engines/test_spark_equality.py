"""The Spark engine writes the same lake as the embedded engine, table by table.

One twin chunk with one damaged clip goes through the per-chunk assets in real Dagster runs:
with FLYWHEEL_ENGINE=embedded; with spark on local[2], where every stage is split into one part
per clip; and with spark on a standalone cluster (a master and a worker started as the compose
profile starts them, the driver in its own process); both Spark runs read and commit through
delta-spark (the pinned jars `make setup` fetches). Marked `spark`: `make test-slow` (and so
CI) runs it, the quick loop not.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.assets import ingest, labels, shards, targets
from dagster_project.partitions import CHUNKS_PARTITION
from dagster_project.resources import EngineResource, LakeResource, PAISourceResource, shared_engine
from engines.spark import delta_jars
from lake import io
from lake import tables as T
from tests.conftest import free_port, rewrite_zip
from tests.engines.test_engines import assert_tables_equal
from transforms import pai_layout as L

pytestmark = pytest.mark.spark

KEY = "chunk_0000"
SPINE = [ingest.raw_chunks, ingest.chunk_index, targets.unicycle_targets, labels.commander_labels, shards.webdataset_shards]
KEYS = {"chunks": ["path"], "clips": ["clip_id"], "egomotion": ["clip_id", "timestamp"], "frames": ["clip_id", "frame_index"],
        "unicycle_targets": ["clip_id", "t0_us"], "commander_labels": ["clip_id", "t0_us"], "shard_manifest": ["path"],
        "quarantine": ["stage", "clip_id", "kind", "reason"]}


def run_spine(twin: str, lake: str, kind: str, master: str = "local[2]") -> None:
    """The per-chunk assets of one chunk in one Dagster run (also the standalone test's driver)."""
    inst = dg.DagsterInstance.ephemeral()
    inst.add_dynamic_partitions(CHUNKS_PARTITION, [KEY])
    res = dg.materialize(SPINE, partition_key=KEY, instance=inst, resources={
        "lake": LakeResource(root=lake), "source": PAISourceResource(kind="mirror", mirror_dir=twin),
        "engine": EngineResource(kind=kind, spark_master=master, parts_per_core=4)},
        run_config={"ops": {"webdataset_shards": {"config": {"max_count": 5}}}})  # several shards per split
    assert res.success


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Spark standalone master and one 2-core worker, started with the compose profile's commands."""
    spark_class = shutil.which("spark-class", path=str(Path(sys.executable).parent))
    assert spark_class, "spark-class comes with pyspark: make setup"
    port = free_port()
    env = {**os.environ, "SPARK_WORKER_DIR": str(tmp_path_factory.mktemp("spark-work")), "PYSPARK_PYTHON": sys.executable}
    logs = tmp_path_factory.mktemp("spark-logs")
    procs = [subprocess.Popen([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port",
                               str(port), "--webui-port", str(free_port())], env=env, start_new_session=True,
                              stdout=open(logs / "master.log", "w"), stderr=subprocess.STDOUT)]
    master = f"spark://127.0.0.1:{port}"
    procs.append(subprocess.Popen([spark_class, "org.apache.spark.deploy.worker.Worker", master, "--host", "127.0.0.1",
                                   "--cores", "2", "--memory", "2g", "--webui-port", str(free_port())], env=env,
                                  start_new_session=True, stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT))
    try:
        deadline = time.monotonic() + 120
        while "Registering worker" not in (logs / "master.log").read_text():
            assert time.monotonic() < deadline, f"no worker registered in 120 s: {(logs / 'master.log').read_text()[-2000:]}"
            assert all(p.poll() is None for p in procs), "the Spark master or worker exited; see " + str(logs)
            time.sleep(1)
        yield master
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)


@pytest.fixture(scope="module", autouse=True)
def _stop_local_spark() -> Iterator[None]:
    """The runs below start this process's local[2] session; stop it after the module, so the JVM
    does not sit beside the slow tests that follow."""
    yield
    shared_engine("spark", "local[2]", "auto", 4).stop()  # type: ignore[attr-defined]
    shared_engine.cache_clear()


@pytest.fixture(scope="module")
def lakes(twin_dir: Path, tmp_path_factory: pytest.TempPathFactory, standalone: str) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("engines")
    twin = root / "twin"
    shutil.copytree(twin_dir, twin)
    lost = sorted(_clips_of(twin))[1]
    member = L.FEATURES[L.EGOMOTION].members(lost)["egomotion"]
    rewrite_zip(twin / L.FEATURES[L.EGOMOTION].path(0), lambda m: {k: v for k, v in m.items() if k != member})
    for kind in ("embedded", "spark"):
        run_spine(str(twin), str(root / kind), kind)
    # a driver of its own: this process's Spark session is local[2] and cannot change master
    code = f"from tests.engines.test_spark_equality import run_spine; run_spine({str(twin)!r}, {str(root / 'cluster')!r}, " \
           f"'spark', {standalone!r})"
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"engine: spark {standalone} (2 cores); reads and commits through delta-spark" in proc.stderr
    return {k: root / k for k in ("embedded", "spark", "cluster")}


def _clips_of(twin: Path) -> list[str]:
    import pandas as pd

    ix = pd.read_parquet(twin / "clip_index.parquet")
    return list(ix[ix["chunk"] == 0].index)


@pytest.mark.parametrize("table", [T.CHUNKS, T.CLIPS, T.EGOMOTION, T.FRAMES, T.UNICYCLE_TARGETS, T.COMMANDER_LABELS,
                                   T.SHARD_MANIFEST, T.QUARANTINE], ids=lambda t: t.name)
@pytest.mark.parametrize("spark", ["spark", "cluster"])
def test_spark_writes_the_same_table_as_embedded(lakes: dict[str, Path], table: T.Table, spark: str) -> None:
    a, b = (io.read(lakes[k], table, chunk=KEY) for k in ("embedded", spark))
    assert a.num_rows > 0, f"{table.name}: nothing to compare"
    if table is T.CHUNKS:  # bronze is fetched by the source, not the engine: the same files either way
        a, b = (t.drop_columns(["local_path"]) for t in (a, b))
    assert_tables_equal(b, a, KEYS[table.name], f"{spark} {table.name}")


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
        a, b, c = ((lakes[k] / "shards" / row["path"]).read_bytes() for k in ("embedded", "spark", "cluster"))
        assert a == b == c, row["path"]


def test_the_engine_says_how_it_commits(lakes: dict[str, Path]) -> None:
    """`make setup` fetched the pinned delta-spark jars: the runs above read and committed through them."""
    assert delta_jars(), "no .jars/delta-spark: make setup (scripts/fetch-jars.sh) fetches them"
    eng = shared_engine("spark", "local[2]", "auto", 4)  # the session the runs above used
    assert eng.describe() == "spark local[2] (2 cores); reads and commits through delta-spark"


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
