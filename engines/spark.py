"""The Spark engine: the same part functions as the embedded engine, run as Spark jobs.

A stage runs as one Spark job over its chunk:

1. the clips are numbered into parts (contiguous runs, so part order is clip order);
2. each input table is read by Spark (delta-spark when its jar is on the classpath), joined to
   the part numbers and packed per part into one Arrow IPC blob (`groupBy(part).applyInArrow`);
3. the blobs of a part meet in one group, are unpacked, and the part function runs there, on an
   executor; its outputs go back as IPC blobs, one row per (part, output);
4. the driver concatenates the outputs in part order and commits them.

Committing: with delta-spark (its jars fetched by `make setup` into .jars/delta-spark, checksums
pinned in deploy/delta-spark/SHA256SUMS; or on the cluster's classpath; or FLYWHEEL_SPARK_DELTA=
packages) inputs are read with `spark.read.format("delta")` and partitions replaced with
`replaceWhere`. Without it Spark computes and the embedded writer (delta-rs) commits, and
`describe()` says so in every asset's log.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pyarrow as pa

from engines import Input, PartFn, conform_output
from lake import io
from lake.tables import Table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

DeltaMode = Literal["auto", "packages", "off"]
DELTA_MODES: tuple[DeltaMode, ...] = ("auto", "packages", "off")
ENVELOPE = "part long, name string, data binary"
CLIPS = "__clips__"  # the envelope row that carries a part's clip ids
DELTA_CLASS = "io.delta.tables.DeltaTable"
# where `make setup` (scripts/fetch-jars.sh) puts the pinned delta-spark jars; FLYWHEEL_SPARK_JARS overrides
PROJECT_JARS = Path(__file__).resolve().parents[1] / ".jars" / "delta-spark"
DELTA_EXTENSIONS = {"spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
                    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog"}


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[2]"
    delta: DeltaMode = "auto"  # auto: delta-spark if its jar is on the classpath; packages: fetch it; off: delta-rs
    parts_per_core: int = 4  # parts per executor core: small parts balance clips of unequal cost
    jars_dir: str = ""  # the delta-spark jars (auto mode); empty: the project's .jars/delta-spark

    def __post_init__(self) -> None:
        if self.delta not in DELTA_MODES:
            raise ValueError(f"FLYWHEEL_SPARK_DELTA={self.delta!r}: choose one of {', '.join(DELTA_MODES)}")
        if self.parts_per_core < 1:
            raise ValueError(f"parts_per_core={self.parts_per_core}: must be >= 1")


def delta_package() -> str:
    """The delta-spark Maven coordinate that matches the installed pyspark and delta-spark."""
    from importlib.metadata import version

    import pyspark

    return f"io.delta:delta-spark_{'.'.join(pyspark.__version__.split('.')[:2])}_2.13:{version('delta-spark')}"


def delta_jars(jars_dir: str = "") -> list[Path]:
    """The delta-spark and delta-storage jars in `jars_dir` (default: the project's), or [] when absent."""
    folder = Path(jars_dir) if jars_dir else PROJECT_JARS
    jars = sorted(folder.glob("delta-*.jar")) if folder.is_dir() else []
    names = {j.name.split("-4")[0].split("_")[0] for j in jars}  # delta-spark_4.2_2.13-4.4.0.jar -> delta-spark
    if jars and names != {"delta-spark", "delta-storage"}:
        raise FileNotFoundError(f"{folder} holds {[j.name for j in jars]}: delta-spark needs both its jar and "
                                "delta-storage's; run scripts/fetch-jars.sh (make setup) again")
    return jars


def start_session(s: SparkSettings) -> SparkSession:
    from pyspark.sql import SparkSession

    # Executors start Python workers with the driver's PYSPARK_PYTHON (default `python3`, here the
    # system's 3.11, which refuses a 3.12 driver): default to this interpreter. The compose
    # profile's workers share the image, so the path holds there; elsewhere set PYSPARK_PYTHON.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    b = (SparkSession.builder.master(s.master).appName("av-flywheel")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.execution.arrow.pyspark.enabled", "true"))
    if s.master.startswith("local"):
        # short jobs on a small machine: the C1 JIT alone starts faster; few shuffle partitions
        b = b.config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1").config("spark.sql.shuffle.partitions", "4")
    jars = delta_jars(s.jars_dir) if s.delta == "auto" else []
    if jars:  # spark.jars also ships them to a cluster's executors
        b = b.config("spark.jars", ",".join(str(j) for j in jars))
        for k, v in DELTA_EXTENSIONS.items():
            b = b.config(k, v)
    if s.delta == "packages":
        from delta import configure_spark_with_delta_pip

        b = configure_spark_with_delta_pip(b)
        for k, v in DELTA_EXTENSIONS.items():
            b = b.config(k, v)
        try:
            return b.getOrCreate()
        except Exception as exc:  # py4j/JVM errors have no common base worth naming
            raise RuntimeError(f"Spark could not resolve {delta_package()} from Maven ({type(exc).__name__}). Put the "
                               "jar on the cluster's classpath (spark-defaults.conf spark.jars) and use "
                               "FLYWHEEL_SPARK_DELTA=auto, or FLYWHEEL_SPARK_DELTA=off to commit with delta-rs") from exc
    return b.getOrCreate()


def has_delta(spark: SparkSession) -> bool:
    try:
        # through Spark's loader: jars added by spark.jars are not on the JVM's system classpath
        spark._jvm.org.apache.spark.util.Utils.classForName(DELTA_CLASS, True, False)  # type: ignore[union-attr]
        return True
    except Exception:  # py4j raises Py4JJavaError(ClassNotFoundException): no delta-spark on the classpath
        return False


def _ipc(t: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)
    return sink.getvalue().to_pybytes()


def _unipc(b: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(b)).read_all()


def _envelope(part: int, items: dict[str, pa.Table]) -> pa.Table:
    return pa.table({"part": pa.array([part] * len(items), pa.int64()), "name": list(items),
                     "data": pa.array([_ipc(t) for t in items.values()], pa.binary())})


def _packer(name: str, table: Table | None):  # noqa: ANN202 (a Spark UDF)
    """Rows of one part -> one envelope row; typed back to the lake schema, sorted by key."""

    def pack(group: pa.Table) -> pa.Table:
        part = group.column("part")[0].as_py()
        if table is None:  # the part's clip ids, in clip order
            rows = group.sort_by("pos").select(["clip_id"])
        else:
            rows = io.conform(table, group)
            rows = rows.sort_by([(k, "ascending") for k in table.key]) if table.key else rows
        return _envelope(part, {name: rows})

    return pack


def _runner(fn: PartFn, ctx: object, inputs: dict[str, Table], outputs: dict[str, pa.Schema]):  # noqa: ANN202
    """One part's envelope rows -> the part function's outputs as envelope rows (on an executor)."""

    def run(group: pa.Table) -> pa.Table:
        part = group.column("part")[0].as_py()
        blobs = dict(zip(group.column("name").to_pylist(), group.column("data").to_pylist(), strict=True))
        clip_ids = _unipc(blobs[CLIPS]).column("clip_id").to_pylist()
        data = {k: _unipc(blobs[k]) if k in blobs else t.schema.empty_table() for k, t in inputs.items()}
        out = fn(ctx, clip_ids, data)
        return _envelope(part, {k: conform_output(k, out[k], s) for k, s in outputs.items()})

    return run


class SparkEngine:
    name = "spark"

    def __init__(self, settings: SparkSettings | None = None) -> None:
        self.settings = settings or SparkSettings()
        self._spark: SparkSession | None = None
        self._delta = False

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            self._spark = start_session(self.settings)
            self._delta = self.settings.delta != "off" and has_delta(self._spark)
            log.info("spark engine: %s", self.describe())
        return self._spark

    def stop(self) -> None:
        """End the Spark session (and its JVM's work) if one was started."""
        if self._spark is not None:
            self._spark.stop()
            self._spark = None

    @property
    def delta_spark(self) -> bool:
        """Whether reads and commits go through delta-spark (else delta-rs commits Spark's results)."""
        _ = self.spark
        return self._delta

    @property
    def parallelism(self) -> int:
        return int(self.spark.sparkContext.defaultParallelism)

    def describe(self) -> str:
        where = f"spark {self.settings.master} ({self.parallelism} cores)"
        if self.delta_spark:
            return f"{where}; reads and commits through delta-spark"
        why = ("FLYWHEEL_SPARK_DELTA=off" if self.settings.delta == "off"
               else f"the delta-spark jar ({delta_package()}) is neither in {self.settings.jars_dir or PROJECT_JARS} "
               "(make setup fetches it) nor on the classpath")
        return f"{where}; computed with Spark, committed through the embedded Delta writer (delta-rs): {why}"

    def _frame(self, root: str, inp: Input) -> DataFrame:
        if self.delta_spark:
            where = {"chunk": inp.chunk, **inp.where}
            return self.spark.read.format("delta").load(io.table_uri(root, inp.table)).where(io.predicate(where))
        data = io.read(root, inp.table, chunk=inp.chunk, where=inp.where or None)
        return self.spark.createDataFrame(data, schema=_spark_schema(inp.table.schema) if not data.num_rows else None)

    def map_parts(self, fn: PartFn, ctx: object, clip_ids: list[str], inputs: dict[str, Input],
                  outputs: dict[str, pa.Schema], *, root: str) -> dict[str, pa.Table]:
        if not clip_ids:
            return {k: s.empty_table() for k, s in outputs.items()}
        from pyspark.sql import functions as F

        n = max(1, min(len(clip_ids), self.parallelism * self.settings.parts_per_core))
        parts = self.spark.createDataFrame(pa.table({
            "clip_id": pa.array(clip_ids, pa.string()), "pos": pa.array(range(len(clip_ids)), pa.int64()),
            "part": pa.array([i * n // len(clip_ids) for i in range(len(clip_ids))], pa.int64())}))
        packed = [parts.groupBy("part").applyInArrow(_packer(CLIPS, None), ENVELOPE)]
        for name, inp in inputs.items():
            rows = self._frame(root, inp).join(F.broadcast(parts.drop("pos")), "clip_id")
            packed.append(rows.groupBy("part").applyInArrow(_packer(name, inp.table), ENVELOPE))
        envelopes = reduce(lambda a, b: a.unionByName(b), packed)
        run = _runner(fn, ctx, {k: i.table for k, i in inputs.items()}, outputs)
        result = envelopes.groupBy("part").applyInArrow(run, ENVELOPE).toArrow().sort_by("part")
        got: dict[str, list[pa.Table]] = {k: [] for k in outputs}
        for name, blob in zip(result.column("name").to_pylist(), result.column("data").to_pylist(), strict=True):
            got[name].append(_unipc(blob))
        return {k: pa.concat_tables(v).cast(outputs[k]) if v else outputs[k].empty_table() for k, v in got.items()}

    def overwrite_partition(self, root: str, table: Table, data: pa.Table, *, chunk: str | None = None,
                            extra: dict[str, str] | None = None) -> int:
        if not self.delta_spark:
            return io.overwrite_partition(root, table, data, chunk=chunk, extra=extra)
        data, where = io.checked_partition(table, data, chunk=chunk, extra=extra)
        uri = io.table_uri(root, table)
        df = self.spark.createDataFrame(data, schema=_spark_schema(table.schema) if not data.num_rows else None)
        (df.write.format("delta").mode("overwrite").option("replaceWhere", io.predicate(where))
         .partitionBy(*table.partition_by).save(uri))
        return int(io.version(root, table) or 0)


def _spark_schema(schema: pa.Schema):  # noqa: ANN202 (a pyspark StructType)
    """A Spark schema for an Arrow schema: Spark cannot infer one from an empty Arrow table."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)
