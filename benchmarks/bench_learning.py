"""Does the flywheel's agent learn? One recipe on 1x, 2x and 4x the training clips, scored on the
benchmark set against every baseline, with 95% intervals over the benchmark's clips.

- the benchmark set is evals.benchmark's (48 clips: every scenario 6 times, its own seed), built
  once under --out/benchmark;
- the training clips are one twin (seed 1) of 4x the base size, built once under --out/train; the
  1x and 2x runs read its first chunks, so each larger set holds the smaller ones;
- every run trains the same TrainConfig (the recipe; --steps scales it) with the same seed, then
  navsim_eval's scoring (evals.navsim_eval.evaluate) runs on the benchmark windows.

It prints, per training size, the agent's ADE@6.4 s and EPDMS against the strongest baseline (a
paired 95% interval), the ratio ADE(agent) / ADE(constant (a, κ)) against the issue's target of
0.8, the training time against the 30-minute CPU budget, then the per-scenario table and the
wrong-command ablation of the largest run, and writes learning_curve.png.

    python -m benchmarks.bench_learning [--out benchmarks/out/learning] [--base-chunks 4] [--multipliers 1 2 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.stats import verdict_word
from evals.benchmark import BENCHMARK_SPLIT, BenchmarkConfig, build_benchmark, build_twin_lake
from evals.navsim_eval import evaluate, lake_windows
from evals.scorecard import BASELINES, FIELD_AGENT, group_table_md, statistics
from lake import io
from lake import tables as T
from trainers.agent import FieldAgent
from trainers.data import shards_from_manifest
from trainers.train import TrainConfig, train
from transforms.shards import ShardConfig
from transforms.twin.writer import TwinConfig

TARGET_ADE_RATIO = 0.8  # the agent's ADE@6.4 s at most 0.8 x constant (a, κ)'s
BUDGET_S = 30 * 60  # CPU training budget per run, 2 cores
TRAIN_SEED = 1
CLIPS_PER_CHUNK = 8


def training_lake(out: Path, chunks: int) -> Path:
    """The training twin's lake with at least `chunks` chunks (built once; a stamp records its config,
    and a larger one already built serves: the runs read its first chunks)."""
    root = out / "train"
    twin = TwinConfig(chunks=chunks, clips_per_chunk=CLIPS_PER_CHUNK, seed=TRAIN_SEED)
    stamp = root / "lake" / "built.json"
    have = json.loads(stamp.read_text()) if stamp.exists() else None
    if have is None or {**have, "chunks": chunks} != twin.stamp() or have["chunks"] < chunks:
        build_twin_lake(root / "lake", root / "twin", twin, ShardConfig())
        stamp.write_text(json.dumps(twin.stamp()))
    return root / "lake"


def agent_fn(ckpt: Path, noise_scale: float):
    agent = FieldAgent.load(ckpt)

    def act(images: list, commands: list[str], states: list) -> tuple[np.ndarray, np.ndarray]:
        out = agent.act_batch(images, commands, [tuple(float(x) for x in s) for s in states], noise_scale=noise_scale)
        return out.xy_m, out.yaw_rad

    return act


def _est(stats: list[dict], policy: str, metric: str) -> dict:
    return next(s for s in stats if (s["split"], s["group_kind"], s["policy"], s["metric"])
                == (BENCHMARK_SPLIT, "all", policy, metric))


def curve_png(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = [p["train_clips"] for p in points]
    for ax, metric, label in ((axes[0], "ade_6p4s", "ADE@6.4 s on the benchmark (m)"),
                              (axes[1], "epdms", "EPDMS on the benchmark")):
        for policy, style in ((FIELD_AGENT, "o-"), *((b, "s--") for b in BASELINES)):
            e = [p["stats"][policy][metric] for p in points]
            m = np.array([s["mean"] for s in e])
            err = np.array([[s["mean"] - s["lo"] for s in e], [s["hi"] - s["mean"] for s in e]])
            ax.errorbar(x, m, yerr=err, fmt=style, capsize=3, label=policy)
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(v) for v in x])
        ax.set_xlabel("training clips")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("field agent vs baselines by training set size (95% intervals over benchmark clips)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/out/learning")
    ap.add_argument("--base-chunks", type=int, default=4, help=f"1x = this many chunks of {CLIPS_PER_CHUNK} clips")
    ap.add_argument("--multipliers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--recipe", default="{}", help="TrainConfig fields as JSON (default: the asset's defaults)")
    ap.add_argument("--noise-scale", type=float, default=0.0, help="the agent's sampling noise at evaluation")
    ap.add_argument("--clips-per-scenario", type=int, default=6)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bench = build_benchmark(out / "benchmark", out / "benchmark" / "twin",
                            BenchmarkConfig(clips_per_scenario=a.clips_per_scenario))
    windows, scenes, poses, _ = lake_windows(str(bench.root), [BENCHMARK_SPLIT], labeler="kinematic",
                                             labeler_version="1.0")
    scenario_of = {c: s.scenario for c, s in scenes.items()}
    lake = training_lake(out, a.base_chunks * max(a.multipliers))
    print(f"benchmark: {bench.clips} clips, {len(windows)} windows; data ready in {time.perf_counter() - t0:.0f} s")
    recipe = TrainConfig(**{"profile": "tiny", **json.loads(a.recipe)})
    manifest = io.read(str(lake), T.SHARD_MANIFEST)
    chunks = sorted(set(manifest.column("chunk").to_pylist()))
    points = []
    for m in sorted(a.multipliers):
        keep = chunks[:a.base_chunks * m]
        shards = shards_from_manifest(manifest.filter(pc.is_in(manifest.column("chunk"), pa.array(keep))),
                                      lake / "shards", labeler="kinematic", labeler_version="1.0")
        clips = io.read(str(lake), T.CLIPS)
        clips = clips.filter(pc.is_in(clips.column("chunk"), pa.array(keep)))
        n_train = sum(1 for s in clips.column("split").to_pylist() if s == "train")
        res = train(recipe, train_urls=shards.train, val_urls=shards.val, runs_dir=out / "runs",
                    data_version=shards.data_version, log=lambda s: None, progress_bar=False)
        # a run finished before (e.g. by another invocation on the other core) reports its recorded time
        wall = max((r["wall_s"] for r in res.metrics if r["split"] == "train"), default=0.0)
        rows, _, _ = evaluate(windows, agent_fn(res.checkpoint, a.noise_scale), scenes, poses, seed=0)
        stats = statistics(rows, scenario_of, [BENCHMARK_SPLIT], run_id=res.run_id, finished_us=0)
        pol = {p: {k: _est(stats, p, k) for k in ("ade_6p4s", "epdms")} for p in (FIELD_AGENT, *BASELINES)}
        points.append({"m": m, "train_clips": n_train, "train_windows": shards.samples.get("train", 0),
                       "wall_s": wall, "stats": pol, "all": stats, "run_id": res.run_id})
        ag, ca = pol[FIELD_AGENT]["ade_6p4s"], pol["constant_controls"]["ade_6p4s"]
        print(f"{m}x: {n_train} training clips trained in {wall:.0f} s "
              f"({wall / BUDGET_S:.2f}x the 30-min budget); ADE ratio agent / constant (a, κ) "
              f"{ag['mean'] / ca['mean']:.2f} (target <= {TARGET_ADE_RATIO})", flush=True)

    print("\n| training clips | windows | train s | metric | field agent [95%] | constant (a, κ) | constant velocity | "
          "agent − strongest [95%] | verdict |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---|")
    for p in points:
        for k, hib in (("ade_6p4s", False), ("epdms", True)):
            s = p["stats"]
            ag = s[FIELD_AGENT][k]
            word = verdict_word(ag["diff_lo"], ag["diff_hi"], higher_is_better=hib)
            print(f"| {p['train_clips']} | {p['train_windows']} | {p['wall_s']:.0f} | {k} | {ag['mean']:.3f} "
                  f"[{ag['lo']:.3f}, {ag['hi']:.3f}] | {s['constant_controls'][k]['mean']:.3f} | "
                  f"{s['constant_velocity'][k]['mean']:.3f} | {ag['diff_mean']:+.3f} [{ag['diff_lo']:+.3f}, "
                  f"{ag['diff_hi']:+.3f}] ({ag['vs']}) | {word} |")
    last = points[-1]
    for metric in ("ade_6p4s", "epdms"):
        print(f"\nper scenario, {last['train_clips']} training clips ({metric}; the last column is the wrong-command "
              f"ablation's paired difference to the agent):\n" + group_table_md(last["all"], BENCHMARK_SPLIT, "scenario",
                                                                                 metric))
    curve_png(points, out / "learning_curve.png")
    (out / "learning.json").write_text(json.dumps(
        [{k: v for k, v in p.items() if k != "all"} | {"recipe": dataclasses.asdict(recipe)} for p in points],
        indent=1, default=str))
    print(f"\nlearning curve: {out / 'learning_curve.png'}; figures: {out / 'learning.json'}")


if __name__ == "__main__":
    main()
