"""Bronze and silver assets: fetch a chunk (raw_chunks), then index it (clip_index, egomotion, frames)."""


import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from dagster_project.assets._meta import preview, sheet
from dagster_project.partitions import POOL_DECODE, POOL_DOWNLOAD, chunks
from dagster_project.resources import EngineResource, LakeResource, PAISourceResource
from lake import tables as T
from lake.faults import crash_point
from transforms.index import PART_OUTPUTS, STAGE, assemble_index, index_part, plan_index
from transforms.pai_layout import chunk_id_of
from transforms.previews import chunk_sheet, frame_picks
from transforms.source import chunk_files_from_manifest, chunk_manifest, is_transient


@dg.asset(partitions_def=chunks, group_name="ingest", kinds={"delta"}, pool=POOL_DOWNLOAD,
          # the source retries network hiccups itself; this retries the whole chunk after a longer outage
          retry_policy=dg.RetryPolicy(max_retries=2, delay=60, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS))
def raw_chunks(context: dg.AssetExecutionContext, lake: LakeResource, source: PAISourceResource) -> dg.MaterializeResult:
    """A chunk's files made local (twin: generated; mirror: located; hub: downloaded) and verified."""
    key = context.partition_key
    try:
        settings = source.settings()
        files = settings.make_source().fetch_chunk(chunk_id_of(key), features=settings.features())
        manifest = chunk_manifest(files, chunk=key)
        version = lake.overwrite_partition(T.CHUNKS, manifest, chunk=key)
    except Exception as exc:
        if is_transient(exc):
            raise
        # a bad key, a lake path that is a file, a gated repo: waiting minutes will not fix it
        raise dg.Failure(f"{key}: {type(exc).__name__}: {exc}", allow_retries=False) from exc
    return dg.MaterializeResult(metadata={
        "files": manifest.num_rows, "bytes": int(pc.sum(manifest.column("bytes")).as_py()),
        "source": files.source, "revision": files.revision, "delta_version": version,
        "preview": preview(manifest, 10, ["feature", "path", "bytes", "sha256"])})


@dg.multi_asset(
    specs=[
        dg.AssetSpec("clip_index", deps=["raw_chunks"], kinds={"delta"}, group_name="index",
                     description="Silver `clips`: one row per clip (split, place, durations, rates, presence, status)."),
        dg.AssetSpec("egomotion", deps=["raw_chunks"], kinds={"delta"}, group_name="index",
                     description="Silver `egomotion`: one row per pose sample, as in the file."),
        dg.AssetSpec("frames", deps=["raw_chunks"], kinds={"delta"}, group_name="index",
                     description="Silver `frames`: one row per front-wide frame with the ego pose at its time."),
    ],
    partitions_def=chunks,
    pool=POOL_DECODE,
)
def chunk_index(context: dg.AssetExecutionContext, lake: LakeResource,  # noqa: ANN201 (a generator of results)
                engine: EngineResource):
    """Index a chunk in one pass over its files; bad clips go to `quarantine`, the rest are indexed."""
    key = context.partition_key
    files = chunk_files_from_manifest(lake.read(T.CHUNKS, chunk=key), chunk_id_of(key))
    ok = lake.read(T.CLIPS, where={"status": "ok"}, columns=["clip_id", "chunk"])
    known = dict(zip(ok.column("clip_id").to_pylist(), ok.column("chunk").to_pylist(), strict=True))
    eng = engine.engine()
    context.log.info(f"engine: {eng.describe()}")
    plan = plan_index(files, chunk=key, known_clips=known)
    ix = assemble_index(plan, eng.map_parts(index_part, plan, list(plan.clip_ids), {}, PART_OUTPUTS, root=lake.root))
    counts = ix.counts()
    eng.overwrite_partition(lake.root, T.QUARANTINE, ix.quarantine_table(key), chunk=key, extra={"stage": STAGE})
    # `clips` last: every later stage selects clips by their status there, so until that commit a
    # kill leaves the old index in force (the new pose rows of the same files are the same rows)
    versions = {}
    for table, data in ((T.EGOMOTION, ix.egomotion), (T.FRAMES, ix.frames), (T.CLIPS, ix.clips)):
        crash_point(f"index.before_{table.name}")
        versions[table.name] = eng.overwrite_partition(lake.root, table, data, chunk=key)
    ok = set(ix.clips.filter(pc.equal(ix.clips.column("status"), "ok")).column("clip_id").to_pylist())
    frames_ok = ix.frames.filter(pc.is_in(ix.frames.column("clip_id"), pa.array(sorted(ok), pa.string())))
    pictures = {"frames": {"contact_sheet": sheet(chunk_sheet(files, frame_picks(frames_ok), f"{key}: front camera"),
                                                  "front camera frames")}}
    for asset, table, data in (("clip_index", T.CLIPS, ix.clips), ("egomotion", T.EGOMOTION, ix.egomotion),
                               ("frames", T.FRAMES, ix.frames)):
        version = versions[table.name]
        yield dg.MaterializeResult(asset_key=asset, metadata={**pictures.get(asset, {}),
            "rows": data.num_rows, "delta_version": version, **counts,
            "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in ix.notes) or "none"),
            "split_source": ix.split_source,
            "preview": preview(data, 5, None if asset != "clip_index" else
                               ["clip_id", "split", "duration_s", "frame_count", "status", "status_reason"])})
