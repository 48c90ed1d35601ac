"""Small helpers for asset metadata (previews), shared by the asset modules."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa


def preview(table: pa.Table, n: int = 5, columns: list[str] | None = None) -> dg.MarkdownMetadataValue:
    """The first rows of a table as a markdown table (floats shortened)."""
    t = table.select(columns) if columns else table
    rows = t.slice(0, n).to_pylist()
    if not rows:
        return dg.MetadataValue.md("*(no rows)*")

    def fmt(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(t.column_names) + " |\n|" + "---|" * len(t.column_names) + "\n"
    return dg.MetadataValue.md(head + "\n".join("| " + " | ".join(fmt(r[c]) for c in t.column_names) + " |"
                                                for r in rows))


def png(data: bytes, alt: str = "figure") -> dg.MarkdownMetadataValue:
    """A PNG shown inline in the Dagster UI (markdown with a data URI)."""
    import base64

    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode()})")


def quarantine_rows(chunk: str, stage: str, rows: list[tuple[str, str, str]]) -> pa.Table:
    """`quarantine` rows (clip_id, kind, reason) of one chunk and stage."""
    return pa.table({"chunk": [chunk] * len(rows), "clip_id": [r[0] for r in rows], "stage": [stage] * len(rows),
                     "kind": [r[1] for r in rows], "reason": [r[2] for r in rows]})
