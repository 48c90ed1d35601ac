"""Gold: WebDataset shards of the training windows, and their manifest."""

from dataclasses import replace
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from dagster_project.assets._meta import latest_labels, preview, sheet
from dagster_project.config import derived_config, to_dataclass
from dagster_project.partitions import POOL_DECODE, chunks
from dagster_project.resources import EngineResource, LakeResource
from engines import Input
from lake import tables as T
from lake.tables import quarantine_rows, window_reason
from transforms.pai_layout import chunk_id_of
from transforms.previews import shard_sheet
from transforms.shards import (
    SHARD_PART_OUTPUTS,
    ChunkExport,
    ShardConfig,
    ShardsPlan,
    export_chunk,
    parted_encoder,
    publish_chunk,
    shards_part,
)
from transforms.source import chunk_files_from_manifest

STAGE = "webdataset_shards"


ShardExportConfig = derived_config(
    ShardConfig, name="ShardExportConfig", doc="The shard export: transforms/shards.py declares every field (ShardConfig).")


@dg.asset(partitions_def=chunks, group_name="shards", kinds={"delta", "webdataset"}, pool=POOL_DECODE,
          deps=["unicycle_targets", "commander_labels", "frames"])
def webdataset_shards(context: dg.AssetExecutionContext, config: ShardExportConfig,
                      lake: LakeResource, engine: EngineResource) -> dg.MaterializeResult:
    """Image + command + state + (a, κ) targets per window, in tar shards that stream at disk speed."""
    key = context.partition_key
    cfg = to_dataclass(config, ShardConfig)
    labels = latest_labels(context, lake, key, labeler=cfg.labeler, labeler_version=cfg.labeler_version)
    cfg = replace(cfg, labeler=labels[0], labeler_version=labels[1])
    context.log.info(f"{key}: exporting the {labels[0]} {labels[1]} labels")
    bronze = lake.read(T.CHUNKS, chunk=key)
    files = chunk_files_from_manifest(bronze, chunk_id_of(key))
    eng = engine.engine()
    context.log.info(f"engine: {eng.describe()}")
    label_version = {"labeler": cfg.labeler, "labeler_version": cfg.labeler_version}
    inputs = {"targets": Input(T.UNICYCLE_TARGETS, key), "labels": Input(T.COMMANDER_LABELS, key, label_version),
              "egomotion": Input(T.EGOMOTION, key)}

    def map_parts(plan: ShardsPlan, clip_ids: list[str]) -> dict[str, pa.Table]:
        return eng.map_parts(shards_part, plan, clip_ids, inputs, SHARD_PART_OUTPUTS, root=lake.root)

    # the gate is in the data: a clip quarantined since its targets were made is not exported
    usable = lake.read(T.CLIPS, chunk=key, where={"status": "ok"}, columns=["clip_id"]).column("clip_id")
    targets = lake.read(T.UNICYCLE_TARGETS, chunk=key)
    targets = targets.filter(pc.is_in(targets.column("clip_id"), usable))
    out_root = Path(lake.root) / "shards"

    def export(previous: list[dict]) -> ChunkExport:
        # Embedded, samples are encoded while the tars are written (flat memory, clips decoded ahead);
        # on Spark the executors encode them. Either way the tars are cut and written here, in order.
        return export_chunk(
            files, chunk=key, cfg=cfg, out_root=out_root,
            encode=None if eng.name == "embedded" else parted_encoder(map_parts, files, cfg, chunk=key),
            targets=targets, egomotion=lake.read(T.EGOMOTION, chunk=key),
            labels=lake.read(T.COMMANDER_LABELS, chunk=key, where=label_version),
            file_sha256=dict(zip(bronze.column("feature").to_pylist(), bronze.column("sha256").to_pylist(), strict=True)),
            previous=previous)

    def commit(rows: list[dict]) -> int:
        return eng.overwrite_partition(lake.root, T.SHARD_MANIFEST,
                                       pa.Table.from_pylist(rows, schema=T.SHARD_MANIFEST.schema), chunk=key)

    pub = publish_chunk(out_root, key, previous=lambda: lake.read(T.SHARD_MANIFEST, chunk=key).to_pylist(),
                        export=export, commit=commit)
    out, res, delta_version = pub.export, pub.export.result, pub.delta_version
    manifest = pa.Table.from_pylist(out.manifest, schema=T.SHARD_MANIFEST.schema)
    if pub.removed:
        context.log.info(f"{key}: removed {len(pub.removed)} shard files the manifest no longer lists (a "
                            f"killed export's, or the generation replaced), e.g. {pub.removed[0]}")
    if res.written or not res.skipped:  # a full resume decoded nothing new: keep its quarantine rows
        q = [(c, "unusable_window", window_reason(t, r)) for c, t, r in res.quarantined]
        eng.overwrite_partition(lake.root, T.QUARANTINE, quarantine_rows(key, STAGE, q), chunk=key, extra={"stage": STAGE})
    for c, t, r in res.quarantined:
        context.log.warning(f"{key}: window {c} t0={t / 1e6:.1f} s left out of the shards: {r}")
    by_split = {s: sum(r.samples for r in res.shards if r.split == s) for s in sorted({r.split for r in res.shards})}
    train = [str(out_root / r.path) for r in res.shards if r.split == "train"] or [str(out_root / r.path) for r in res.shards]
    return dg.MaterializeResult(metadata={
        "contact_sheet": sheet(shard_sheet(train, f"{key}: training samples as the agent sees them"), "shard samples"),
        "dataset_version": out.version, "shards": len(res.shards), "shards_written": res.written,
        "shards_skipped": res.skipped, "samples": sum(r.samples for r in res.shards), "samples_by_split": by_split,
        "bytes": sum(r.bytes for r in res.shards), "windows_quarantined": len(res.quarantined),
        "frames_decoded": res.frames_decoded, "shard_root": str(out_root),
        "files_removed": len(pub.removed),
        "delta_version": delta_version, "preview": preview(manifest, 10, ["path", "split", "samples", "bytes", "sha256"]),
    })
