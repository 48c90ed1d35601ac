"""Gold: WebDataset shards of the training windows, and their manifest."""

import json
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pyarrow as pa

from dagster_project.assets._meta import preview, quarantine_rows
from dagster_project.partitions import chunks
from dagster_project.resources import LakeResource
from lake import tables as T
from transforms import pai_layout as L
from transforms.pai_layout import chunk_id_of
from transforms.shards import ShardConfig, ShardRecord, dataset_version, export_shards, table_digest, windows_for_chunk
from transforms.source import chunk_files_from_manifest

STAGE = "webdataset_shards"


class ShardExportConfig(dg.Config):
    image_width: int = 256
    image_height: int = 144
    jpeg_quality: int = 90
    history_frames: int = 0  # 0..3 extra frames before t0, 0.1 s apart
    max_count: int = 1000  # samples per shard
    max_bytes: int = 256 * 2**20
    labeler: str = "kinematic"  # which labels to export: a labeler ...
    labeler_version: str = "1.0"  # ... and its version


@dg.asset(partitions_def=chunks, group_name="shards", kinds={"delta", "webdataset"},
          deps=["unicycle_targets", "commander_labels", "frames"])
def webdataset_shards(context: dg.AssetExecutionContext, config: ShardExportConfig,
                      lake: LakeResource) -> dg.MaterializeResult:
    """Image + command + state + (a, κ) targets per window, in tar shards that stream at disk speed."""
    key = context.partition_key
    cfg = ShardConfig(**config.model_dump())
    bronze = lake.read(T.CHUNKS, chunk=key)
    files = chunk_files_from_manifest(bronze, chunk_id_of(key))
    targets = lake.read(T.UNICYCLE_TARGETS, chunk=key)
    labels = lake.read(T.COMMANDER_LABELS, chunk=key,
                       where={"labeler": cfg.labeler, "labeler_version": cfg.labeler_version})
    if labels.num_rows == 0:
        raise ValueError(f"{key}: no commander_labels of {cfg.labeler} {cfg.labeler_version}; materialize "
                         "commander_labels with that labeler first, or set labeler/labeler_version to one that exists")
    windows = windows_for_chunk(targets, labels, lake.read(T.EGOMOTION, chunk=key), chunk=key)
    sha = dict(zip(bronze.column("feature").to_pylist(), bronze.column("sha256").to_pylist(), strict=True))
    version = dataset_version(cfg, chunk=key, inputs={
        "camera": sha[L.FRONT_CAMERA], "egomotion": sha[L.EGOMOTION],
        "targets": table_digest(targets, ["clip_id", "t0_us", "accel_norm", "curvature_norm"], ["clip_id", "t0_us"]),
        "labels": table_digest(labels, ["clip_id", "t0_us", "command", "trace"], ["clip_id", "t0_us"])})
    root = Path(lake.root) / "shards"
    old = lake.read(T.SHARD_MANIFEST, chunk=key).to_pylist()
    done = {r["path"]: ShardRecord(r["path"], r["split"], r["samples"], r["bytes"], r["sha256"], r["first_key"],
                                   r["last_key"]) for r in old if r["dataset_version"] == version}
    res = export_shards(files, windows, root, cfg, chunk=key, done=done)
    for stale in {r["path"] for r in old} - {s.path for s in res.shards}:  # an older export had more shards
        (root / stale).unlink(missing_ok=True)
    rows = [{**asdict(s), "chunk": key, "dataset_version": version, "labeler": cfg.labeler,
             "labeler_version": cfg.labeler_version, "config": json.dumps(asdict(cfg), sort_keys=True)} for s in res.shards]
    manifest = pa.Table.from_pylist(rows, schema=T.SHARD_MANIFEST.schema) if rows else T.SHARD_MANIFEST.schema.empty_table()
    delta_version = lake.overwrite_partition(T.SHARD_MANIFEST, manifest, chunk=key)
    if res.written or not res.skipped:  # a full resume decoded nothing new: keep its quarantine rows
        q = [(c, "unusable_window", f"t0={t / 1e6:.1f} s: {r}") for c, t, r in res.quarantined]
        lake.overwrite_partition(T.QUARANTINE, quarantine_rows(key, STAGE, q), chunk=key, extra={"stage": STAGE})
    for c, t, r in res.quarantined:
        context.log.warning(f"{key}: window {c} t0={t / 1e6:.1f} s left out of the shards: {r}")
    by_split = {s: sum(r.samples for r in res.shards if r.split == s) for s in sorted({r.split for r in res.shards})}
    return dg.MaterializeResult(metadata={
        "dataset_version": version, "shards": len(res.shards), "shards_written": res.written,
        "shards_skipped": res.skipped, "samples": sum(r.samples for r in res.shards), "samples_by_split": by_split,
        "bytes": sum(r.bytes for r in res.shards), "windows_quarantined": len(res.quarantined),
        "frames_decoded": res.frames_decoded, "shard_root": str(root), "delta_version": delta_version,
        "preview": preview(manifest, 10, ["path", "split", "samples", "bytes", "sha256"]),
    })
