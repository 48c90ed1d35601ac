"""The loop back from the agent's failures to the data: hard_examples mines them, acquisitions answers."""

import json
import math
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pyarrow as pa

from core.request import DataRequest
from dagster_project.config import derived_config, to_dataclass
from dagster_project.partitions import POOL_DOWNLOAD
from dagster_project.resources import LakeResource, PAISourceResource
from evals.benchmark import BENCHMARK_DIR
from evals.mining import (
    GROUP_KINDS,
    MiningConfig,
    clip_facts,
    data_request,
    group_hard,
    groups_md,
    mine_hard_examples,
    request_md,
    windows_of,
)
from labelers.triage import AcquireConfig, official_reader, triage, triage_rows, write_chosen
from lake import tables as T
from transforms.pai_layout import chunk_id_of
from transforms.source import LocalDirSource, TwinSource
from transforms.twin.acquire import acquire_twin, acquisition_rows, windows_per_clip

HardExamplesConfig = derived_config(MiningConfig, name="HardExamplesConfig",
                                    doc="What is mined: evals/mining.py declares every field (MiningConfig).")
AcquisitionsConfig = derived_config(AcquireConfig, name="AcquisitionsConfig",
                                    doc="How a request is answered: labelers/triage.py declares every field.")
PAI_CLIP_S = 20.0  # a PAI clip's length: how many clips a request's windows take
EVAL_COLUMNS = [c for c in T.EVAL_WINDOWS.schema.names if c not in ("pred_xy", "pred_yaw")]


def latest_eval_run(lake: LakeResource, run_id: str = "") -> str:
    runs = lake.read(T.EVAL_RUNS, columns=["run_id", "finished_us"]).to_pylist()
    if run_id:
        if run_id not in {r["run_id"] for r in runs}:
            raise dg.Failure(f"run_id={run_id!r} was never evaluated: materialize navsim_eval with it first, or "
                             f"leave run_id empty (evaluated runs: {sorted({r['run_id'] for r in runs})[:5]})")
        return run_id
    if not runs:
        raise dg.Failure("eval.eval_runs is empty: materialize navsim_eval first")
    return max(runs, key=lambda r: r["finished_us"])["run_id"]


