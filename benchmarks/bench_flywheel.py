"""Does the flywheel turn? Three turns from the same start at an equal data budget per turn:

- random:   each turn acquires `--clips-per-turn` twin clips of scenarios drawn at random (the fleet's
            even mix), as a data team without the agent's failures would;
- mined:    each turn acquires the same number of clips, in the scenario mix of the data request
            mined from the previous turn's evaluation (evals/mining.py, transforms/twin/acquire.py);
- reweight: no new data; each turn retrains on the start's clips with samples repeated by the
            request's meta-action weights (core/request.py, trainers/data.py).

Every turn trains the same recipe from scratch on all its data (`--steps`, with each of `--seeds`
seeds: training noise is as large as a turn's effect, and the mean over seeds halves its variance
at two seeds), scores the agent on the benchmark set (evals.benchmark, 48 clips, never trained
on) and mines its hard examples for the next request. Printed per turn and strategy: EPDMS and
ADE@6.4 s with 95% intervals over the benchmark's clips, overall and on the targeted scenarios
(those the start's request asked for above an even share), and the paired gain over the start;
the baselines on the same windows; then the goal's ratio, mined gain / random gain on the
targeted scenarios (goal >= 1.5), and flywheel.png (score per turn).

    python -m benchmarks.bench_flywheel [--out benchmarks/out/flywheel] [--turns 3] [--steps 1200]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import multiprocessing
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from core.request import DataRequest, format_weights
from core.stats import clip_bootstrap, paired_difference
from evals.benchmark import BENCHMARK_SPLIT, BenchmarkConfig, build_benchmark, build_twin_lake, lake_twin_chunk
from evals.mining import FAILABLE, data_request, mine_hard_examples, windows_of
from evals.navsim_eval import evaluate, lake_windows
from evals.scorecard import BASELINES, FIELD_AGENT
from lake import io
from lake import tables as T
from trainers.agent import FieldAgent
from trainers.data import shards_from_manifest
from trainers.train import TrainConfig, train
from transforms.shards import ShardConfig
from transforms.source import TwinSource
from transforms.twin.acquire import acquire_twin, windows_per_clip
from transforms.twin.world import SCENARIOS
from transforms.twin.writer import TwinConfig

STRATEGIES = ("random", "mined", "reweight")
GOAL_RATIO = 1.5  # mined gain on the targeted scenarios >= 1.5 x the random gain
TRAIN_SEED = 2  # the start's twin (bench_learning uses 1; the benchmark its reserved seed)
METRICS = ("epdms", "ade_6p4s")


def _agent(ckpt: Path):
    agent = FieldAgent.load(ckpt)

    def act(images: list, commands: list[str], states: list) -> tuple[np.ndarray, np.ndarray]:
        out = agent.act_batch(images, commands, [tuple(float(x) for x in s) for s in states], noise_scale=0.0)
        return out.xy_m, out.yaw_rad

    return act


def _bench(out: Path, clips_per_scenario: int) -> tuple:
    bench = build_benchmark(out / "benchmark", out / "benchmark" / "twin",
                            BenchmarkConfig(clips_per_scenario=clips_per_scenario))
    windows, scenes, poses, _ = lake_windows(str(bench.root), [BENCHMARK_SPLIT], labeler="kinematic",
                                             labeler_version="1.0")
    targets = io.read(str(bench.root), T.UNICYCLE_TARGETS, columns=["clip_id", "t0_us", "v0_mps"]).to_pylist()
    v0_of = {(r["clip_id"], r["t0_us"]): r["v0_mps"] for r in targets}
    return windows, scenes, poses, {c: s.scenario for c, s in scenes.items()}, v0_of


def seed_mean(per_seed: list[list[dict]]) -> list[dict]:
    """The field agent's rows with every metric averaged over the seeds' evaluations (the baselines'
    rows as they are: they do not depend on the seed). A 0/1 sub-score averages to < 0.5 only where
    most seeds fail it."""
    if len(per_seed) == 1:
        return per_seed[0]
    key = ("policy", "split", "clip_id", "t0_us")
    others = [{tuple(r[k] for k in key): r for r in rows} for rows in per_seed[1:]]
    out = []
    for r in per_seed[0]:
        if r["policy"] == FIELD_AGENT:
            k = tuple(r[x] for x in key)
            r = dict(r)
            for m in (*METRICS, *FAILABLE):
                vals = [x[k][m] for x in others] + [r[m]]
                r[m] = None if any(v is None for v in vals) else float(np.mean(vals))
        out.append(r)
    return out


def train_and_score(lake: Path, recipe: TrainConfig, runs: Path, bench: tuple, *, budget: int,
                    request: DataRequest | None = None, seeds: tuple[int, ...] = (0,)) -> dict:
    """Train the recipe on the lake's shards (reweighted by `request` when given) with each seed, score
    it on the benchmark (the mean over seeds), mine the next request. Returns the turn's record."""
    windows, scenes, poses, scenario_of, v0_of = bench
    manifest = io.read(str(lake), T.SHARD_MANIFEST)
    shards = shards_from_manifest(manifest, lake / "shards", labeler="kinematic", labeler_version="1.0")
    labels = io.read(str(lake), T.COMMANDER_LABELS, columns=["clip_id", "meta_action"])
    clips = io.read(str(lake), T.CLIPS, columns=["clip_id", "split"])
    train_ids = {c for c, s in zip(clips.column("clip_id").to_pylist(), clips.column("split").to_pylist(),
                                   strict=True) if s == "train"}
    counts = Counter(m for c, m in zip(labels.column("clip_id").to_pylist(), labels.column("meta_action").to_pylist(),
                                       strict=True) if c in train_ids)
    if request is not None:
        recipe = dataclasses.replace(recipe, sample_weights=format_weights(request.sample_weights(counts)))
    per_seed, run_ids, wall = [], [], 0.0
    for seed in seeds:  # the same turn trained from several seeds: the agent's score is their mean
        res = train(dataclasses.replace(recipe, seed=seed), train_urls=shards.train, val_urls=shards.val, runs_dir=runs,
                    data_version=shards.data_version, log=lambda s: None, progress_bar=False)
        wall += max((r["wall_s"] for r in res.metrics if r["split"] == "train"), default=0.0)
        per_seed.append(evaluate(windows, _agent(res.checkpoint), scenes, poses, wrong_command=False, seed=0)[0])
        run_ids.append(res.run_id)
    rows = seed_mean(per_seed)
    hard, _ = mine_hard_examples(rows, scenario_of, v0_of)
    nxt = data_request(hard, windows_of(rows, scenario_of, v0_of), budget_windows=budget, run_id=run_ids[0])
    agent = [{"clip_id": r["clip_id"], "t0_us": r["t0_us"], "scenario": scenario_of.get(r["clip_id"]),
              **{m: r[m] for m in METRICS}} for r in rows if r["policy"] == FIELD_AGENT]
    return {"run_id": ",".join(run_ids), "train_clips": len(train_ids), "train_windows": shards.samples.get("train", 0),
            "wall_s": wall, "sample_weights": recipe.sample_weights, "hard": len(hard),
            "next_request": json.loads(nxt.to_json()), "agent": agent}


