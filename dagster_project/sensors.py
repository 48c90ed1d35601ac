"""Discovery: register chunks found at the configured source as partitions, and request their runs."""


import dagster as dg

from dagster_project.backfill import turn_due
from dagster_project.partitions import chunks
from dagster_project.resources import LakeResource, PAISourceResource
from flywheel.settings import Settings
from lake import tables as T
from transforms.pai_layout import chunk_key

INGEST = dg.AssetSelection.assets("raw_chunks", "clip_index", "egomotion", "frames", "unicycle_targets",
                                   "commander_labels", "webdataset_shards")


@dg.sensor(minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED, asset_selection=INGEST)
def new_chunks(context: dg.SensorEvaluationContext, source: PAISourceResource) -> dg.SensorResult:
    """Add a partition and an ingest run for every chunk the source has and the instance does not."""
    known = set(context.instance.get_dynamic_partitions(chunks.name))
    new = [k for k in (chunk_key(c) for c in source.source().list_chunks()) if k not in known]
    return dg.SensorResult(
        dynamic_partitions_requests=[chunks.build_add_request(new)] if new else [],
        run_requests=[dg.RunRequest(partition_key=k) for k in new],  # runs the sensor's asset_selection
    )


# One turn of the flywheel: retrain on what the shards hold, evaluate, mine the failures, acquire.
TURN = dg.AssetSelection.assets("train_field_agent", "navsim_eval", "hard_examples", "acquisitions")


@dg.sensor(minimum_interval_seconds=600, default_status=dg.DefaultSensorStatus.STOPPED, asset_selection=TURN)
def flywheel_turn(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SkipReason | dg.RunRequest:
    """Turn the flywheel (train → navsim_eval → hard_examples → acquisitions) once enough new training
    windows have arrived since the last training run (FLYWHEEL_RETRAIN_MIN_WINDOWS, default 200); what
    the turn acquires, new_chunks then ingests, and the next turn trains on."""
    due = turn_due(lake.read(T.SHARD_MANIFEST).to_pylist(), lake.read(T.TRAINING_RUNS).to_pylist(),
                   min_windows=Settings.from_env().retrain_min_windows)
    if not due.due:
        return dg.SkipReason(due.why)
    # one run per state of the data: a tick while that run is queued or running adds nothing
    return dg.RunRequest(run_key=f"turn-{due.data_key}", tags={"flywheel/turn": due.data_key, "flywheel/why": due.why})
