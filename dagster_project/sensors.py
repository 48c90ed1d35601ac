"""Discovery: register chunks found at the configured source as partitions, and request their runs."""


import dagster as dg

from dagster_project.backfill import turn_due
from dagster_project.partitions import chunks
from dagster_project.resources import LakeResource, PAISourceResource
from flywheel.settings import Settings
from lake import tables as T
from transforms.pai_layout import chunk_key


@dg.sensor(minimum_interval_seconds=Settings.from_env().discovery_interval_s,
           default_status=dg.DefaultSensorStatus.STOPPED)
def new_chunks(context: dg.SensorEvaluationContext, source: PAISourceResource) -> dg.SensorResult | dg.SkipReason:
    """Register a partition for every chunk the source has and the instance does not.

    Registration only: the incremental_backfill schedule runs what a partition lacks, so one place
    launches ingest runs and can see what is already queued or running (it never doubles a run)."""
    known = set(context.instance.get_dynamic_partitions(chunks.name))
    new = [k for k in (chunk_key(c) for c in source.source().list_chunks()) if k not in known]
    if not new:
        return dg.SkipReason(f"no new chunks at the source ({len(known)} registered)")
    context.log.info(f"registering {len(new)} new chunk partitions: {', '.join(new)}")
    return dg.SensorResult(dynamic_partitions_requests=[chunks.build_add_request(new)])


# One turn of the flywheel: retrain on what the shards hold, evaluate, mine the failures, acquire.
TURN = dg.AssetSelection.assets("train_field_agent", "navsim_eval", "hard_examples", "acquisitions")


@dg.sensor(minimum_interval_seconds=600, default_status=dg.DefaultSensorStatus.STOPPED, asset_selection=TURN)
def flywheel_turn(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SkipReason | dg.RunRequest:
    """Turn the flywheel (train → navsim_eval → hard_examples → acquisitions) once enough new training
    windows have arrived since the last training run (FLYWHEEL_RETRAIN_MIN_WINDOWS, default 200); what
    the turn acquires, new_chunks registers, incremental_backfill ingests, and the next turn trains on."""
    due = turn_due(lake.read(T.SHARD_MANIFEST).to_pylist(), lake.read(T.TRAINING_RUNS).to_pylist(),
                   min_windows=Settings.from_env().retrain_min_windows)
    if not due.due:
        return dg.SkipReason(due.why)
    # one run per state of the data: a tick while that run is queued or running adds nothing
    return dg.RunRequest(run_key=f"turn-{due.data_key}", tags={"flywheel/turn": due.data_key, "flywheel/why": due.why})
