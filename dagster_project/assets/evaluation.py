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
from evals.closed_loop.evaluate import AGENTS, evaluate_closed_loop
from evals.closed_loop.evaluate import headline as closed_loop_headline
from evals.closed_loop.metrics import scenario_table_md, table_md
from evals.config import ClosedLoopConfig, EvalConfig
from evals.leaderboard import leaderboard, leaderboard_md, training_curves
from evals.navsim_eval import (
    FIELD_AGENT,
    LOGGED,
    EvalWindow,
    evaluate,
    extreme_panels,
    pick_run,
    score_table_md,
    summarize,
)
from evals.scorecard import HEADLINE_METRICS, group_table_md, headline, headline_metadata, headline_split, statistics
from evals.viewer import worst_windows_recording
from lake import tables as T
from transforms.ids import inside
from transforms.plots import bev_png, curves_png
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
    # built once: its data version stays, so a re-materialization does not make navsim_eval unsynced
    version = dg.DataVersion(f"seed{BENCHMARK_SEED}:{bench.clips}:{bench.windows}")
    return dg.MaterializeResult(data_version=version, metadata={
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
                                  batch=cfg.batch_size, log=context.log.info)
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
        **_plots(rows, plans, windows, scenes, poses),
        **_recording(rows, plans, windows, inside(Path(lake.root) / "viewer", f"navsim_eval-{run['run_id']}.rrd"))})


def _recording(rows: list[dict], plans: dict, windows: list[EvalWindow], path: Path) -> dict:
    path = worst_windows_recording(rows, plans, windows, path)
    return {"rerun_recording": dg.MetadataValue.path(str(path)),
            "rerun_open": dg.MetadataValue.md(f"The agent's 8 worst windows, worst first (camera, command, state, "
                                              f"(a, κ), every plan): `rerun {path}` (pip's `rerun-sdk`, offline)")}


def _plots(rows: list[dict], plans: dict, windows: list[EvalWindow], scenes: dict, poses: dict) -> dict:
    return {name: png(bev_png(panels, title=f"{name.replace('_', ' ')} of {policy}"), name)
            for name, (policy, panels) in extreme_panels(rows, plans, windows, scenes, poses).items()}


ClosedLoopEvalConfig = derived_config(
    ClosedLoopConfig, name="ClosedLoopEvalConfig", doc="The closed loop: evals/config.py declares every field.")


def _agent_act(checkpoint: str, device: str):  # noqa: ANN202 (a bound method)
    import torch

    from trainers.agent import FieldAgent

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return FieldAgent.load(checkpoint, device=device).act


@dg.asset(group_name="evaluation", kinds={"pytorch", "delta"}, deps=["train_field_agent"], pool=POOL_ACCELERATOR)
def closed_loop_eval(context: dg.AssetExecutionContext, config: ClosedLoopEvalConfig,
                     lake: LakeResource) -> dg.MaterializeResult:
    """The field agent driving the twin at 10 Hz with a 1 Hz Commander, with and without the safety shield,
    against constant (a, κ) and the twin's own driver: route completion, infractions, driving score, command
    success, comfort, interventions and planning latency per route, with intervals over routes per scenario."""
    cfg = to_dataclass(config, ClosedLoopConfig)
    run = pick_run(lake.read(T.TRAINING_RUNS).to_pylist(), cfg.run_id)
    act = _agent_act(run["checkpoint"], cfg.device) if set(cfg.policies) & set(AGENTS) else None
    # the run id comes from a table: it names a folder only if it stays inside the lake's closed_loop/
    video_dir = inside(Path(lake.root) / "closed_loop", str(run["run_id"])) if cfg.videos else None
    res = evaluate_closed_loop(act, cfg, video_dir=video_dir, log=context.log.info)
    now = time.time_ns() // 1000
    recorded = json.dumps(config.model_dump(), sort_keys=True)
    lake.overwrite_partition(T.CLOSED_LOOP_ROUTES, pa.Table.from_pylist(
        [{"run_id": run["run_id"], **r, "config": recorded, "finished_us": now} for r in res.rows],
        schema=T.CLOSED_LOOP_ROUTES.schema), extra={"run_id": run["run_id"]})
    lines = closed_loop_headline(res.rows, res.summary, seed=cfg.seed)
    for line in lines:
        context.log.info(line)
    return dg.MaterializeResult(metadata={
        "headline": dg.MetadataValue.md("\n".join(f"- {x}" for x in lines)),
        "scores": dg.MetadataValue.md(table_md(res.summary)),
        **{f"{m}_by_scenario": dg.MetadataValue.md(scenario_table_md(res.summary, m))
           for m in ("driving_score", "route_completion", "command_success", "collisions")},
        **{f"video_{tag}": dg.MetadataValue.path(str(p)) for tag, p in res.videos.items()},
        "run_id": run["run_id"], "routes": len({r["route_id"] for r in res.rows}), "rows": len(res.rows)})


@dg.asset(group_name="evaluation", kinds={"delta"}, deps=["navsim_eval", "closed_loop_eval"])
def runs(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The leaderboard: every evaluated run × policy, EPDMS first with 95% intervals over clips, ADE, PDMS and
    the closed loop's driving score (interval over routes), beside the last runs' training curves overlaid."""
    trained = lake.read(T.TRAINING_RUNS).to_pylist()
    rows = leaderboard(lake.read(T.EVAL_RUNS).to_pylist(), lake.read(T.EVAL_STATS).to_pylist(),
                       lake.read(T.CLOSED_LOOP_ROUTES).to_pylist(), trained)
    for run_id in sorted({r["run_id"] for r in rows}):  # per run: a run evaluated again replaces its rows
        lake.overwrite_partition(T.RUNS, pa.Table.from_pylist([r for r in rows if r["run_id"] == run_id],
                                                              schema=T.RUNS.schema), extra={"run_id": run_id})
    panels = training_curves(lake.read(T.TRAINING_METRICS).to_pylist(), trained)
    agents = [r for r in rows if r["policy"] == FIELD_AGENT and r["epdms"] is not None]
    best = max(agents, key=lambda r: r["epdms"], default=None)
    context.log.info(f"leaderboard: {len(rows)} rows over {len({r['run_id'] for r in rows})} runs")
    return dg.MaterializeResult(metadata={
        "leaderboard": dg.MetadataValue.md(leaderboard_md(rows)),
        **({"training_curves": png(curves_png(panels, title=f"the last {len(next(iter(panels.values())))} runs"),
                                   "training curves")} if panels else {}),
        "best_agent": f"{best['run_id']}: EPDMS {best['epdms']:.3f} on {best['split']}" if best else "none evaluated",
        "runs": len({r["run_id"] for r in rows}), "rows": len(rows)})
