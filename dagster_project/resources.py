"""Dagster resources: the lake and the PAI source, configured like the environment contract."""


from functools import cache

import dagster as dg
import pyarrow as pa

from dagster_project.config import derived_config, to_dataclass
from engines import Engine, make_engine
from flywheel.settings import Settings
from labelers.registry import DEFAULT_LABELER
from lake import io
from lake.tables import Table
from transforms.source import Source
from transforms.twin.writer import TwinConfig


class LakeResource(dg.ConfigurableResource):
    """The Delta lakehouse root (embedded engine: delta-rs)."""

    root: str = "./lakehouse"

    def read(self, table: Table, *, chunk: str | None = None, where: dict[str, str] | None = None,
             columns: list[str] | None = None) -> pa.Table:
        return io.read(self.root, table, chunk=chunk, where=where, columns=columns)

    def overwrite_partition(self, table: Table, data: pa.Table, *, chunk: str | None = None,
                            extra: dict[str, str] | None = None) -> int:
        """Replace one partition through delta-rs. The chunk stages commit through their engine
        instead (engines/stage.py), which may be delta-spark on a cluster."""
        return io.overwrite_partition(self.root, table, data, chunk=chunk, extra=extra)


class EngineResource(dg.ConfigurableResource):
    """Where the per-clip work of index, fit, labels and shard encoding runs (engines/).

    `embedded`: this process, delta-rs. `spark`: Spark jobs on `spark_master`; reads and commits
    through delta-spark when its jars are in `spark_jars` (default: the project's .jars/delta-spark)
    or on the classpath (`spark_delta`: auto | packages | off).
    """

    kind: str = "embedded"
    spark_master: str = "local[2]"
    spark_delta: str = "auto"
    spark_jars: str = ""
    parts_per_core: int = 4

    def engine(self) -> Engine:
        return shared_engine(self.kind, self.spark_master, self.spark_delta, self.parts_per_core, self.spark_jars)


@cache
def shared_engine(kind: str, master: str, delta: str, parts_per_core: int, jars_dir: str = "") -> Engine:
    # one engine (one Spark session) per process: every step of an in-process run shares it
    if kind == "spark":
        return make_engine(kind, master=master, delta=delta, parts_per_core=parts_per_core, jars_dir=jars_dir)
    return make_engine(kind)


# the twin's size knobs, as transforms/twin/writer.py declares them (the rest follows from the labelers)
TwinKnobs = derived_config(TwinConfig, name="TwinKnobs", doc="The offline twin's size (source kind twin).",
                           exclude=("fps", "split", "other_cameras"))


class PAISourceResource(dg.ConfigurableResource):
    """Where chunks come from: `twin` (offline default), `mirror` or `hub`."""

    kind: str = "twin"
    mirror_dir: str = ""
    hf_revision: str = ""
    hf_cache: str = ""
    hf_token: str | None = None  # give it as dg.EnvVar("HF_TOKEN"): the UI then shows the name only
    twin_dir: str = "./data/twin"
    twin: TwinKnobs = TwinKnobs()  # type: ignore[valid-type]
    labelers: str = DEFAULT_LABELER  # comma-separated: the labelers chunks are fetched for (their features)

    def settings(self) -> Settings:
        return Settings(
            source=self.kind, mirror_dir=self.mirror_dir, hf_revision=self.hf_revision,  # type: ignore[arg-type]
            hf_cache=self.hf_cache, hf_token=self.hf_token or "", twin_dir=self.twin_dir,
            twin=to_dataclass(self.twin, TwinConfig),
            labelers=tuple(n.strip() for n in self.labelers.split(",") if n.strip()))

    def source(self) -> Source:
        return self.settings().make_source()


def resources_from_env(*, engine: str = "embedded") -> dict[str, dg.ConfigurableResource]:
    """Everything from the FLYWHEEL_* environment (see flywheel/settings.py); `engine` is the
    deployment's default when FLYWHEEL_ENGINE is not set."""
    s = Settings.from_env(engine=engine)
    import os

    return {
        "lake": LakeResource(root=s.lake),
        "engine": EngineResource(kind=s.engine, spark_master=s.spark_master, spark_delta=s.spark_delta,
                                 spark_jars=s.spark_jars),
        "source": PAISourceResource(
            kind=s.source, mirror_dir=s.mirror_dir, hf_revision=s.hf_revision, hf_cache=s.hf_cache,
            hf_token=dg.EnvVar("HF_TOKEN") if os.environ.get("HF_TOKEN") else None, twin_dir=s.twin_dir,
            twin=TwinKnobs(**{k: getattr(s.twin, k) for k in TwinKnobs.model_fields}), labelers=",".join(s.labelers)),
    }
