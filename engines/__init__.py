"""Where the per-clip work of the heavy stages runs: in this process (`embedded`) or on Spark.

Every heavy stage (index, unicycle fit, labels, shard encoding) is written once, as a *part
function* in transforms/ or labelers/:

    fn(ctx, clip_ids, inputs) -> {output name: pa.Table}

`ctx` is a small picklable record planned on the driver, `clip_ids` the clips of this part and
`inputs` the rows of lake tables that belong to those clips. A part function's output for a set
of clips is the concatenation of its outputs for any split of that set, in order; that is the
whole contract. The embedded engine calls it once with every clip; the Spark engine splits the
clips into parts and calls it on executors (engines/spark.py). So no transform exists twice, and
tests/engines checks that the two engines write the same tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from lake import io
from lake.tables import Table

EngineKind = Literal["embedded", "spark"]
ENGINE_KINDS: tuple[EngineKind, ...] = ("embedded", "spark")
PartFn = Callable[[Any, list[str], dict[str, pa.Table]], dict[str, pa.Table]]


@dataclass(frozen=True)
class Input:
    """Rows of a lake table for one chunk (and equality filters), handed to parts by clip_id."""

    table: Table
    chunk: str
    where: dict[str, str] = field(default_factory=dict)


class Engine(Protocol):
    name: str

    def describe(self) -> str: ...

    def map_parts(self, fn: PartFn, ctx: object, clip_ids: list[str], inputs: dict[str, Input],
                  outputs: dict[str, pa.Schema], *, root: str) -> dict[str, pa.Table]: ...

    def overwrite_partition(self, root: str, table: Table, data: pa.Table, *, chunk: str | None = None,
                            extra: dict[str, str] | None = None) -> int: ...


def rows_of(data: pa.Table, clip_ids: list[str]) -> pa.Table:
    """The rows of `data` whose clip_id is one of `clip_ids` (all of them when every clip is asked)."""
    return data.filter(pc.is_in(data.column("clip_id"), pa.array(clip_ids, pa.string())))


def conform_output(name: str, data: pa.Table, schema: pa.Schema) -> pa.Table:
    """A part's output in its declared schema, or an error naming the output and the columns."""
    if data.schema.names != schema.names:
        raise ValueError(f"part output {name!r} has columns {data.schema.names}; declared {schema.names}")
    return data.cast(schema)


class EmbeddedEngine:
    """One machine: delta-rs reads and writes, the part function called once with every clip."""

    name = "embedded"

    def describe(self) -> str:
        return "embedded (delta-rs, this process)"

    def map_parts(self, fn: PartFn, ctx: object, clip_ids: list[str], inputs: dict[str, Input],
                  outputs: dict[str, pa.Schema], *, root: str) -> dict[str, pa.Table]:
        data = {k: rows_of(io.read(root, i.table, chunk=i.chunk, where=i.where or None), clip_ids)
                for k, i in inputs.items()}
        out = fn(ctx, list(clip_ids), data)
        return {k: conform_output(k, out[k], s) for k, s in outputs.items()}

    def overwrite_partition(self, root: str, table: Table, data: pa.Table, *, chunk: str | None = None,
                            extra: dict[str, str] | None = None) -> int:
        return io.overwrite_partition(root, table, data, chunk=chunk, extra=extra)


def make_engine(kind: str, **spark: object) -> Engine:
    """`embedded` or `spark` (keyword arguments: engines.spark.SparkSettings fields)."""
    if kind == "embedded":
        return EmbeddedEngine()
    if kind == "spark":
        from engines.spark import SparkEngine, SparkSettings

        return SparkEngine(SparkSettings(**spark))  # type: ignore[arg-type]
    raise ValueError(f"engine {kind!r}: choose one of {', '.join(ENGINE_KINDS)} (FLYWHEEL_ENGINE)")
