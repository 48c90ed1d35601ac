"""Data-QA asset checks: each table's great-expectations suite (qa/suites.py) beside the asset that writes it.

Checks of the tables on the way to training block: a failed one stops the rest of the run, so a
broken partition never reaches shards or the trainer. The others (quarantine, training and eval
tables) warn. Every validation is also written to `qa.qa_results`, which `data_qa_report` renders.
"""

import warnings
from pathlib import Path

import dagster as dg

from dagster_project.partitions import chunks
from dagster_project.resources import LakeResource
from engines.stage import ChunkStage
from labelers.build import LABELS_STAGE
from lake import tables as T
from lake.tables import Table
from qa.report import failure_text
from qa.suites import SUITES, Inputs
from qa.validate import QAResult, validate
from transforms.unicycle import TARGETS_STAGE


def _stage_tables(stage: ChunkStage) -> tuple[Table, ...]:
    # a chunk stage's checks are its tables' (the quarantine is checked once, on the last stage: shards)
    return tuple(t for t in stage.tables if t is not T.QUARANTINE)


# which asset writes which tables (the check hangs on the asset a user re-materializes to fix it)
ASSET_TABLES: dict[str, tuple[Table, ...]] = {
    "raw_chunks": (T.CHUNKS,),
    "clip_index": (T.CLIPS,),
    "egomotion": (T.EGOMOTION,),
    "frames": (T.FRAMES,),
    TARGETS_STAGE.name: _stage_tables(TARGETS_STAGE),
    LABELS_STAGE.name: _stage_tables(LABELS_STAGE),
    "webdataset_shards": (T.SHARD_MANIFEST, T.QUARANTINE),
    "train_field_agent": (T.TRAINING_RUNS, T.TRAINING_METRICS),
    "navsim_eval": (T.EVAL_RUNS, T.EVAL_WINDOWS, T.EVAL_STATS),
    "hard_examples": (T.HARD_EXAMPLES, T.DATA_REQUESTS),
    "acquisitions": (T.ACQUISITIONS,),
    "closed_loop_eval": (T.CLOSED_LOOP_ROUTES,),
    "runs": (T.RUNS,),
}
WHOLE = "all"  # the partition_key of tables validated whole (not partitioned by chunk)


def run_qa(lake: LakeResource, table: Table, partition: str | None, *, run_id: str | None = None) -> QAResult:
    """Validate one partition (or the whole table) and record the outcome in `qa.qa_results`."""
    suite = SUITES[table.name]
    inputs = Inputs(related={t.name: lake.read(t, chunk=partition) for t in suite.inputs},
                    shard_root=Path(lake.root) / "shards")
    result = validate(table.name, lake.read(table, chunk=partition), partition=partition or WHOLE, inputs=inputs)
    lake.overwrite_partition(T.QA_RESULTS, result.to_table(run_id),
                             extra={"table_name": table.name, "partition_key": result.partition})
    return result


def check_result(result: QAResult) -> dg.AssetCheckResult:
    failed = "\n".join(f"| {o.check} | {o.unexpected_count if o.unexpected_count is not None else ''} | "
                       f"{failure_text(o.observed).replace('|', '/')[:300]} |" for o in result.failed)
    return dg.AssetCheckResult(
        passed=result.success,
        severity=dg.AssetCheckSeverity.ERROR if result.blocking else dg.AssetCheckSeverity.WARN,
        description=result.summary(),
        metadata={"rows": result.rows, "expectations": len(result.outcomes), "failed": len(result.failed),
                  "failures": dg.MetadataValue.md("| check | unexpected | offending rows (keys: value) |\n|---|---:|---|\n"
                                                  + failed
                                                  if failed else "none")})


def _qa_check(asset: str, table: Table) -> dg.AssetChecksDefinition:
    suite = SUITES[table.name]
    partitioned = table.partition_by == ("chunk",)

    @dg.asset_check(asset=asset, name=f"qa_{table.name}", blocking=suite.blocking,
                    partitions_def=chunks if partitioned else None,
                    description=f"great-expectations suite of `{table.layer}.{table.name}`: "
                                + "; ".join(c.name for c in suite.checks))
    def _check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        result = run_qa(lake, table, context.partition_key if partitioned else None, run_id=context.run.run_id)
        (context.log.info if result.success else context.log.error)(result.summary())
        return check_result(result)

    return _check


with warnings.catch_warnings():
    # partitioned asset checks are "preview" in dagster 1.13; the pinned release is tested with them
    warnings.simplefilter("ignore", dg.PreviewWarning)
    qa_checks = [_qa_check(asset, table) for asset, tables in ASSET_TABLES.items() for table in tables]


def qa_checks_for(asset: str) -> list[dg.AssetChecksDefinition]:
    """The data-QA checks that hang on `asset`."""
    return [c for c in qa_checks if all(k.asset_key == dg.AssetKey(asset) for k in c.check_keys)]
