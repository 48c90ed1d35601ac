"""navsim_eval: the trained field agent and baselines scored NAVSIM-style on held-out windows."""

import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
from pydantic import Field

from dagster_project.assets._meta import png
from dagster_project.partitions import POOL_ACCELERATOR
from dagster_project.resources import LakeResource
from evals.navsim_eval import (
    LOGGED,
    EvalWindow,
    eval_shards,
    evaluate,
    extreme_panels,
    pick_run,
    poses_at,
    read_windows,
    score_table_md,
    summarize,
)
from evals.scene import ClipScene, clip_scenes
from labelers.build import load_twin_gt
from lake import tables as T
from transforms.pai_layout import chunk_id_of
from transforms.plots import bev_png
from transforms.source import chunk_files_from_manifest


class NavsimEvalConfig(dg.Config):
    run_id: str = ""  # the training run to score; "" = the latest finished one in eval.training_runs
    splits: list[str] = Field(default_factory=lambda: ["val", "test"])  # held-out splits (train would flatter)
    max_windows: int = 0  # 0 = every window of those splits
    wrong_command: bool = True  # also score the agent given another window's command
    seed: int = 0  # the agent's sampling noise and the wrong-command pairing
    batch_size: int = 16
    device: str = "auto"  # cuda where available, else cpu
    labeler: str = "kinematic"  # the shards' labels: the commands the agent is given
    labeler_version: str = "1.0"


def _world(lake: LakeResource, windows: list[EvalWindow]) -> tuple[dict[str, ClipScene], dict]:
    """The twin's scenes (none for real PAI chunks) and ego poses at each window's t0."""
    scenes: dict[str, ClipScene] = {}
    poses: dict = {}
    for chunk in sorted({w.chunk for w in windows}):
        files = chunk_files_from_manifest(lake.read(T.CHUNKS, chunk=chunk), chunk_id_of(chunk))
        gt = load_twin_gt(files)
        if gt is None:
            continue
        scenes |= clip_scenes(gt)
        keys = [(w.clip_id, w.t0_us) for w in windows if w.chunk == chunk]
        poses |= poses_at(lake.read(T.EGOMOTION, chunk=chunk), keys)
    return scenes, poses


def _agent_fn(checkpoint: str, device: str):  # noqa: ANN202 (a closure over the loaded policy)
    import torch

    from trainers.agent import FieldAgent

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    agent = FieldAgent.load(checkpoint, device=device)

    def act(images: list, commands: list[str], states: list) -> tuple[np.ndarray, np.ndarray]:
        out = agent.act_batch(images, commands, [tuple(float(x) for x in s) for s in states])
        return out.xy_m, out.yaw_rad

    return act


@dg.asset(group_name="evaluation", kinds={"pytorch", "delta"}, deps=["train_field_agent"], pool=POOL_ACCELERATOR)
def navsim_eval(context: dg.AssetExecutionContext, config: NavsimEvalConfig, lake: LakeResource) -> dg.MaterializeResult:
    """PDMS/EPDMS, their sub-scores and ADE/FDE of the field agent, baselines and the logged future, per window."""
    run = pick_run(lake.read(T.TRAINING_RUNS).to_pylist(), config.run_id)
    urls = eval_shards(lake.read(T.SHARD_MANIFEST), str(Path(lake.root) / "shards"), labeler=config.labeler,
                       labeler_version=config.labeler_version, splits=config.splits)
    windows, unmatched = read_windows(urls, lake.read(T.UNICYCLE_TARGETS), max_windows=config.max_windows)
    if unmatched:
        context.log.warning(f"{unmatched} shard samples have no unicycle_targets row (stale shards?) and were skipped")
    scenes, poses = _world(lake, windows)
    context.log.info(f"scoring run {run['run_id']} on {len(windows)} windows ({len(scenes)} clips with twin ground truth)")
    rows, plans, wrong = evaluate(windows, _agent_fn(run["checkpoint"], config.device), scenes, poses,
                                  wrong_command=config.wrong_command, seed=config.seed, batch=config.batch_size)
    summaries = summarize(rows, config.splits)
    now = time.time_ns() // 1000
    cfg = json.dumps(config.model_dump(), sort_keys=True)
    lake.overwrite_partition(T.EVAL_WINDOWS, pa.Table.from_pylist([{"run_id": run["run_id"], **r} for r in rows],
                                                                    schema=T.EVAL_WINDOWS.schema),
                             extra={"run_id": run["run_id"]})
    lake.overwrite_partition(T.EVAL_RUNS, pa.Table.from_pylist(
        [{"run_id": run["run_id"], "checkpoint": run["checkpoint"], "data_version": run["data_version"],
          "config": cfg, "finished_us": now, **s} for s in summaries], schema=T.EVAL_RUNS.schema),
        extra={"run_id": run["run_id"]})
    table = score_table_md(summaries)
    context.log.info("scores over all evaluated windows:\n" + table)
    return dg.MaterializeResult(metadata={
        "run_id": run["run_id"], "checkpoint": dg.MetadataValue.path(run["checkpoint"]),
        "windows": len(windows), "scored_windows": sum(r["epdms"] is not None for r in rows if r["policy"] == LOGGED),
        "wrong_command_windows": sum(c is not None for c in wrong),
        "scores": dg.MetadataValue.md(table),
        **{f"scores_{sp}": dg.MetadataValue.md(score_table_md(summaries, sp)) for sp in config.splits
           if any(s["split"] == sp for s in summaries)},
        **_headline(summaries), **_plots(rows, plans, windows, scenes, poses)})


def _headline(summaries: list[dict]) -> dict[str, float]:
    out = {}
    for s in summaries:
        if s["split"] == "all":
            for m in ("epdms", "pdms", "ade_6p4s"):
                if s[m] is not None:
                    out[f"{s['policy']}_{m}"] = round(float(s[m]), 4)
    return out


def _plots(rows: list[dict], plans: dict, windows: list[EvalWindow], scenes: dict, poses: dict) -> dict:
    return {name: png(bev_png(panels, title=f"{name.replace('_', ' ')} of {policy}"), name)
            for name, (policy, panels) in extreme_panels(rows, plans, windows, scenes, poses).items()}