def run_strategy(strategy: str, out: str, turns: int, clips_per_turn: int, recipe: dict,
                 clips_per_scenario: int, seeds: tuple[int, ...] = (0,)) -> list[dict]:
    """One strategy's turns from a copy of the start (its own twin and lake)."""
    out_p, here = Path(out), Path(out) / strategy
    shutil.rmtree(here, ignore_errors=True)
    shutil.copytree(out_p / "start" / "twin", here / "twin", symlinks=True)
    shutil.copytree(out_p / "start" / "lake", here / "lake", symlinks=True)
    twin = TwinConfig(**json.loads((out_p / "start" / "twin.json").read_text()))
    start = json.loads((out_p / "start" / "turn0.json").read_text())
    bench, tc = _bench(out_p, clips_per_scenario), TrainConfig(**recipe)
    budget = clips_per_turn * windows_per_clip(twin.seconds)
    request = DataRequest.from_json(json.dumps(start["next_request"]))
    records = []
    for turn in range(1, turns + 1):
        t0 = time.perf_counter()
        acquired = []
        if strategy != "reweight":
            if strategy == "random":  # i.i.d. draws from the fleet's even scenario mix
                rng = np.random.default_rng([TRAIN_SEED, turn])
                draw = Counter(str(s) for s in rng.choice(SCENARIOS, clips_per_turn))
                ask = DataRequest(budget, dict(draw), note=f"random draw, turn {turn}")
            else:
                ask = request
            for a in acquire_twin(here / "twin", twin, ask, seed=turn, clips=clips_per_turn):
                lake_twin_chunk(here / "lake", TwinSource(here / "twin", twin), a.chunk_id, ShardConfig(),
                                log=lambda s: None)
                acquired += a.scenarios
        rec = train_and_score(here / "lake", tc, out_p / "runs", bench, budget=budget,
                              request=request if strategy == "reweight" else None, seeds=seeds)
        rec |= {"strategy": strategy, "turn": turn, "acquired": dict(Counter(acquired)),
                "answered_request": request.request_id, "turn_s": time.perf_counter() - t0}
        request = DataRequest.from_json(json.dumps(rec["next_request"]))
        (here / f"turn{turn}.json").write_text(json.dumps(rec))
        print(f"{strategy} turn {turn}: {rec['train_clips']} training clips, acquired {rec['acquired']}, "
              f"{rec['hard']} hard windows, {rec['turn_s']:.0f} s", flush=True)
        records.append(rec)
    return records


