"""Discovery: register chunks found at the configured source as partitions, and request their runs."""


import dagster as dg

from dagster_project.partitions import chunks
from dagster_project.resources import PAISourceResource
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
