"""delta-rs and delta-spark on the same tables: each reads and appends what the other wrote, and
two writers, one of each, committing at once to different partitions lose no commit.

The delta-spark jars are the pinned ones `make setup` fetched (.jars/delta-spark); marked `spark`
(Java 17, Spark local mode): `make test-slow` and CI run it.
"""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from dagster_project.resources import shared_engine
from engines.spark import SparkEngine, delta_jars
from lake import io
from lake import tables as T
from tests.engines.test_engines import assert_tables_equal

pytestmark = pytest.mark.spark
TABLE = T.UNICYCLE_TARGETS  # list columns, non-null fields, a two-column key: the lake's hardest shape
KEY = list(TABLE.key)


def rows(chunk: str, n: int = 3, seed: int = 0) -> pa.Table:
    """n rows of TABLE in partition `chunk`, every column filled (lists of 64, nulls in none)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {}
    for f in TABLE.schema:
        if f.name == "chunk":
            cols[f.name] = [chunk] * n
        elif f.name == "clip_id":
            cols[f.name] = [f"{chunk}-clip{i}" for i in range(n)]
        elif pa.types.is_list(f.type):
            cols[f.name] = [rng.normal(size=64).tolist() for _ in range(n)]
        elif pa.types.is_floating(f.type):
            cols[f.name] = rng.normal(size=n).tolist()
        elif pa.types.is_integer(f.type):
            cols[f.name] = [int(x) for x in rng.integers(0, 2**40, n)]
        elif pa.types.is_boolean(f.type):
            cols[f.name] = [bool(x) for x in rng.integers(0, 2, n)]
        else:
            cols[f.name] = [f"{f.name}-{i}" for i in range(n)]
    return io.conform(TABLE, pa.table(cols))


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkEngine]:
    assert delta_jars(), "no delta-spark jars in .jars/delta-spark: `make setup` (scripts/fetch-jars.sh) fetches them"
    eng = shared_engine("spark", "local[2]", "auto", 4)
    assert isinstance(eng, SparkEngine) and eng.delta_spark, eng.describe()
    yield eng
    eng.stop()
    shared_engine.cache_clear()


def write(engine: str, spark: SparkEngine, root: Path, chunk: str, seed: int = 0) -> None:
    data = rows(chunk, seed=seed)
    if engine == "delta-rs":
        io.overwrite_partition(root, TABLE, data, chunk=chunk)
    else:
        spark.overwrite_partition(str(root), TABLE, data, chunk=chunk)


def spark_read(spark: SparkEngine, root: Path) -> pa.Table:
    got = spark.spark.read.format("delta").load(io.table_uri(root, TABLE)).toArrow()
    return io.conform(TABLE, got.select(TABLE.schema.names))


@pytest.mark.parametrize("first,second", [("delta-rs", "delta-spark"), ("delta-spark", "delta-rs")])
def test_each_writer_reads_and_appends_the_others_table(spark: SparkEngine, tmp_path: Path, first: str,
                                                        second: str) -> None:
    write(first, spark, tmp_path, "chunk_a", seed=1)
    write(second, spark, tmp_path, "chunk_b", seed=2)
    write(second, spark, tmp_path, "chunk_a", seed=3)  # and replaces a partition the first one wrote
    want = pa.concat_tables([rows("chunk_a", seed=3), rows("chunk_b", seed=2)])
    for what, got in (("delta-rs", io.read(tmp_path, TABLE)), ("delta-spark", spark_read(spark, tmp_path))):
        assert_tables_equal(got, want, KEY, f"{first} then {second}, read by {what}")
    dt = DeltaTable(io.table_uri(tmp_path, TABLE))
    assert dt.version() == 2
    p = dt.protocol()  # no writer upgraded the table past what both read and write
    assert (p.min_reader_version, p.min_writer_version) == (1, 2), p
    ops = [h["operation"] for h in dt.history()]
    assert len(ops) == 3, ops


def test_concurrent_writers_of_both_engines_lose_no_commit(spark: SparkEngine, tmp_path: Path) -> None:
    write("delta-rs", spark, tmp_path, "chunk_seed")  # the table exists before the race
    n = 6
    # delta-rs commits while each Spark write is in flight (started, snapshot read, not yet committed):
    # Spark's commit then lands on a newer table version than it began from
    spark_started = [threading.Event() for _ in range(n)]
    errors: list[tuple[str, Exception]] = []

    def writer(engine: str) -> None:
        try:
            for i in range(n):
                if engine == "delta-spark":
                    spark_started[i].set()
                else:
                    spark_started[i].wait(timeout=300)
                    time.sleep(0.3)
                write(engine, spark, tmp_path, f"chunk_{engine}_{i}", seed=i)
        except Exception as exc:  # reported below with the engine's name
            errors.append((engine, exc))

    threads = [threading.Thread(target=writer, args=(e,)) for e in ("delta-rs", "delta-spark")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    got = io.read(tmp_path, TABLE)
    chunks = sorted(set(got.column("chunk").to_pylist()))
    assert chunks == sorted(["chunk_seed"] + [f"chunk_{e}_{i}" for e in ("delta-rs", "delta-spark") for i in range(n)])
    assert got.num_rows == 3 * (2 * n + 1)
    dt = DeltaTable(io.table_uri(tmp_path, TABLE))
    assert dt.version() == 2 * n, "one commit per write, none lost or doubled"
    writers = ["spark" if "Spark" in str(h.get("engineInfo", "")) else "rs" for h in reversed(dt.history())][1:]
    switches = sum(a != b for a, b in itertools.pairwise(writers))
    assert sorted(writers) == ["rs"] * n + ["spark"] * n and switches >= 3, f"the commits did not race: {writers}"
    assert_tables_equal(spark_read(spark, tmp_path), got, KEY, "delta-spark's view of the raced table")


def test_missing_storage_jar_is_named(tmp_path: Path) -> None:
    src = delta_jars()
    shutil.copy(next(j for j in src if j.name.startswith("delta-spark")), tmp_path)
    with pytest.raises(FileNotFoundError, match="delta-storage"):
        delta_jars(str(tmp_path))


def test_fetched_jars_must_match_the_pinned_checksums(tmp_path: Path) -> None:
    """scripts/fetch-jars.sh through Maven: the pinned sums install the jars; one wrong sum installs nothing."""
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    for name in ("deploy", "scripts"):
        shutil.copytree(repo / name, tmp_path / name)
    ok = subprocess.run(["bash", "scripts/fetch-jars.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in delta_jars(str(tmp_path / ".jars" / "delta-spark"))) == \
        sorted(p.name for p in delta_jars())
    shutil.rmtree(tmp_path / ".jars")
    sums = tmp_path / "deploy" / "delta-spark" / "SHA256SUMS"
    sums.write_text("0" * 64 + sums.read_text()[64:])
    bad = subprocess.run(["bash", "scripts/fetch-jars.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "do not match" in bad.stderr
    assert not (tmp_path / ".jars" / "delta-spark").exists()
