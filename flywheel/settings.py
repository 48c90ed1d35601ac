"""The configuration contract, read from the environment (tests, schedules, scripts, the CLI).

Every variable, its default and meaning: ENV_VARS below (`flywheel --help` prints them).

The Dagster resources take the same settings as config (dagster_project/resources.py).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Literal

from engines import ENGINE_KINDS
from engines.spark import DELTA_MODES
from labelers.registry import DEFAULT_LABELER, LABELERS, features_for
from transforms import pai_layout as L
from transforms.source import HubSource, Source, TwinSource, mirror_source
from transforms.twin.writer import TwinConfig

ENV_VARS: tuple[tuple[str, str, str], ...] = (  # (variable, default, meaning)
    ("DAGSTER_HOME", "./.dagster_home (make)", "Dagster's instance: runs, partitions, schedules (the CLI needs it set)"),
    ("FLYWHEEL_DEPLOYMENT", "local", "local: twin source, embedded lake; cluster: hub or mirror source, Spark engine"),
    ('FLYWHEEL_LAKE', './lakehouse', 'lake root (Delta tables under bronze/, silver/, gold/, eval/, qa/)'),
    ('FLYWHEEL_SOURCE', 'twin', 'twin, mirror or hub'),
    ('FLYWHEEL_MIRROR_DIR', '', 'a PAI-layout directory or an HF cache holding the dataset (mirror)'),
    ('FLYWHEEL_HF_REVISION', '', 'dataset commit sha (hub; mirror when it is an HF cache)'),
    ('FLYWHEEL_HF_CACHE', "huggingface_hub's default", 'HF cache directory for the hub source'),
    ('HF_TOKEN', '', 'hub token; never logged, never written to metadata or files'),
    ('FLYWHEEL_TWIN_DIR', './data/twin', 'where the twin writes its dataset'),
    ('FLYWHEEL_TWIN_{CHUNKS,CLIPS,SEED,WIDTH,HEIGHT,SECONDS}', "TwinConfig's (transforms/twin/writer.py)", 'twin size'),
    ('FLYWHEEL_LABELERS', 'kinematic', 'labelers to fetch chunks for (comma list): the features they read are fetched'),
    ('FLYWHEEL_ENGINE', 'embedded', 'where index, fit, labels and shard encoding run: embedded or spark'),
    ('FLYWHEEL_SPARK_MASTER', 'local[2]', 'the Spark master (spark://host:7077, yarn, k8s://..., local[N])'),
    ('FLYWHEEL_SPARK_DELTA', 'auto', 'auto: delta-spark if its jars are in FLYWHEEL_SPARK_JARS or on the classpath, '
     'else delta-rs; packages: delta-spark from Maven; off: delta-rs'),
    ('FLYWHEEL_SPARK_JARS', './.jars/delta-spark', 'the pinned delta-spark jars (`make setup` fetches them there)'),
    ("FLYWHEEL_RETRAIN_MIN_WINDOWS", "200", "new training windows since the last run that make the flywheel_turn sensor retrain"),
    ("FLYWHEEL_BACKFILL_CRON", "0 * * * *", "when the incremental_backfill schedule ticks (cron, UTC)"),
    ("FLYWHEEL_DISCOVERY_INTERVAL_S", "300", "seconds between the new_chunks sensor's looks at the source"),
)

SourceKind = Literal["twin", "mirror", "hub"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("twin", "mirror", "hub")
# FLYWHEEL_TWIN_<VAR> sets TwinConfig.<field>; unset, the field keeps TwinConfig's default
TWIN_VARS = {"CHUNKS": "chunks", "CLIPS": "clips_per_chunk", "SEED": "seed", "WIDTH": "width", "HEIGHT": "height",
             "SECONDS": "seconds"}


def _num[N: (int, float)](name: str, default: N, cast: type[N]) -> N:
    raw = os.environ.get(name, "")
    try:
        return cast(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not {'an integer' if cast is int else 'a number'}") from None


@dataclass(frozen=True)
class Settings:
    lake: str = "./lakehouse"
    source: SourceKind = "twin"
    mirror_dir: str = ""
    hf_revision: str = ""
    hf_cache: str = ""
    hf_token: str = field(default="", repr=False)
    twin_dir: str = "./data/twin"
    twin: TwinConfig = field(default_factory=TwinConfig)
    engine: str = "embedded"
    spark_master: str = "local[2]"
    spark_delta: str = "auto"
    spark_jars: str = ""  # empty: the project's .jars/delta-spark
    labelers: tuple[str, ...] = (DEFAULT_LABELER,)
    # the flywheel_turn sensor retrains once this many training windows arrived since the last run
    retrain_min_windows: int = 200
    # when the incremental_backfill schedule ticks, and how often new_chunks looks at the source
    backfill_cron: str = "0 * * * *"
    discovery_interval_s: int = 300

    def __post_init__(self) -> None:
        for name in self.labelers:
            if name not in LABELERS:
                raise ValueError(f"FLYWHEEL_LABELERS names {name!r}: choose among {', '.join(LABELERS)}")
        if self.engine not in ENGINE_KINDS:
            raise ValueError(f"FLYWHEEL_ENGINE={self.engine!r}: choose one of {', '.join(ENGINE_KINDS)}")
        if self.spark_delta not in DELTA_MODES:
            raise ValueError(f"FLYWHEEL_SPARK_DELTA={self.spark_delta!r}: choose one of {', '.join(DELTA_MODES)}")
        if self.source not in SOURCE_KINDS:
            raise ValueError(f"FLYWHEEL_SOURCE={self.source!r}: choose one of {', '.join(SOURCE_KINDS)}")
        if self.retrain_min_windows < 1:
            raise ValueError(f"FLYWHEEL_RETRAIN_MIN_WINDOWS={self.retrain_min_windows}: must be >= 1")
        if len(self.backfill_cron.split()) != 5:  # the fields themselves Dagster's schedule checks
            raise ValueError(f"FLYWHEEL_BACKFILL_CRON={self.backfill_cron!r} is not a cron schedule: five fields, "
                             "e.g. '0 * * * *' (hourly) or '*/10 * * * *'")
        if self.discovery_interval_s < 1:
            raise ValueError(f"FLYWHEEL_DISCOVERY_INTERVAL_S={self.discovery_interval_s}: must be >= 1")
        if self.source == "mirror" and not self.mirror_dir:
            raise ValueError("FLYWHEEL_SOURCE=mirror needs FLYWHEEL_MIRROR_DIR (a PAI-layout directory or HF cache)")

    @classmethod
    def from_env(cls, *, engine: str = "embedded") -> Settings:
        """`engine` is the deployment's default, used when FLYWHEEL_ENGINE is not set."""
        e = os.environ.get
        return cls(
            lake=e("FLYWHEEL_LAKE") or "./lakehouse",
            source=(e("FLYWHEEL_SOURCE") or "twin").strip().lower(),  # type: ignore[arg-type]
            mirror_dir=e("FLYWHEEL_MIRROR_DIR", ""),
            hf_revision=e("FLYWHEEL_HF_REVISION", ""),
            hf_cache=e("FLYWHEEL_HF_CACHE", ""),
            hf_token=e("HF_TOKEN", ""),
            twin_dir=e("FLYWHEEL_TWIN_DIR") or "./data/twin",
            twin=TwinConfig(**{field: _num(f"FLYWHEEL_TWIN_{var}", getattr(TwinConfig, field), type(getattr(TwinConfig, field)))
                               for var, field in TWIN_VARS.items()}),
            engine=(e("FLYWHEEL_ENGINE") or engine).strip().lower(),
            spark_master=e("FLYWHEEL_SPARK_MASTER") or "local[2]",
            spark_delta=(e("FLYWHEEL_SPARK_DELTA") or "auto").strip().lower(),
            spark_jars=e("FLYWHEEL_SPARK_JARS", ""),
            labelers=tuple(n.strip().lower() for n in (e("FLYWHEEL_LABELERS") or DEFAULT_LABELER).split(",") if n.strip()),
            retrain_min_windows=_num("FLYWHEEL_RETRAIN_MIN_WINDOWS", 200, int),
            backfill_cron=(e("FLYWHEEL_BACKFILL_CRON") or "0 * * * *").strip(),
            discovery_interval_s=_num("FLYWHEEL_DISCOVERY_INTERVAL_S", 300, int),
        )

    def features(self) -> tuple[str, ...]:
        """The PAI features every chunk is fetched with: what the configured labelers read."""
        return features_for(self.labelers)

    def make_source(self) -> Source:
        if self.source == "twin":
            cameras = tuple(f for f in self.features() if f in L.CAMERAS and f != L.FRONT_CAMERA)
            return TwinSource(self.twin_dir, dataclasses.replace(self.twin, other_cameras=cameras))
        if self.source == "mirror":
            return mirror_source(self.mirror_dir, self.hf_revision or None)
        return HubSource(self.hf_revision, token=self.hf_token or None, cache_dir=self.hf_cache or None)
