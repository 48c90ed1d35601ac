"""Small helpers shared by the asset modules: metadata previews and the label set to read."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa

from dagster_project.resources import LakeResource
from lake import tables as T
from transforms.label_sets import LabelSet, label_set


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


def sheet(data: bytes | None, alt: str) -> dg.MarkdownMetadataValue:
    """A contact sheet (transforms.previews) inline, or why there is none."""
    return png(data, alt) if data else dg.MetadataValue.md("*(no camera frame could be decoded for a sheet)*")


def latest_labels(context: dg.AssetExecutionContext, lake: LakeResource, chunk: str, *, labeler: str = "",
                  labeler_version: str = "") -> LabelSet:
    """The chunk's label set to read: the one named, else the one its last commander_labels run wrote
    (this instance's record) where the lake holds several (transforms.label_sets.label_set)."""
    rows = lake.read(T.COMMANDER_LABELS, chunk=chunk, columns=["chunk", "labeler", "labeler_version"])
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("commander_labels"), asset_partitions=[chunk]), limit=1).records
    meta = records[0].asset_materialization.metadata if records and records[0].asset_materialization else {}
    prefer = (meta["labeler"].value, meta["labeler_version"].value) if "labeler" in meta else None
    pairs = [dict(zip(("chunk", "labeler", "labeler_version"), p, strict=True)) for p in
             {(r["chunk"], r["labeler"], r["labeler_version"]) for r in rows.to_pylist()}]
    try:
        return label_set(pairs, labeler=labeler, labeler_version=labeler_version, prefer=prefer,  # type: ignore[arg-type]
                         what=f"commander_labels[{chunk}]", hint="materialize commander_labels for it first")
    except ValueError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