@dg.asset(group_name="flywheel", kinds={"delta"}, deps=["navsim_eval"])
def hard_examples(context: dg.AssetExecutionContext, config: HardExamplesConfig,
                  lake: LakeResource) -> dg.MaterializeResult:
    """The windows where the agent does worse than the strongest baseline or fails an EPDMS sub-score,
    grouped by scenario, meta-action, failed sub-score and speed band; and the data request they make."""
    cfg = to_dataclass(config, MiningConfig)
    run_id = latest_eval_run(lake, cfg.run_id)
    rows = [r for r in lake.read(T.EVAL_WINDOWS, where={"run_id": run_id}, columns=EVAL_COLUMNS).to_pylist()
            if r["split"] in cfg.splits]
    if not rows:
        raise dg.Failure(f"run {run_id} has no evaluated windows in splits {list(cfg.splits)}")
    scenario_of, v0_of = clip_facts([lake.root, str(Path(lake.root) / BENCHMARK_DIR)])
    hard, baseline = mine_hard_examples(rows, scenario_of, v0_of)
    windows = windows_of(rows, scenario_of, v0_of)
    request = data_request(hard, windows, budget_windows=cfg.budget_windows, run_id=run_id)
    part = {"run_id": run_id}
    lake.overwrite_partition(T.HARD_EXAMPLES, pa.Table.from_pylist(
        [{"run_id": run_id, "request_id": request.request_id, **h} for h in hard], schema=T.HARD_EXAMPLES.schema),
        extra=part)
    lake.overwrite_partition(T.DATA_REQUESTS, pa.Table.from_pylist([{
        "request_id": request.request_id, "run_id": run_id, "windows": request.windows, "request": request.to_json(),
        "hard_windows": len(hard), "evaluated_windows": len(windows), "created_us": time.time_ns() // 1000}],
        schema=T.DATA_REQUESTS.schema), extra=part)
    groups = group_hard(hard, windows)
    context.log.info(f"run {run_id}: {len(hard)} hard windows of {len(windows)} (vs {baseline}); {request.note}")
    return dg.MaterializeResult(metadata={
        "run_id": run_id, "request_id": request.request_id, "hard_windows": len(hard),
        "evaluated_windows": len(windows), "hard_rate": round(len(hard) / max(len(windows), 1), 3),
        "baseline": baseline, "data_request": dg.MetadataValue.md(request_md(request)),
        **{f"by_{kind}": dg.MetadataValue.md(groups_md(groups, kind)) for kind in GROUP_KINDS},
        "lineage": dg.MetadataValue.md(
            f"eval.eval_runs[run_id={run_id}] → gold.hard_examples[run_id={run_id}] → "
            f"gold.data_requests[request_id={request.request_id}] → gold.acquisitions[request_id={request.request_id}]")})


def _request(lake: LakeResource, request_id: str) -> DataRequest:
    rows = lake.read(T.DATA_REQUESTS).to_pylist()
    if request_id:
        rows = [r for r in rows if r["request_id"] == request_id]
    if not rows:
        raise dg.Failure(f"no data request {request_id or ''} in gold.data_requests: materialize hard_examples first")
    return DataRequest.from_json(max(rows, key=lambda r: r["created_us"])["request"])


def _triage(cfg: AcquireConfig, source: PAISourceResource, request: DataRequest, lake: LakeResource,
            log: dg.DagsterLogManager) -> tuple[list[dict], dict]:
    s = source.settings()
    into = cfg.into or s.mirror_dir
    if not into:
        raise dg.Failure("triage writes the chosen clips to a PAI-layout folder the pipeline ingests: set "
                         "`into` (or FLYWHEEL_MIRROR_DIR)")
    reader = official_reader(cfg.pool or None, revision=s.hf_revision, token=s.hf_token or None,
                             cache_dir=s.hf_cache or None)
    ingested = {chunk_id_of(k) for k in set(lake.read(T.CHUNKS, columns=["chunk"]).column("chunk").to_pylist())}
    have = set(LocalDirSource(into).list_chunks()) if (Path(into) / "clip_index.parquet").is_file() else set()
    n = cfg.clips or math.ceil(request.windows / windows_per_clip(PAI_CLIP_S))
    res = triage(reader, request, exclude=ingested | have, clips=n, max_chunks=cfg.max_chunks, log_fn=log.info)
    write_chosen(reader, res, into)
    rows = triage_rows(res, request, source="mirror" if cfg.pool else "hub", acquired_us=time.time_ns() // 1000)
    fetched, whole = sum(res.bytes_fetched.values()), sum(res.bytes_whole.values())
    return rows, {"bytes_fetched": fetched, "bytes_whole_chunks": whole,
                  "bytes_saved_ratio": round(whole / max(fetched, 1), 2), "into": dg.MetadataValue.path(into),
                  "triaged_clips": len(res.triaged), "notes": "; ".join(res.notes)[:1000] or "none"}


@dg.asset(group_name="flywheel", kinds={"delta"}, deps=["hard_examples"], pool=POOL_DOWNLOAD)
def acquisitions(context: dg.AssetExecutionContext, config: AcquisitionsConfig, lake: LakeResource,
                 source: PAISourceResource) -> dg.MaterializeResult:
    """Data that answers the latest request: twin chunks in its scenario mix, PAI clips chosen from their
    egomotion (triage), or reweighting; each acquired clip's lineage in gold.acquisitions."""
    cfg = to_dataclass(config, AcquireConfig)
    request = _request(lake, cfg.request_id)
    method = cfg.method if cfg.method != "auto" else ("twin" if source.kind == "twin" else "triage")
    now = time.time_ns() // 1000
    before = [r for r in lake.read(T.ACQUISITIONS, where={"request_id": request.request_id}).to_pylist()
              if r["method"] == method]
    extra: dict = {"already_acquired": bool(before)}
    if before and method != "twin":  # answered once: a retry neither fetches again nor loses the lineage
        rows = before
    elif method == "twin":  # idempotent itself: an answered request gets its chunks back
        src = source.source()
        if not isinstance(src, TwinSource):
            raise dg.Failure(f"method=twin needs the twin source; this deployment's is {source.kind!r}: use triage")
        got = acquire_twin(src.root, src.config, request, seed=cfg.seed, clips=cfg.clips or None)
        rows = acquisition_rows(got, request, acquired_us=now, seconds=src.config.seconds)
        extra["already_acquired"] = not any(a.new for a in got)
    elif method == "triage":
        rows, triaged = _triage(cfg, source, request, lake, context.log)
        extra |= triaged
    else:
        rows = [{"request_id": request.request_id, "run_id": request.run_id, "method": "reweight", "source": "none",
                 "chunk": "", "clip_id": "", "note": "no download: train with reweight=true to weight samples by "
                 "this request's meta-action shares", "bytes_fetched": 0, "acquired_us": now}]
    lake.overwrite_partition(T.ACQUISITIONS, pa.Table.from_pylist(rows, schema=T.ACQUISITIONS.schema),
                             extra={"request_id": request.request_id, "method": method})
    chunks = sorted({r["chunk"] for r in rows if r["chunk"]})
    clips = [r for r in rows if r["clip_id"]]
    context.log.info(f"{method}: {len(clips)} clips in {len(chunks)} chunks for {request.request_id} "
                     f"(run {request.run_id}); the new_chunks sensor (or `flywheel discover`) registers them, "
                     "incremental_backfill ingests them")
    return dg.MaterializeResult(metadata={
        "method": method, "request_id": request.request_id, "run_id": request.run_id, "chunks": ", ".join(chunks),
        "clips": len(clips), "windows": sum(r["windows"] or 0 for r in clips),
        "scenarios": json.dumps(dict(sorted(Counter(r["scenario"] for r in clips if r["scenario"]).items()))),
        "lineage": dg.MetadataValue.md(
            f"gold.acquisitions[request_id={request.request_id}] ← gold.data_requests ← "
            f"eval.eval_runs[run_id={request.run_id}]; the clips enter training through partitions "
            f"{', '.join(chunks) or '(none)'}"), **extra})

