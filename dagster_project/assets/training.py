"""The field agent: LeRobot SmolVLA fine-tuned on every chunk's shards, checkpoint + training metrics."""

import dataclasses
import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
from dagster._core.errors import DagsterPipesExecutionError  # not exported by dagster; raised by Pipes clients

from core.request import DataRequest, format_weights
from core.stats import verdict_word
from dagster_project.assets._meta import png
from dagster_project.config import derived_config, to_dataclass
from dagster_project.partitions import POOL_ACCELERATOR
from dagster_project.resources import LakeResource
from evals.benchmark import BENCHMARK_DIR, benchmark_clip_ids, check_disjoint
from lake import tables as T
from qa.report import blocking_failures
from trainers.config import TrainConfig, TrainData
from trainers.data import ShardSet, meta_action_counts, shards_from_manifest
from trainers.launch import command as launch_command
from trainers.launch import result_from_doc, write_job
from trainers.train import BASELINE_PREFIX, TrainResult, strongest_baseline, train, val_headline
from transforms.plots import curves_png

TrainFieldAgentConfig = derived_config(
    TrainConfig, TrainData, name="TrainFieldAgentConfig",
    doc="The training run: trainers/config.py declares every field (TrainConfig, TrainData).")


def _metadata(res: TrainResult, shards_samples: dict[str, int]) -> dict[str, object]:
    rows = res.metrics
    train_loss = [(r["step"], r["value"]) for r in rows if r["split"] == "train" and r["name"] == "loss"]
    val = {n: [(r["step"], r["value"]) for r in rows if r["split"] == "val" and r["name"] == n]
           for n in ("val_loss", "ade_6p4s", "cv_ade_6p4s", "ca_ade_6p4s")}

    def xy(pairs: list[tuple[int, float]], smooth: int = 1) -> tuple[np.ndarray, np.ndarray]:
        x, y = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        if smooth > 1 and len(y) >= smooth:  # a running mean: per-step flow-matching losses are noisy
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            x = x[smooth - 1:]
        return x, y

    f = res.final
    md = {"headline": val_headline(f)} if f else {}
    md |= {"run_id": res.run_id, "checkpoint": dg.MetadataValue.path(str(res.checkpoint)), "steps": res.steps,
          "resumed_from_step": res.resumed_from, "already_trained": res.already_done,
          "trainable_params": res.params["trainable"], "total_params": res.params["total"],
          "lora_params": res.params["lora"], "train_samples": shards_samples.get("train", 0),
          "val_samples": shards_samples.get("val", 0)}
    if not res.already_done:
        md |= {"train_wall_s": round(res.train_wall_s, 1), "samples_per_s": round(res.samples_per_s, 1),
               "peak_memory_mb": round(res.peak_mem_mb)}
    if f:
        best = strongest_baseline(f)
        md |= {"val_ade_6p4s_m": round(f["ade_6p4s"], 3), "strongest_baseline": BASELINE_PREFIX[best],
               "strongest_baseline_ade_6p4s_m": round(f[f"{best}_ade_6p4s"], 3),
               "verdict": verdict_word(f[f"d_{best}_ade_6p4s_lo"], f[f"d_{best}_ade_6p4s_hi"], higher_is_better=False),
               "val_metrics": dg.MetadataValue.md(
                   "| metric | agent | constant velocity | constant (a, κ) |\n|---|---:|---:|---:|\n" + "\n".join(
                       f"| {k} | {f[k]:.3f} | {f['cv_' + k]:.3f} | {f['ca_' + k]:.3f} |" for k in sorted(f)
                       if "cv_" + k in f and "ca_" + k in f))}
    if train_loss:
        panels = {"loss": {"train (running mean of 20)": xy(train_loss, 20)}}
        if val["val_loss"]:
            panels["loss"]["val"] = xy(val["val_loss"])
            panels["val ADE@6.4 s (m)"] = {"agent": xy(val["ade_6p4s"]), "constant velocity": xy(val["cv_ade_6p4s"]),
                                           "constant (a, κ)": xy(val["ca_ade_6p4s"])}
        md["loss_curve"] = png(curves_png(panels, title=res.run_id, log_y=("loss",)), "loss curve")
    return md


def _reweighted(tc: TrainConfig, lake: LakeResource, labels: tuple[str, str], log: dg.DagsterLogManager) -> TrainConfig:
    """The config with sample weights from the latest data request and the training label mix."""
    if tc.sample_weights:
        raise dg.Failure(f"reweight=true and sample_weights={tc.sample_weights!r}: give one of them", allow_retries=False)
    rows = lake.read(T.DATA_REQUESTS).to_pylist()
    if not rows:
        raise dg.Failure("reweight=true but gold.data_requests is empty: materialize hard_examples first",
                         allow_retries=False)
    row = max(rows, key=lambda r: r["created_us"])
    counts = meta_action_counts(lake.read(T.COMMANDER_LABELS, columns=["clip_id", "labeler", "labeler_version",
                                                                       "meta_action"]),
                                lake.read(T.CLIPS, columns=["clip_id", "split"]), labels)
    weights = format_weights(DataRequest.from_json(row["request"]).sample_weights(counts))
    log.info(f"reweighting by {row['request_id']} (run {row['run_id']}): {weights}")
    return dataclasses.replace(tc, sample_weights=weights)


@dg.asset(group_name="training", kinds={"pytorch", "safetensors", "delta"}, deps=["webdataset_shards"],
          pool=POOL_ACCELERATOR)
