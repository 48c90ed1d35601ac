"""One factory from a chunk stage's description (engines/stage.py) to a partitioned asset with its checks.

Every chunk stage shares its wiring: plan the chunk's job, map the parts and commit the outputs on
the engine (`run_stage`), log what was set aside, describe the run. What differs per stage is the
job it plans (`JobFn`: the part's plan, the clips, per-run keys) and what its metadata shows
(`SummaryFn`); the asset module gives those two and the factory does the rest.
"""

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from dagster_project.checks import qa_checks_for
from dagster_project.partitions import chunks
from dagster_project.resources import EngineResource, LakeResource
from engines import Engine
from engines.stage import ChunkStage, StageJob, StageRun, run_stage

# (context, lake, chunk key, config or None) -> the job, and the engine it must run on (None: the resource's)
JobFn = Callable[[dg.AssetExecutionContext, LakeResource, str, Any], tuple[StageJob, Engine | None]]
# (chunk key, the run, the job) -> the materialization's metadata
SummaryFn = Callable[[str, StageRun, StageJob], dict[str, Any]]


def chunk_asset(stage: ChunkStage, *, group: str, deps: Sequence[str], job: JobFn, summary: SummaryFn,
                description: str, config: type[dg.Config] | None = None,
                pool: str | None = None) -> tuple[dg.AssetsDefinition, list[dg.AssetChecksDefinition]]:
    """The stage as a chunk-partitioned asset, and the data-QA checks of the tables it writes."""

    def body(context: dg.AssetExecutionContext, lake: LakeResource, engine: EngineResource,
             cfg: Any = None) -> dg.MaterializeResult:
        key = context.partition_key
        planned, pinned = job(context, lake, key, cfg)
        eng = pinned or engine.engine()
        context.log.info(f"engine: {eng.describe()}")
        run = run_stage(eng, stage, planned, chunk=key, root=lake.root)
        for row in run.quarantine.to_pylist():
            context.log.warning(f"{key}: {row['kind']}: clip {row['clip_id']}: {row['reason']}")
        return dg.MaterializeResult(metadata=summary(key, run, planned))

    if config is None:
        def fn(context: dg.AssetExecutionContext, lake: LakeResource, engine: EngineResource) -> dg.MaterializeResult:
            return body(context, lake, engine)
    else:
        def fn(context: dg.AssetExecutionContext, config: dg.Config, lake: LakeResource,  # type: ignore[misc]
               engine: EngineResource) -> dg.MaterializeResult:
            return body(context, lake, engine, config)

        fn.__annotations__["config"] = config  # Dagster reads the config class from the annotation
    fn.__name__, fn.__doc__ = stage.name, description
    asset = dg.asset(name=stage.name, partitions_def=chunks, group_name=group, kinds={"delta"}, deps=list(deps),
                     pool=pool)(fn)
    return asset, qa_checks_for(stage.name)
