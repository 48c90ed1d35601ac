"""Reading and writing lake tables with delta-rs: idempotent per-partition replaces.

Reads go through delta-rs's own query engine (`QueryBuilder`) rather than
`DeltaTable.to_pyarrow_table()`: the latter's pyarrow dataset threads can abort the interpreter
at exit ("terminate called without an active exception", apache/arrow#34314), which turns a
green test run or Dagster step red after the work is done.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, QueryBuilder, write_deltalake
from deltalake.exceptions import CommitFailedError

from lake.tables import Table

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:\-]+$")
COMMIT_ATTEMPTS = 5  # concurrent writers (parallel check steps, overlapping runs) may race a commit


def table_uri(root: str | Path, table: Table) -> str:
    return f"{Path(root).resolve()}/{table.layer}/{table.name}"


def exists(root: str | Path, table: Table) -> bool:
    return DeltaTable.is_deltatable(table_uri(root, table))


def predicate(values: dict[str, str]) -> str:
    for col, val in values.items():
        # values end up inside SQL: allow only the shapes our keys have (chunk_0000, stage names)
        if not _SAFE_VALUE.match(val):
            raise ValueError(f"unsafe partition value {col}={val!r}: only letters, digits and _.:- are allowed")
    return " AND ".join(f"{col} = '{val}'" for col, val in values.items())


def conform(table: Table, data: pa.Table) -> pa.Table:
    """Select and cast `data` to the table's schema; fail naming the first offending column."""
    missing = [n for n in table.schema.names if n not in data.column_names]
    if missing:
        raise ValueError(f"{table.name}: data lacks columns {missing}; has {data.column_names}")
    cols = []
    for fld in table.schema:
        col = data.column(fld.name)
        if not fld.nullable and col.null_count:
            raise ValueError(f"{table.name}.{fld.name}: {col.null_count} nulls in a non-nullable column")
        try:
            cols.append(col.cast(fld.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"{table.name}.{fld.name}: cannot cast {col.type} to {fld.type}: {exc}") from exc
    return pa.Table.from_arrays(cols, schema=table.schema)


def overwrite_partition(
    root: str | Path, table: Table, data: pa.Table, *, chunk: str | None = None, extra: dict[str, str] | None = None
) -> int:
    """Replace the rows of one chunk (and, with `extra`, one sub-key such as a stage); idempotent.

    Tables not partitioned by chunk (training runs) name their partition in `extra` alone.
    Every row of `data` must belong to that partition, and the table's key must be unique, so a
    re-run of the same partition can never duplicate or leak rows into another one.
    Returns the Delta version written.
    """
    data, where = checked_partition(table, data, chunk=chunk, extra=extra)
    uri = table_uri(root, table)
    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            write_deltalake(uri, data, mode="overwrite", partition_by=list(table.partition_by) or None,
                            predicate=predicate(where))
            break
        except CommitFailedError:
            # another writer committed the same version first; our partition is disjoint from
            # theirs, so writing again on top of their commit is correct
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    return DeltaTable(uri).version()


def checked_partition(table: Table, data: pa.Table, *, chunk: str | None = None,
                      extra: dict[str, str] | None = None) -> tuple[pa.Table, dict[str, str]]:
    """`data` conformed to the table, checked to lie in the named partition with a unique key.

    Every writer (delta-rs here, delta-spark on a cluster) commits only what passed these checks.
    Returns the conformed data and the partition's column values.
    """
    where = {**({"chunk": chunk} if chunk is not None else {}), **(extra or {})}
    if not where:
        raise ValueError(f"{table.name}: name the partition to replace (chunk= or extra=)")
    data = conform(table, data)
    for col, val in where.items():
        if data.num_rows and not pc.all(pc.equal(data.column(col), val)).as_py():
            raise ValueError(f"{table.name}: rows with {col} != {val!r} passed to the {where} partition write")
    if table.key and data.num_rows:
        keys = data.select(list(table.key)).group_by(list(table.key)).aggregate([([], "count_all")])
        dup = keys.filter(pc.greater(keys.column("count_all"), 1))
        if dup.num_rows:
            raise ValueError(f"{table.name}: duplicate key {table.key} rows, e.g. {dup.slice(0, 1).to_pylist()}")
    return data, where


def read(
    root: str | Path, table: Table, *, chunk: str | None = None, where: dict[str, str] | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """Rows of a table (optionally one chunk / equality filters), in the table's schema, ordered by
    its key when the key is among the columns read.

    A table that was never written reads as empty, so a first run has nothing special to do.
    """
    filt = {**({"chunk": chunk} if chunk else {}), **(where or {})}
    schema = table.schema if columns is None else pa.schema([table.schema.field(c) for c in columns])
    if not exists(root, table):
        return schema.empty_table()
    cols = ", ".join(f'"{c}"' for c in schema.names)
    sql = f"SELECT {cols} FROM t" + (f" WHERE {predicate(filt)}" if filt else "")
    if table.key and set(table.key) <= set(schema.names):
        # a table's rows have no order of their own (the scan may read its files in parallel):
        # the key gives one, so a read is the same whatever files the last commits left
        sql += " ORDER BY " + ", ".join(f'"{c}"' for c in table.key)
    result = pa.table(QueryBuilder().register("t", DeltaTable(table_uri(root, table))).execute(sql).read_all())
    return result.cast(schema) if result.num_rows else schema.empty_table()


def version(root: str | Path, table: Table) -> int | None:
    return DeltaTable(table_uri(root, table)).version() if exists(root, table) else None