def baselines(out: Path, clips_per_scenario: int, targeted: set[str]) -> dict:
    """The baselines on the same benchmark windows (they do not change from turn to turn): the bar
    every turn's agent is read against. Returns the strongest one's record (best mean EPDMS)."""
    windows, scenes, poses, scenario_of, _ = _bench(out, clips_per_scenario)
    rows, _, _ = evaluate(windows, None, scenes, poses, wrong_command=False, seed=0)
    recs = {}
    for policy in BASELINES:
        rec = {"policy": policy, "agent": [{"clip_id": r["clip_id"], "t0_us": r["t0_us"],
                                            "scenario": scenario_of.get(r["clip_id"]), **{m: r[m] for m in METRICS}}
                                           for r in rows if r["policy"] == policy]}
        print(f"{policy} on the same windows: EPDMS {_fmt(estimate(rec, 'epdms'))}, targeted "
              f"{_fmt(estimate(rec, 'epdms', targeted))}; ADE@6.4 s {_fmt(estimate(rec, 'ade_6p4s'), '.2f')} m")
        recs[policy] = rec
    return max(recs.values(), key=lambda r: estimate(r, "epdms")["mean"])


def _values(rec: dict, metric: str, only: set[str] | None) -> dict[tuple[str, int], tuple[str, float]]:
    return {(a["clip_id"], a["t0_us"]): (a["clip_id"], a[metric]) for a in rec["agent"]
            if a[metric] is not None and (only is None or a["scenario"] in only)}


def estimate(rec: dict, metric: str, only: set[str] | None = None) -> dict:
    v = _values(rec, metric, only)
    e = clip_bootstrap([x for _, x in v.values()], [c for c, _ in v.values()])
    return {"mean": e.mean, "lo": e.lo, "hi": e.hi, "windows": e.windows, "clips": e.clips}


