"""navsim_eval: the trained field agent and baselines scored NAVSIM-style on held-out windows."""

import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
from pydantic import Field

from dagster_project.assets._meta import png
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
from transforms.twin.writer import BENCHMARK_SEED, BENCHMARK_SPLIT


class BenchmarkSetConfig(dg.Config):
    clips_per_scenario: int = 6  # the benchmark twin: every scenario this many times (8 scenarios)
    seconds: float = 20.0
    image_width: int = 256  # the frames and shards, as the training shards are exported
    image_height: int = 144


@dg.asset(group_name="evaluation", kinds={"delta", "webdataset"}, pool=POOL_DECODE)
def benchmark_set(context: dg.AssetExecutionContext, config: BenchmarkSetConfig,
                  lake: LakeResource) -> dg.MaterializeResult:
    """A held-out twin with its own seed (every scenario, never trained on) in a lake of its own, built once."""
    cfg = BenchmarkConfig(config.clips_per_scenario, config.image_width, config.image_height, config.seconds)
    root = Path(lake.root) / BENCHMARK_DIR
    bench = build_benchmark(root, root / "twin", cfg, log=context.log.info)
    check_disjoint(set(lake.read(T.CLIPS, columns=["clip_id"]).column("clip_id").to_pylist()), benchmark_clip_ids(root))
    return dg.MaterializeResult(metadata={
        "root": dg.MetadataValue.path(str(root)), "clips": bench.clips, "windows": bench.windows,
        "clips_per_scenario": config.clips_per_scenario, "built": bench.built, "seed": BENCHMARK_SEED})


class NavsimEvalConfig(dg.Config):
    run_id: str = ""  # the training run to score; "" = the latest finished one in eval.training_runs
    # held-out splits (train would flatter): the training chunks' val/test, and the benchmark set
    splits: list[str] = Field(default_factory=lambda: ["val", "test", BENCHMARK_SPLIT])
    max_windows: int = 0  # 0 = every window of those splits
    wrong_command: bool = True  # also score the agent given another window's command
    seed: int = 0  # the agent's sampling noise (with noise_scale > 0) and the wrong-command pairing
    noise_scale: float = 0.0  # 0: the agent's deterministic plan (flow matching from the noise mean)
    batch_size: int = 16
    device: str = "auto"  # cuda where available, else cpu
    labeler: str = "kinematic"  # the shards' labels: the commands the agent is given
    labeler_version: str = "1.0"


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
    run = pick_run(lake.read(T.TRAINING_RUNS).to_pylist(), config.run_id)
    try:
        windows, scenes, poses, unmatched = held_out_windows(lake.root, config.splits, labeler=config.labeler,
                                                             labeler_version=config.labeler_version,
                                                             max_windows=config.max_windows)
    except FileNotFoundError as exc:
        raise dg.Failure(str(exc)) from exc
    if unmatched:
        context.log.warning(f"{unmatched} shard samples have no unicycle_targets row (stale shards?) and were skipped")
    context.log.info(f"scoring run {run['run_id']} on {len(windows)} windows ({len(scenes)} clips with twin ground truth)")
    act = _agent_fn(run["checkpoint"], config.device, config.noise_scale, config.seed)
    rows, plans, wrong = evaluate(windows, act, scenes, poses, wrong_command=config.wrong_command, seed=config.seed,
                                  batch=config.batch_size)
    summaries = summarize(rows, config.splits)
    now = time.time_ns() // 1000
    stats = statistics(rows, {c: s.scenario for c, s in scenes.items()}, config.splits, run_id=run["run_id"],
                       finished_us=now, seed=config.seed)
    cfg = json.dumps(config.model_dump(), sort_keys=True)
    part = {"run_id": run["run_id"]}
    lake.overwrite_partition(T.EVAL_WINDOWS, pa.Table.from_pylist([{"run_id": run["run_id"], **r} for r in rows],
                                                                    schema=T.EVAL_WINDOWS.schema), extra=part)
    lake.overwrite_partition(T.EVAL_RUNS, pa.Table.from_pylist(
        [{"run_id": run["run_id"], "checkpoint": run["checkpoint"], "data_version": run["data_version"],
          "config": cfg, "finished_us": now, **s} for s in summaries], schema=T.EVAL_RUNS.schema), extra=part)
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
        **{f"scores_{sp}": dg.MetadataValue.md(score_table_md(summaries, sp)) for sp in config.splits
           if any(s["split"] == sp for s in summaries)},
        **_plots(rows, plans, windows, scenes, poses)})


def _plots(rows: list[dict], plans: dict, windows: list[EvalWindow], scenes: dict, poses: dict) -> dict:
    return {name: png(bev_png(panels, title=f"{name.replace('_', ' ')} of {policy}"), name)
            for name, (policy, panels) in extreme_panels(rows, plans, windows, scenes, poses).items()}