def train_field_agent(context: dg.AssetExecutionContext, config: TrainFieldAgentConfig,
                      lake: LakeResource) -> dg.MaterializeResult:
    """SmolVLA (LeRobot) trained on all chunks' shards to drive (a, κ) x 64 from image, command and state."""
    tc, data = to_dataclass(config, TrainConfig), to_dataclass(config, TrainData)
    shard_root = Path(lake.root) / "shards"
    try:
        shards = shards_from_manifest(lake.read(T.SHARD_MANIFEST), shard_root, labeler=data.labeler,
                                      labeler_version=data.labeler_version)
    except ValueError as exc:
        raise dg.Failure(f"training refused: {exc}", allow_retries=False) from exc
    failures = blocking_failures(lake.read(T.QA_RESULTS), list(shards.chunks))
    if failures:
        raise dg.Failure(f"training refused: {len(failures)} blocking data-QA failures in the chunks it would read: "
                         + "; ".join(failures[:10]) + ". Fix the source or code, re-materialize those partitions (their "
                         "checks run again) and see data_qa_report for details.")
    try:  # the benchmark stays held out: not one of its clips may be in what trains
        check_disjoint(set(lake.read(T.CLIPS, columns=["clip_id"]).column("clip_id").to_pylist()),
                       benchmark_clip_ids(Path(lake.root) / BENCHMARK_DIR))
    except ValueError as exc:
        raise dg.Failure(f"training refused: {exc}") from exc
    context.log.info(f"training on {shards.labels[0]} {shards.labels[1]} labels: {len(shards.chunks)} chunks")
    if data.reweight:
        tc = _reweighted(tc, lake, shards.labels, context.log)
    knobs = dataclasses.asdict(tc) | {"labeler": shards.labels[0], "labeler_version": shards.labels[1],
                                      # what the flywheel_turn sensor compares new data against
                                      "train_samples": shards.samples.get("train", 0), "chunks": sorted(shards.chunks)}
    res = _run_training(context, tc, data, shards, Path(lake.root) / "checkpoints")
    if not res.already_done or not lake.read(T.TRAINING_RUNS, where={"run_id": res.run_id}).num_rows:
        metrics = pa.Table.from_pylist([{"run_id": res.run_id, **r} for r in res.metrics], schema=T.TRAINING_METRICS.schema)
        lake.overwrite_partition(T.TRAINING_METRICS, metrics, extra={"run_id": res.run_id})
        f = res.final
        run = {"run_id": res.run_id, "checkpoint": str(res.checkpoint), "profile": res.profile,
               "data_version": shards.data_version, "steps": res.steps, "val_ade_6p4s_m": f.get("ade_6p4s"),
               "cv_ade_6p4s_m": f.get("cv_ade_6p4s"), "val_windows": int(f["windows"]) if f else None,
               "train_wall_s": res.train_wall_s, "samples_per_s": res.samples_per_s,
               "trainable_params": res.params["trainable"], "total_params": res.params["total"],
               "config": json.dumps(knobs, sort_keys=True), "finished_us": time.time_ns() // 1000}
        lake.overwrite_partition(T.TRAINING_RUNS, pa.Table.from_pylist([run], schema=T.TRAINING_RUNS.schema),
                                 extra={"run_id": res.run_id})
    if res.final:
        context.log.info(val_headline(res.final))
    finished = lake.read(T.TRAINING_RUNS, where={"run_id": res.run_id}).column("finished_us").to_pylist()
    return _result(res, shards, finished[0] if finished else 0)


def _run_training(context: dg.AssetExecutionContext, tc: TrainConfig, data: TrainData, shards: ShardSet,
                  runs_dir: Path) -> TrainResult:
    """Train here, or in processes of their own through Dagster Pipes (torchrun for several): those send
    their log lines to this run's log and the result back as a Pipes message."""
    kw = dict(train_urls=shards.train, val_urls=shards.val, runs_dir=runs_dir, data_version=shards.data_version,
              restart=data.restart)
    if data.launcher == "in_process":
        return train(tc, **kw, log=context.log.info, progress_bar=False)  # type: ignore[arg-type]
    job = write_job(runs_dir / ".jobs" / f"{context.run_id}.json", tc, **kw)  # type: ignore[arg-type]
    cmd = launch_command(job, data.nproc_per_node)
    context.log.info(f"training through Dagster Pipes: {' '.join(cmd)}")
    try:
        docs = dg.PipesSubprocessClient().run(command=cmd, context=context).get_custom_messages()
    except DagsterPipesExecutionError as exc:
        raise dg.Failure(f"the training process failed ({exc}); its output is in this step's logs. The run resumes "
                         "from its last checkpoint when materialized again") from exc
    finally:
        job.unlink(missing_ok=True)
    if not docs:
        raise dg.Failure(f"the training process exited without reporting a result: {' '.join(cmd)}")
    return result_from_doc(docs[-1])


def _result(res: TrainResult, shards: ShardSet, finished_us: int) -> dg.MaterializeResult:
    """The materialization. The checkpoint's identity is the asset's data version: a no-op re-materialization
    (the run had finished) keeps it, so Dagster does not call navsim_eval & co. unsynced when nothing changed,
    and it records no numbers, which the plots view would show again as a new point."""
    version = dg.DataVersion(f"{res.run_id}@{finished_us}")
    if res.already_done:
        return dg.MaterializeResult(data_version=version, metadata={
            "already_trained": dg.MetadataValue.bool(True), "run_id": res.run_id,
            "checkpoint": dg.MetadataValue.path(str(res.checkpoint)),
            "note": dg.MetadataValue.md(f"Run `{res.run_id}` had finished ({res.steps} steps) on this data and "
                                        "config: nothing was trained. Its figures are on the materialization that "
                                        "trained it; `restart: true` trains it again.")})
    return dg.MaterializeResult(data_version=version, metadata={
        **_metadata(res, shards.samples), "data_version": shards.data_version, "chunks": len(shards.chunks),
        "labeler": shards.labels[0], "labeler_version": shards.labels[1]})