def gain(rec: dict, start: dict, metric: str, only: set[str] | None = None) -> dict:
    """The paired difference rec − start (another turn or strategy) over the same benchmark windows,
    with its interval."""
    a, b = _values(rec, metric, only), _values(start, metric, only)
    keys = sorted(set(a) & set(b))
    e = paired_difference([a[k][1] for k in keys], [b[k][1] for k in keys], [a[k][0] for k in keys])
    return {"mean": e.mean, "lo": e.lo, "hi": e.hi}


def _fmt(e: dict, spec: str = ".3f") -> str:
    return f"{e['mean']:{spec}} [{e['lo']:{spec}}, {e['hi']:{spec}}]"


def report(start: dict, records: dict[str, list[dict]], targeted: set[str], out: Path, strongest: dict) -> dict:
    print(f"\ntargeted scenarios (the start's request above an even share): {sorted(targeted)}\n")
    vs = strongest["policy"]
    print(f"| strategy | turn | training clips | EPDMS [95%] | ADE@6.4 s m [95%] | EPDMS − {vs} [95%] | "
          f"ADE − {vs} (m) [95%] | EPDMS targeted [95%] | EPDMS gain vs start, targeted [95%] | "
          "ADE change vs start, targeted (m; < 0 better) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = [("start", 0, start)] + [(s, r["turn"], r) for s in STRATEGIES for r in records[s]]
    table = []
    for s, t, r in rows:
        cell = {m: estimate(r, m) for m in METRICS} | {f"{m}_targeted": estimate(r, m, targeted) for m in METRICS}
        g = {m: gain(r, start, m, targeted) for m in METRICS} if t else None
        b = {m: gain(r, strongest, m) for m in METRICS}
        table.append({"strategy": s, "turn": t, "train_clips": r["train_clips"], **cell, "gain": g, "vs_baseline": b})
        print(f"| {s} | {t} | {r['train_clips']} | {_fmt(cell['epdms'])} | {_fmt(cell['ade_6p4s'], '.2f')} | "
              f"{_fmt(b['epdms'], '+.3f')} | {_fmt(b['ade_6p4s'], '+.2f')} | "
              f"{_fmt(cell['epdms_targeted'])} | {_fmt(g['epdms'], '+.3f') if g else '—'} | "
              f"{_fmt(g['ade_6p4s'], '+.2f') if g else '—'} |")
    last = {s: next(x for x in reversed(table) if x["strategy"] == s) for s in STRATEGIES}
    ratio = {}
    for m in METRICS:
        rnd, mined = last["random"]["gain"][m]["mean"], last["mined"]["gain"][m]["mean"]
        ratio[m] = mined / rnd if rnd * (1 if m == "epdms" else -1) > 0 else float("nan")
        what = "gain" if m == "epdms" else "change (m, < 0 is better)"
        print(f"\n{m}: {what} on the targeted scenarios after {len(records['mined'])} turns: mined {mined:+.3f}, random "
              f"{rnd:+.3f}; ratio mined / random {ratio[m]:.2f} (goal >= {GOAL_RATIO}; nan: random did not gain)")
    print("\nmined − random on the targeted scenarios, paired over the same windows (the ratio above is "
          "ill-conditioned when random gains ~0):")
    for k, (mr, rr) in enumerate(zip(records["mined"], records["random"], strict=True), 1):
        d = {m: gain(mr, rr, m, targeted) for m in METRICS}
        print(f"  turn {k}: EPDMS {_fmt(d['epdms'], '+.3f')}, ADE@6.4 s {_fmt(d['ade_6p4s'], '+.2f')} m")
    for s in STRATEGIES:
        seq = [start] + records[s]
        better = all(estimate(b, "epdms")["mean"] > estimate(a, "epdms")["mean"] for a, b in itertools.pairwise(seq))
        print(f"{s}: EPDMS improves every turn: {better}")
    _png(table, out / "flywheel.png")
    return {"table": table, "ratio": ratio, "targeted": sorted(targeted)}


def _png(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    start = next(x for x in table if x["strategy"] == "start")
    for ax, key, title in ((axes[0], "epdms", "EPDMS, all benchmark windows"),
                           (axes[1], "epdms_targeted", "EPDMS, targeted scenarios"),
                           (axes[2], "ade_6p4s", "ADE@6.4 s (m), all windows")):
        for k, s in enumerate(STRATEGIES):
            pts = [start] + [x for x in table if x["strategy"] == s]
            x = np.array([p["turn"] for p in pts]) + (k - 1) * 0.06
            m = np.array([p[key]["mean"] for p in pts])
            err = np.array([[p[key]["mean"] - p[key]["lo"] for p in pts], [p[key]["hi"] - p[key]["mean"] for p in pts]])
            ax.errorbar(x, m, yerr=err, fmt="o-", capsize=3, label=s)
        ax.set_xlabel("turn")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("the flywheel by turn: random vs mined acquisition vs reweighting (95% intervals over clips)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/out/flywheel")
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--start-chunks", type=int, default=4, help="the start's twin: this many chunks of 8 clips")
    ap.add_argument("--clips-per-turn", type=int, default=8, help="the data budget of a turn (clips of 20 s)")
    ap.add_argument("--steps", type=int, default=1200, help="training steps per turn (from scratch)")
    ap.add_argument("--workers", type=int, default=2, help="strategies run side by side")
    ap.add_argument("--clips-per-scenario", type=int, default=6, help="the benchmark set's size (8 scenarios)")
    ap.add_argument("--report-only", action="store_true", help="report the turns a previous run wrote under --out")
    ap.add_argument("--seeds", type=int, default=2, help="training seeds per turn; the agent's score is their mean")
    a = ap.parse_args()
    out = Path(a.out)
    t0 = time.perf_counter()
    recipe = {"profile": "tiny", "steps": a.steps}
    seeds = tuple(range(a.seeds))
    twin = TwinConfig(chunks=a.start_chunks, clips_per_chunk=8, seed=TRAIN_SEED)
    start_p = out / "start"
    if not (start_p / "turn0.json").exists():
        bench = _bench(out, a.clips_per_scenario)
        build_twin_lake(start_p / "lake", start_p / "twin", twin, ShardConfig(), log=lambda s: None)
        (start_p / "twin.json").write_text(json.dumps(dataclasses.asdict(twin)))
        rec = train_and_score(start_p / "lake", TrainConfig(**recipe), out / "runs", bench,
                              budget=a.clips_per_turn * windows_per_clip(twin.seconds), seeds=seeds)
        (start_p / "turn0.json").write_text(json.dumps(rec | {"strategy": "start", "turn": 0}))
    start = json.loads((start_p / "turn0.json").read_text())
    print(f"start: {start['train_clips']} training clips, run {start['run_id']}, {start['hard']} hard windows; "
          f"request {start['next_request']['scenarios']} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if a.report_only:
        done = {s: [json.loads((out / s / f"turn{t}.json").read_text()) for t in range(1, a.turns + 1)]
                for s in STRATEGIES}
    else:
        # spawn: a forked child of a process that used delta-rs' runtime panics in it
        with ProcessPoolExecutor(a.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = dict(zip(STRATEGIES, pool.map(run_strategy, STRATEGIES, [str(out)] * 3, [a.turns] * 3,
                                                 [a.clips_per_turn] * 3, [recipe] * 3, [a.clips_per_scenario] * 3,
                                                 [seeds] * 3),
                                        strict=True))
    req = start["next_request"]["scenarios"]
    targeted = {s for s, v in req.items() if v > 1 / len(req)}
    strongest = baselines(out, a.clips_per_scenario, targeted)
    result = report(start, done, targeted, out, strongest)
    (out / "flywheel.json").write_text(json.dumps(result, indent=1))
    print(f"\n{out / 'flywheel.png'}; figures {out / 'flywheel.json'}; {time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
