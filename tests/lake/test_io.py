"""Lake I/O: typed, idempotent partition replaces that never touch another partition."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from lake import io
from lake.tables import CLIPS, QUARANTINE


def _q(chunk: str, n: int, stage: str = "clip_index") -> pa.Table:
    return pa.table({"chunk": [chunk] * n, "clip_id": [f"c{i}" for i in range(n)], "stage": [stage] * n,
                     "kind": ["k"] * n, "reason": ["r"] * n})


def test_overwrite_partition_is_idempotent(tmp_path: Path) -> None:
    for _ in range(3):
        io.overwrite_partition(tmp_path, QUARANTINE, _q("chunk_0000", 5), chunk="chunk_0000")
    io.overwrite_partition(tmp_path, QUARANTINE, _q("chunk_0001", 2), chunk="chunk_0001")
    assert io.read(tmp_path, QUARANTINE).num_rows == 7
    io.overwrite_partition(tmp_path, QUARANTINE, _q("chunk_0000", 1), chunk="chunk_0000")
    assert io.read(tmp_path, QUARANTINE, chunk="chunk_0000").num_rows == 1
    assert io.read(tmp_path, QUARANTINE, chunk="chunk_0001").num_rows == 2  # untouched


def test_sub_key_replace_keeps_other_stages(tmp_path: Path) -> None:
    io.overwrite_partition(tmp_path, QUARANTINE, _q("chunk_0000", 3, "a"), chunk="chunk_0000", extra={"stage": "a"})
    io.overwrite_partition(tmp_path, QUARANTINE, _q("chunk_0000", 2, "b"), chunk="chunk_0000", extra={"stage": "b"})
    io.overwrite_partition(tmp_path, QUARANTINE, _q("chunk_0000", 0, "a"), chunk="chunk_0000", extra={"stage": "a"})
    assert io.read(tmp_path, QUARANTINE).column("stage").to_pylist() == ["b", "b"]


def test_rows_of_another_partition_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rows with chunk != 'chunk_0001'"):
        io.overwrite_partition(tmp_path, QUARANTINE, _q("chunk_0000", 1), chunk="chunk_0001")


def test_duplicate_keys_and_missing_columns_are_refused(tmp_path: Path) -> None:
    rows = {"chunk": ["chunk_0000"] * 2, "clip_id": ["a", "a"], "status": ["ok", "ok"]}
    full = pa.table({n: rows.get(n, [None, None]) for n in CLIPS.schema.names})
    with pytest.raises(ValueError, match="duplicate key"):
        io.overwrite_partition(tmp_path, CLIPS, full, chunk="chunk_0000")
    with pytest.raises(ValueError, match="lacks columns"):
        io.overwrite_partition(tmp_path, CLIPS, pa.table(rows), chunk="chunk_0000")


def test_unsafe_partition_value_is_refused(tmp_path: Path) -> None:
    io.overwrite_partition(tmp_path, QUARANTINE, _q("chunk_0000", 1), chunk="chunk_0000")
    with pytest.raises(ValueError, match="unsafe partition value"):
        io.read(tmp_path, QUARANTINE, chunk="x' OR '1'='1")


def test_never_written_table_reads_empty_with_schema(tmp_path: Path) -> None:
    t = io.read(tmp_path, CLIPS)
    assert t.num_rows == 0 and t.schema == CLIPS.schema
