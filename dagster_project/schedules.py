"""Incremental backfills: hourly (FLYWHEEL_BACKFILL_CRON), run only the chunk partitions (and assets) missing or stale."""

import hashlib

import dagster as dg
from dagster._core.storage.tags import PARTITION_NAME_TAG

from dagster_project.backfill import Materialized, stale_assets, with_execution_sets
from dagster_project.partitions import chunks
from dagster_project.resources import PAISourceResource
from flywheel.settings import Settings

BACKFILL_TAG = "flywheel/backfill"
INGEST = dg.AssetSelection.assets("raw_chunks", "clip_index", "egomotion", "frames", "unicycle_targets",
                                   "commander_labels", "webdataset_shards")
# a run in one of these may still write its partition: a tick leaves that partition to it
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def latest_materializations(instance: dg.DagsterInstance, assets: list[str], keys: list[str]
                            ) -> dict[str, dict[str, Materialized]]:
    """partition -> asset -> its latest materialization (time, and for raw_chunks the source revision)."""
    out: dict[str, dict[str, Materialized]] = {k: {} for k in keys}
    for asset in assets:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=keys), limit=10 * len(keys) + 10).records
        for rec in records:  # newest first
            mat = rec.asset_materialization
            if mat is None or mat.partition not in out or asset in out[mat.partition]:
                continue
            rev = mat.metadata.get("revision")
            out[mat.partition][asset] = Materialized(rec.timestamp, str(rev.value) if rev is not None else None)
    return out


def runs_in_flight(instance: dg.DagsterInstance, keys: list[str]) -> dict[str, str]:
    """partition -> the id of a run of it that is queued or running (any launcher: a tick, a person)."""
    runs = instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT, tags={PARTITION_NAME_TAG: keys}))
    return {run.tags[PARTITION_NAME_TAG]: run.run_id for run in runs}


@dg.schedule(cron_schedule=Settings.from_env().backfill_cron, target=INGEST,
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Hourly (FLYWHEEL_BACKFILL_CRON): run the ingest assets of every chunk partition that is "
                         "missing or stale, only those; a partition with a run queued or running is left to it.")
def incremental_backfill(context: dg.ScheduleEvaluationContext, source: PAISourceResource
                         ) -> dg.SkipReason | list[dg.RunRequest]:
    keys = sorted(context.instance.get_dynamic_partitions(chunks.name))
    if not keys:
        return dg.SkipReason("no chunk partitions yet: start the new_chunks sensor (or `flywheel discover`)")
    graph = context.repository_def.asset_graph
    selected = INGEST.resolve(graph)
    order = [k.to_user_string() for k in graph.toposorted_asset_keys if k in selected]
    deps = {a: [p.to_user_string() for p in graph.get(dg.AssetKey(a)).parent_keys] for a in order}
    # assets computed by one op (chunk_index's clip_index/egomotion/frames) cannot run apart
    sets = {frozenset(k.to_user_string() for k in graph.get(dg.AssetKey(a)).execution_set_asset_keys) for a in order}
    revision = source.source().revision
    latest = latest_materializations(context.instance, order, keys)
    # Dagster keeps a schedule's run keys apart per tick time, so they cannot stop a second tick from
    # asking again for a partition whose run is still queued or running: the run records can
    busy = runs_in_flight(context.instance, keys)
    requests = []
    for key in keys:
        if key in busy:
            context.log.info(f"{key}: run {busy[key]} is queued or running; left to it")
            continue
        why = stale_assets(order, deps, latest[key], source_revision=revision)
        if not why:
            continue
        assets = with_execution_sets(list(why), [s for s in sets if len(s) > 1])
        state = repr(sorted((a, m.timestamp) for a, m in latest[key].items())) + revision
        requests.append(dg.RunRequest(
            # a tick evaluated again (the daemon restarted mid-tick) launches its runs once
            run_key=f"{key}:{hashlib.sha256(state.encode()).hexdigest()[:16]}", partition_key=key,
            asset_selection=[dg.AssetKey(a) for a in assets],
            tags={BACKFILL_TAG: "incremental", "flywheel/why": "; ".join(f"{a}: {w}" for a, w in why.items())[:200]}))
    if not requests:
        waiting = f"; {len(busy)} with a run queued or running ({', '.join(sorted(busy))})" if busy else ""
        return dg.SkipReason(f"{len(keys) - len(busy)} chunk partitions up to date{waiting}")
    return requests
