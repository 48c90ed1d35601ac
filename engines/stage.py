"""A chunk stage, described once, and the one way it runs: parts mapped by the engine, then commits.

A `ChunkStage` names a part function (engines/__init__.py), the lake tables its parts read (by the
key the part function reads them under) and the tables its outputs replace for the chunk, in commit
order. `run_stage` is the wiring every chunk stage shares: map the parts over the chunk's clips on
the engine, then commit each output through the same engine, so no caller picks a writer. The
Dagster asset factory (dagster_project/stages.py) and the benchmark's lake build both run stages
through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from engines import Engine, Input, PartFn
from lake.tables import QUARANTINE, Table


@dataclass(frozen=True)
class ChunkStage:
    name: str  # the asset, and the `stage` of its quarantine rows
    part: PartFn
    reads: Mapping[str, Table]  # the part's input key -> the table read for the chunk
    writes: tuple[tuple[str, Table], ...]  # (part output, the table it replaces for the chunk), in commit order

    def __post_init__(self) -> None:
        outputs = [o for o, _ in self.writes]
        if len(set(outputs)) != len(outputs):
            raise ValueError(f"stage {self.name}: outputs {outputs} repeat")

    @property
    def outputs(self) -> dict[str, pa.Schema]:
        return {o: t.schema for o, t in self.writes}

    @property
    def tables(self) -> tuple[Table, ...]:
        """The tables it writes, in commit order (the data-QA checks hang on them)."""
        return tuple(t for _, t in self.writes)


@dataclass(frozen=True)
class StageRun:
    outputs: dict[str, pa.Table]  # by part output
    versions: dict[str, int]  # Delta version committed, by table name

    @property
    def quarantine(self) -> pa.Table:
        return self.outputs.get("quarantine", QUARANTINE.schema.empty_table())


@dataclass(frozen=True)
class StageJob:
    """One chunk's run of a stage: the plan its parts get, its clips, and per-run keys."""

    plan: object
    clip_ids: list[str]
    extra: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # output -> partition keys beyond chunk


def run_stage(engine: Engine, stage: ChunkStage, job: StageJob, *, chunk: str, root: str) -> StageRun:
    """Map the stage's parts over the chunk's clips, then commit every output (the stage's order)."""
    inputs = {key: Input(table, chunk) for key, table in stage.reads.items()}
    out = engine.map_parts(stage.part, job.plan, sorted(job.clip_ids), inputs, stage.outputs, root=root)
    versions = {}
    for name, table in stage.writes:
        extra = dict(job.extra.get(name, {}))
        if table is QUARANTINE:  # every stage replaces its own quarantine rows of the chunk, never another's
            extra.setdefault("stage", stage.name)
        versions[table.name] = engine.overwrite_partition(root, table, out[name], chunk=chunk, extra=extra or None)
    return StageRun(out, versions)
