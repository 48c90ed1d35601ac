"""navsim_eval: the trained field agent and baselines scored NAVSIM-style on held-out windows."""

import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa

from dagster_project.assets._meta import png
from dagster_project.config import derived_config, to_dataclass
from dagster_project.partitions import POOL_ACCELERATOR, POOL_DECODE
from dagster_project.resources import LakeResource
from evals.benchmark import (
    BENCHMARK_DIR,
    BenchmarkConfig,
    benchmark_clip_ids,
    build_benchmark,
    check_disjoint,
    held_out_windows,
)
from evals.config import EvalConfig
from evals.navsim_eval import (
    LOGGED,
    EvalWindow,
    evaluate,
    extreme_panels,
    pick_run,
    score_table_md,
    summarize,
)
from evals.scorecard import HEADLINE_METRICS, group_table_md, headline, headline_metadata, headline_split, statistics
from lake import tables as T
from transforms.plots import bev_png
from transforms.twin.writer import BENCHMARK_SEED

BenchmarkSetConfig = derived_config(
    BenchmarkConfig, name="BenchmarkSetConfig", doc="The benchmark set: evals/benchmark.py declares every field.")


@dg.asset(group_name="evaluation", kinds={"delta", "webdataset"}, pool=POOL_DECODE)
def benchmark_set(context: dg.AssetExecutionContext, config: BenchmarkSetConfig,
                  lake: LakeResource) -> dg.MaterializeResult:
    """A held-out twin with its own seed (every scenario, never trained on) in a lake of its own, built once."""
    cfg = to_dataclass(config, BenchmarkConfig)
    root = Path(lake.root) / BENCHMARK_DIR
    bench = build_benchmark(root, root / "twin", cfg, log=context.log.info)
    check_disjoint(set(lake.read(T.CLIPS, columns=["clip_id"]).column("clip_id").to_pylist()), benchmark_clip_ids(root))
    return dg.MaterializeResult(metadata={
        "root": dg.MetadataValue.path(str(root)), "clips": bench.clips, "windows": bench.windows,
        "clips_per_scenario": config.clips_per_scenario, "built": bench.built, "seed": BENCHMARK_SEED})


NavsimEvalConfig = derived_config(
    EvalConfig, name="NavsimEvalConfig", doc="The evaluation: evals/config.py declares every field (EvalConfig).")


def _run_labels(run: dict, cfg: EvalConfig) -> tuple[str, str]:
    """The label set the agent is given commands from: the one named, else the one the run trained on
    (older runs did not record it: then the one the shards hold)."""
    if cfg.labeler or cfg.labeler_version:
        return cfg.labeler, cfg.labeler_version
    trained = json.loads(str(run.get("config") or "{}"))
    return str(trained.get("labeler", "")), str(trained.get("labeler_version", ""))


def _agent_fn(checkpoint: str, device: str, noise_scale: float, seed: int):  # noqa: ANN202 (a closure)
    import torch

    from trainers.agent import FieldAgent

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    agent = FieldAgent.load(checkpoint, device=device)

    def act(images: list, commands: list[str], states: list) -> tuple[np.ndarray, np.ndarray]:
        out = agent.act_batch(images, commands, [tuple(float(x) for x in s) for s in states], seed=seed,
                              noise_scale=noise_scale)
        return out.xy_m, out.yaw_rad

    return act


@dg.asset(group_name="evaluation", kinds={"pytorch", "delta"}, deps=["train_field_agent", "benchmark_set"],
          pool=POOL_ACCELERATOR)
def navsim_eval(context: dg.AssetExecutionContext, config: NavsimEvalConfig, lake: LakeResource) -> dg.MaterializeResult:
    """The field agent against the strongest baseline (EPDMS, ADE@6.4 s, 95% intervals over clips) on the
    benchmark set and the held-out windows; PDMS/EPDMS sub-scores per window, tables per scenario."""
    cfg = to_dataclass(config, EvalConfig)
    run = pick_run(lake.read(T.TRAINING_RUNS).to_pylist(), cfg.run_id)
    labeler, labeler_version = _run_labels(run, cfg)
    try:
        windows, scenes, poses, unmatched = held_out_windows(lake.root, cfg.splits, labeler=labeler,
                                                             labeler_version=labeler_version,
                                                             max_windows=cfg.max_windows)
    except (FileNotFoundError, ValueError) as exc:
        raise dg.Failure(str(exc)) from exc
    if unmatched:
        context.log.warning(f"{unmatched} shard samples have no unicycle_targets row (stale shards?) and were skipped")
    context.log.info(f"scoring run {run['run_id']} on {len(windows)} windows ({len(scenes)} clips with twin ground truth)")
    act = _agent_fn(run["checkpoint"], cfg.device, cfg.noise_scale, cfg.seed)
    rows, plans, wrong = evaluate(windows, act, scenes, poses, wrong_command=cfg.wrong_command, seed=cfg.seed,
                                  batch=cfg.batch_size)
    summaries = summarize(rows, cfg.splits)
    now = time.time_ns() // 1000
    stats = statistics(rows, {c: s.scenario for c, s in scenes.items()}, cfg.splits, run_id=run["run_id"],
                       finished_us=now, seed=cfg.seed)
    recorded = json.dumps({**config.model_dump(), "labeler": labeler, "labeler_version": labeler_version},
                          sort_keys=True)
    part = {"run_id": run["run_id"]}
    lake.overwrite_partition(T.EVAL_WINDOWS, pa.Table.from_pylist([{"run_id": run["run_id"], **r} for r in rows],
                                                                    schema=T.EVAL_WINDOWS.schema), extra=part)
    lake.overwrite_partition(T.EVAL_RUNS, pa.Table.from_pylist(
        [{"run_id": run["run_id"], "checkpoint": run["checkpoint"], "data_version": run["data_version"],
          "config": recorded, "finished_us": now, **s} for s in summaries], schema=T.EVAL_RUNS.schema), extra=part)
    lake.overwrite_partition(T.EVAL_STATS, pa.Table.from_pylist(stats, schema=T.EVAL_STATS.schema), extra=part)
    lines = headline(stats)
    split = headline_split(stats)
    for line in lines:
        context.log.info(line)
    table = score_table_md(summaries)
    context.log.info("scores over all evaluated windows:\n" + table)
    return dg.MaterializeResult(metadata={
        "headline": dg.MetadataValue.md("\n".join(f"- {x}" for x in lines) or "no field agent scored"),
        **headline_metadata(stats, split),
        **{f"{kind}_{m}_{split}": dg.MetadataValue.md(group_table_md(stats, split, kind, m))
           for kind in ("scenario", "meta_action") for m in HEADLINE_METRICS},
        "run_id": run["run_id"], "checkpoint": dg.MetadataValue.path(run["checkpoint"]),
        "windows": len(windows), "scored_windows": sum(r["epdms"] is not None for r in rows if r["policy"] == LOGGED),
        "wrong_command_windows": sum(c is not None for c in wrong),
        "scores": dg.MetadataValue.md(table),
        **{f"scores_{sp}": dg.MetadataValue.md(score_table_md(summaries, sp)) for sp in cfg.splits
           if any(s["split"] == sp for s in summaries)},
        **_plots(rows, plans, windows, scenes, poses)})


def _plots(rows: list[dict], plans: dict, windows: list[EvalWindow], scenes: dict, poses: dict) -> dict:
    return {name: png(bev_png(panels, title=f"{name.replace('_', ' ')} of {policy}"), name)
            for name, (policy, panels) in extreme_panels(rows, plans, windows, scenes, poses).items()}
