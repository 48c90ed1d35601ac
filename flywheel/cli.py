"""`flywheel`: the project's command line.

  flywheel twin --out DIR [--chunks N --clips M --seed S --width W --height H --seconds T ...]
                [--hf-cache DIR --revision SHA]     write an offline PAI twin (optionally as an HF cache)
  flywheel discover                                 register the source's chunks as Dagster partitions
  flywheel materialize --select A,B [--partition chunk_0000|all]
                                                    run `dagster asset materialize` per partition
  flywheel train [--profile tiny|full --steps N --batch-size B --lr LR --labeler L --restart ...]
                                                    materialize train_field_agent with that config
                                                    (a flag per field of trainers/config.py)
  flywheel eval [--run-id R --splits S.. --max-windows N ...]
                                                    materialize navsim_eval (evals/config.py), print its scores
  flywheel closed-loop [--scenarios S.. --routes-per-scenario N --seconds T --delay-ms D ...]
                                                    materialize closed_loop_eval (evals/config.py): the agent
                                                    drives the twin; prints the closed-loop tables
  flywheel turn [--steps N --method auto|twin|triage|reweight --budget-windows W ...]
                                                    one turn of the flywheel by hand: train, evaluate, mine
                                                    the hard examples, acquire, ingest; prints what changed
  flywheel view CLIP [--run R --out F --no-open]     a clip's windows in the Rerun viewer: camera, command,
                                                    state, (a, κ), the logged future and every plan
  flywheel tables                                   row counts of the lake's tables
  flywheel demo                                     discover + materialize the graph + print the tables
  flywheel deploy-local [--root .deploy --ui-port 3000 --code-port 4000 --pg-port P]
                                                    the compose deployment without Docker: PostgreSQL,
                                                    code server, daemon, webserver; Ctrl-C stops them
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from core.config import Knob, build, knobs
from evals.config import ClosedLoopConfig, EvalConfig
from flywheel.settings import Settings
from trainers.config import TrainConfig, TrainData
from transforms.twin.writer import TwinConfig

INGEST_ASSETS = "raw_chunks,clip_index,egomotion,frames"
# the per-chunk part of the graph the main job runs, then the assets over all chunks
CHUNK_ASSETS = f"{INGEST_ASSETS},unicycle_targets,commander_labels,webdataset_shards"
# one run: the benchmark set (built once, then reused), training, and the eval of the checkpoint just trained
GLOBAL_ASSETS = "benchmark_set,train_field_agent,navsim_eval"
# The demo's 12 training clips overfit long before the asset's 4800 steps (and those take ~8 min
# here): it trains 1200, which keeps the whole job within ~10 minutes on 2 cores.
DEMO_TRAIN = {"steps": 1200}
# A small closed loop: the four missions, one route each, 15 s (the agent drives in real time).
DEMO_CLOSED_LOOP = {"scenarios": ["overtake_left", "stop_and_go", "lane_change_left", "turn"], "seconds": 15.0}


def add_knobs(parser: argparse.ArgumentParser, *dcs: type, exclude: tuple[str, ...] = (),
              aliases: dict[str, tuple[str, ...]] | None = None) -> None:
    """One flag per field of the config dataclasses (core/config.py): --field-name, with the field's
    help and default. A flag left out keeps the default (the asset's, for a run)."""
    for dc in dcs:
        for k in knobs(dc, exclude=tuple(e for e in exclude if e in dc.__dataclass_fields__)):
            kw: dict = {"dest": k.name, "default": None,
                        "help": f"{k.help} (default: {_shown(k)})"}
            if k.scalar is bool:
                kw["action"] = argparse.BooleanOptionalAction
            else:
                kw |= {"type": k.scalar} | ({"choices": k.choices} if k.choices else {}) | ({"nargs": "+"} if k.many else {})
            parser.add_argument(f"--{k.name.replace('_', '-')}", *(aliases or {}).get(k.name, ()), **kw)


def _shown(k: Knob) -> str:
    if k.many:
        return " ".join(map(str, k.default))
    return '""' if k.default == "" else str(k.default)


def knob_values(args: argparse.Namespace, *dcs: type) -> dict:
    """The config fields given on the command line (lists for tuple fields)."""
    return {k.name: getattr(args, k.name) for dc in dcs for k in knobs(dc) if getattr(args, k.name, None) is not None}


def _instance():  # noqa: ANN202 (DagsterInstance; dagster is imported lazily to keep `twin` fast)
    from dagster import DagsterInstance

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise SystemExit("DAGSTER_HOME is not set: export DAGSTER_HOME=<a directory> (e.g. $PWD/.dagster_home) so "
                         "partitions and runs persist between commands")
    Path(home).mkdir(parents=True, exist_ok=True)
    return DagsterInstance.get()


def cmd_twin(args: argparse.Namespace) -> int:
    from core.progress import parse_progress
    from flywheel.terminal import Bars
    from transforms.source import write_hf_cache
    from transforms.twin.writer import write_twin

    cfg = build(TwinConfig, knob_values(args, TwinConfig))
    t, bars = time.perf_counter(), Bars()
    try:
        root = write_twin(Path(args.out), cfg, overwrite=args.overwrite, log=lambda line: bars.update(*parse_progress(line)))
    finally:
        bars.close()
    print(f"twin: {cfg.chunks} chunks x {cfg.clips_per_chunk} clips ({cfg.width}x{cfg.height}, {cfg.seconds:g} s) "
          f"written to {root} in {time.perf_counter() - t:.1f} s")
    if args.hf_cache:
        snap = write_hf_cache(root, Path(args.hf_cache), args.revision)
        print(f"twin: HF cache layout at {snap} (use HF_HUB_OFFLINE=1 FLYWHEEL_SOURCE=hub "
              f"FLYWHEEL_HF_CACHE={args.hf_cache} FLYWHEEL_HF_REVISION={args.revision})")
    return 0


def discover(settings: Settings) -> list[str]:
    """Register every chunk the configured source offers; returns the keys that were new."""
    from dagster_project.partitions import CHUNKS_PARTITION
    from transforms.pai_layout import chunk_key

    instance = _instance()
    keys = [chunk_key(c) for c in settings.make_source().list_chunks()]
    known = set(instance.get_dynamic_partitions(CHUNKS_PARTITION))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(CHUNKS_PARTITION, new)
    return new


def cmd_discover(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    new = discover(settings)
    print(f"discover: source={settings.source}: {len(new)} new chunk partitions {new}")
    return 0


def materialize(select: str, partitions: list[str], run_config: dict | None = None, *, echo: bool = False) -> None:
    """One real Dagster run per partition, exactly what a user types (visible in the UI).

    `echo` streams the run's log lines (training progress) instead of keeping them for an error.
    The steps run in the run's own process: a step subprocess per asset and check (Dagster's
    default) re-imports the code location (torch, LeRobot, great-expectations: 5-10 s each),
    which on 2 cores costs more than the steps' parallelism gives. Runs from the UI keep the default.
    """
    from flywheel.terminal import Bars, run_streaming

    config = {**(run_config or {}), "execution": {"config": {"in_process": {}}}}
    bars = Bars()
    try:
        for i, key in enumerate(partitions):
            cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "dagster_project", "--select", select]
            cmd += ["--partition", key] if key else []
            cmd += ["--config-json", json.dumps(config)]
            bars.write(f"materialize: {select} {key}")
            rc, tail = run_streaming(cmd, bars, echo=echo)
            if rc != 0:
                if not echo:
                    sys.stderr.write(tail[-12000:])
                raise SystemExit(f"materialize failed for {select} {key} (exit {rc})")
            if len(partitions) > 1:
                bars.update("partitions", i + 1, len(partitions))
    finally:
        bars.close()


def cmd_materialize(args: argparse.Namespace) -> int:
    from dagster_project.partitions import CHUNKS_PARTITION

    keys = args.partition
    if keys == ["all"]:
        keys = sorted(_instance().get_dynamic_partitions(CHUNKS_PARTITION))
    materialize(args.select, keys or [""])
    lake = Settings.from_env().lake
    if "data_qa_report" in args.select.split(","):
        print_qa_summary(lake)
    else:  # what the checks of these runs found
        print_qa_failures(lake, set(keys) if keys else None)
    return 0


def table_counts(lake: str) -> dict[str, int]:
    from lake import io
    from lake.tables import ALL_TABLES

    return {f"{t.layer}.{t.name}": io.read(lake, t, columns=[t.schema.names[0]]).num_rows for t in ALL_TABLES}


def cmd_tables(args: argparse.Namespace) -> int:
    from lake.io import exists
    from lake.tables import ALL_TABLES

    lake = Settings.from_env().lake
    counts = table_counts(lake)
    if not any(exists(lake, t) for t in ALL_TABLES):
        print(f"flywheel tables: {Path(lake).resolve()} holds no lake table: set FLYWHEEL_LAKE to a lake root "
              "(the demo writes ./lakehouse), or run `flywheel demo` first", file=sys.stderr)
        return 2
    print(f"lake at {Path(lake).resolve()}")
    for name, n in counts.items():
        print(f"{name:28s} {n:>10,d}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the configured source (the twin by default): discover, then every chunk."""
    from dagster_project.partitions import CHUNKS_PARTITION

    settings = Settings.from_env()
    t0 = time.perf_counter()
    discover(settings)
    keys = sorted(_instance().get_dynamic_partitions(CHUNKS_PARTITION))
    materialize(CHUNK_ASSETS, keys)
    t1 = time.perf_counter()
    print(f"demo: {len(keys)} chunks through {CHUNK_ASSETS} in {t1 - t0:.0f} s", flush=True)
    materialize(GLOBAL_ASSETS, [""], {"ops": {"train_field_agent": {"config": DEMO_TRAIN}}})
    # the closed loop, then the leaderboard of every evaluated run (it reads both evaluations)
    materialize("closed_loop_eval,runs", [""], {"ops": {"closed_loop_eval": {"config": DEMO_CLOSED_LOOP}}})
    # after everything it reports on, in a run of its own: it renders what every check found
    materialize("data_qa_report", [""])
    print(f"\ndemo: {GLOBAL_ASSETS},closed_loop_eval,runs,data_qa_report in {time.perf_counter() - t1:.0f} s; "
          f"lake at {Path(settings.lake).resolve()}")
    print_eval_summary(settings.lake)  # the headline first: the agent against the strongest baseline
    print_closed_loop_summary(settings.lake)
    print_leaderboard(settings.lake)
    print_training_summary(settings.lake)
    print_qa_summary(settings.lake)
    return cmd_tables(args)


def print_qa_summary(lake: str) -> None:
    """What the data-QA checks found, and where the HTML report is."""
    from lake import io
    from lake import tables as T

    results = io.read(lake, T.QA_RESULTS).to_pylist() if io.exists(lake, T.QA_RESULTS) else []
    parts = {(r["table_name"], r["partition_key"]) for r in results}
    failed = [r for r in results if not r["success"]]
    print(f"\ndata QA: {len(parts)} table partitions, {len(results)} expectations, {len(failed)} failed "
          f"({sum(r['blocking'] for r in failed)} blocking); report: {Path(lake).resolve() / 'qa_reports' / 'latest.html'} "
          f"(past validations: index.html beside it)")
    _print_failed(failed)


def print_qa_failures(lake: str, partitions: set[str] | None) -> None:
    """The failed expectations recorded for these partitions (all, for None), if any."""
    from lake import io
    from lake import tables as T

    if not io.exists(lake, T.QA_RESULTS):
        return
    failed = [r for r in io.read(lake, T.QA_RESULTS).to_pylist()
              if not r["success"] and (partitions is None or r["partition_key"] in partitions)]
    if failed:
        print(f"\ndata QA: {len(failed)} failed expectations ({sum(r['blocking'] for r in failed)} blocking) in "
              f"{len({(r['table_name'], r['partition_key']) for r in failed})} table partitions")
        _print_failed(failed)


def _print_failed(failed: list[dict], limit: int = 20) -> None:
    from qa.report import failure_text

    for r in failed[:limit]:
        print(f"  FAILED {r['table_name']}[{r['partition_key']}]: {r['check']} ({r['unexpected_count']} rows): "
              f"{failure_text(r['observed'])[:240]}")
    if len(failed) > limit:
        print(f"  ... and {len(failed) - limit} more: see the report")


def print_leaderboard(lake: str, limit: int = 12) -> None:
    """The `runs` leaderboard as the asset last wrote it (run x policy, EPDMS first, with intervals)."""
    from evals.leaderboard import leaderboard_md
    from lake import io
    from lake.tables import RUNS

    rows = io.read(lake, RUNS).to_pylist()
    if rows:
        rows.sort(key=lambda r: (-(r["epdms"] if r["epdms"] is not None else -1.0), -(r["driving_score"] or 0.0)))
        print(f"\nruns leaderboard ({len({r['run_id'] for r in rows})} runs; EPDMS and ADE with 95% intervals over "
              "clips, driving score over routes):")
        print(leaderboard_md(rows, limit))


def print_training_summary(lake: str) -> None:
    """The latest training run's last validation against the strongest baseline, as the asset recorded it."""
    from lake import io
    from lake.tables import TRAINING_METRICS, TRAINING_RUNS
    from trainers.train import val_headline

    runs = io.read(lake, TRAINING_RUNS).to_pylist()
    if not runs:
        return
    r = max(runs, key=lambda r: r["finished_us"])
    val = [m for m in io.read(lake, TRAINING_METRICS, where={"run_id": r["run_id"]}).to_pylist() if m["split"] == "val"]
    last = max((m["step"] for m in val), default=None)
    final = {m["name"]: m["value"] for m in val if m["step"] == last}
    if "d_ca_ade_6p4s" in final:
        print(f"train_field_agent: run {r['run_id']} ({r['steps']} steps, {r['profile']}), checkpoint {r['checkpoint']}\n"
              f"  {val_headline(final)}")


def print_closed_loop_summary(lake: str) -> None:
    """The latest closed_loop_eval: its headline, the score table and driving score per scenario."""
    from evals.closed_loop.evaluate import headline
    from evals.closed_loop.metrics import scenario_table_md, summarize, table_md
    from evals.config import CLOSED_LOOP_POLICIES
    from lake import io
    from lake.tables import CLOSED_LOOP_ROUTES

    rows = io.read(lake, CLOSED_LOOP_ROUTES).to_pylist()
    if not rows:
        return
    latest = max(r["finished_us"] for r in rows)
    order = {p: i for i, p in enumerate(CLOSED_LOOP_POLICIES)}  # the lake returns rows in no order
    rows = sorted((r for r in rows if r["finished_us"] == latest), key=lambda r: (order[r["policy"]], r["route_id"]))
    summary = summarize(rows)
    print(f"\nclosed_loop_eval: run {rows[0]['run_id']}, {len({r['route_id'] for r in rows})} routes in the twin "
          "(means [95% interval over routes])")
    for line in headline(rows, summary):
        print(f"  {line}")
    print(table_md(summary))
    print("\n" + scenario_table_md(summary, "driving_score"))
    for r in rows:
        if r["video"]:
            print(f"  video: {r['video']}")


def print_eval_summary(lake: str) -> None:
    """The latest navsim_eval: the headline (the agent against the strongest baseline, with intervals),
    the per-scenario table of the headline split, and the score table of all evaluated windows."""
    from evals.navsim_eval import score_table_md
    from evals.scorecard import group_table_md, headline, headline_split
    from lake import io
    from lake.tables import EVAL_RUNS, EVAL_STATS

    rows = io.read(lake, EVAL_RUNS).to_pylist()
    if not rows:
        return
    latest = max(r["finished_us"] for r in rows)
    rows = [r for r in rows if r["finished_us"] == latest]
    stats = io.read(lake, EVAL_STATS, where={"run_id": rows[0]["run_id"]}).to_pylist()
    splits = sorted({r["split"] for r in rows} - {"all"})
    print(f"\nnavsim_eval: run {rows[0]['run_id']} on {'+'.join(splits)} windows")
    if stats:
        for line in headline(stats):
            print(f"  {line}")
        split = headline_split(stats)
        for m in ("epdms", "ade_6p4s"):
            print(f"\nper scenario, {split}:\n" + group_table_md(stats, split, "scenario", m))
    print("\nall evaluated windows (ADE/FDE in m; NAVSIM sub-scores and PDMS/EPDMS in [0, 1] on the twin's ground truth):")
    print(score_table_md(rows))


def cmd_view(args: argparse.Namespace) -> int:
    """Write a Rerun recording of a clip's windows, in time order: the front camera, the command, the ego
    state, the (a, κ) targets, the logged future and every policy's plan (the baselines, and the agent of
    --run, else of the latest training run), with navsim_eval's scores where it scored the clip; then open
    it in the Rerun viewer (`rerun FILE`, offline) unless --no-open."""
    import shutil

    from evals.viewer import clip_recording

    lake = Settings.from_env().lake
    rec = clip_recording(lake, args.clip, run_id=args.run, out=args.out or None, agent=not args.baselines_only)
    print(f"view: {rec.windows} windows of clip {rec.clip_id} ({'agent ' + rec.run_id if rec.run_id else 'baselines only'})"
          f" -> {rec.path.resolve()}")
    viewer = shutil.which("rerun") or str(Path(sys.executable).with_name("rerun"))
    if args.open:
        if not Path(viewer).exists():
            print("view: the `rerun` viewer is not on PATH: pip install rerun-sdk (it is in requirements.lock)", file=sys.stderr)
            return 1
        subprocess.Popen([viewer, str(rec.path)], start_new_session=True)
        print(f"view: opened in {viewer}")
    else:
        print(f"view: open it with `rerun {rec.path}`")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """train_field_agent through Dagster with the flags as run config (unset flags: the asset's defaults)."""
    cfg = knob_values(args, TrainConfig, TrainData)
    materialize("train_field_agent", [""], {"ops": {"train_field_agent": {"config": cfg}}} if cfg else None, echo=True)
    print_training_summary(Settings.from_env().lake)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """navsim_eval through Dagster with the flags as run config, then its score table."""
    cfg = knob_values(args, EvalConfig)
    materialize("navsim_eval", [""], {"ops": {"navsim_eval": {"config": cfg}}} if cfg else None)
    print_eval_summary(Settings.from_env().lake)
    return 0


def cmd_closed_loop(args: argparse.Namespace) -> int:
    """closed_loop_eval through Dagster with the flags as run config, then its tables."""
    cfg = knob_values(args, ClosedLoopConfig)
    materialize("closed_loop_eval", [""], {"ops": {"closed_loop_eval": {"config": cfg}}} if cfg else None)
    print_closed_loop_summary(Settings.from_env().lake)
    return 0


TURN_ASSETS = f"{GLOBAL_ASSETS},hard_examples,acquisitions"


def _turn_state(lake: str) -> dict:
    """What a turn changes: the latest eval's headline, request and acquisition, and the training data."""
    from evals.scorecard import headline
    from lake import io
    from lake import tables as T

    def latest(table: T.Table, key: str = "finished_us") -> dict | None:
        rows = io.read(lake, table).to_pylist() if io.exists(lake, table) else []
        return max(rows, key=lambda r: r[key]) if rows else None

    ev, req, run = latest(T.EVAL_RUNS), latest(T.DATA_REQUESTS, "created_us"), latest(T.TRAINING_RUNS)
    acq = io.read(lake, T.ACQUISITIONS, where={"request_id": req["request_id"]}).to_pylist() if req else []
    stats = io.read(lake, T.EVAL_STATS, where={"run_id": ev["run_id"]}).to_pylist() if ev else []
    manifest = io.read(lake, T.SHARD_MANIFEST, columns=["split", "samples"]).to_pylist()
    return {"eval_run": ev["run_id"] if ev else None, "headline": headline(stats) if stats else [],
            "request": req, "acquired": [a for a in acq if a["clip_id"]],
            "train_windows": sum(r["samples"] for r in manifest if r["split"] == "train"),
            "trained_run": run["run_id"] if run else None}


def cmd_turn(args: argparse.Namespace) -> int:
    """One turn by hand: train → evaluate → mine → acquire (one Dagster run), then register and ingest
    the chunks the acquisition added; print what changed."""
    from dagster_project.partitions import CHUNKS_PARTITION
    from evals.mining import MiningConfig
    from labelers.triage import AcquireConfig

    settings = Settings.from_env()
    before = _turn_state(settings.lake)
    ops = {"train_field_agent": {"config": knob_values(args, TrainConfig, TrainData)},
           "hard_examples": {"config": knob_values(args, MiningConfig)},
           "acquisitions": {"config": knob_values(args, AcquireConfig)}}
    materialize(TURN_ASSETS, [""], {"ops": {k: v for k, v in ops.items() if v["config"]}})
    mid = _turn_state(settings.lake)
    discover(settings)
    # every registered chunk whose shards were never made: the ones just acquired, and any an
    # interrupted turn registered but did not ingest
    import dagster as dg

    instance = _instance()
    known = set(instance.get_dynamic_partitions(CHUNKS_PARTITION))
    new = sorted(known - instance.get_materialized_partitions(dg.AssetKey("webdataset_shards")))
    if new:
        materialize(CHUNK_ASSETS, new)
    after = _turn_state(settings.lake)
    print(f"\nturn: trained {after['trained_run']} on {mid['train_windows']} training windows; evaluated "
          f"{after['eval_run']} (before: {before['eval_run'] or 'none'})")
    for line in after["headline"]:
        print(f"  {line}")
    req = after["request"]
    if req:
        from core.request import DataRequest
        from evals.mining import request_md

        print(f"mined: {req['hard_windows']} hard windows of {req['evaluated_windows']}; request:\n"
              + "\n".join(f"  {line}" for line in request_md(DataRequest.from_json(req["request"])).splitlines()))
    scen = Counter(a["scenario"] or "?" for a in after["acquired"])
    print(f"acquired: {len(after['acquired'])} clips ({dict(scen)}); ingested partitions {new or '(none new)'}; "
          f"{len(known)} chunk partitions in all")
    print(f"training windows: {before['train_windows']} -> {after['train_windows']} "
          f"(+{after['train_windows'] - before['train_windows']}); the next turn trains on them")
    return 0


def cmd_deploy_local(args: argparse.Namespace) -> int:
    """docker-compose.yml's services as local processes, without Docker: a PostgreSQL cluster of its own
    (run, event-log and schedule storage), the code location's gRPC server (which runs the runs), the
    daemon (sensors, schedules, run queue, run monitoring) and the webserver, with deploy/dagster.yaml
    and deploy/workspace.yaml. State (cluster, DAGSTER_HOME, logs) stays under --root between starts.
    Only the code server sees the FLYWHEEL_* settings and HF_TOKEN. Ctrl-C stops every process."""
    from flywheel.deploy_local import LocalDeployment, run_until_interrupted

    return run_until_interrupted(LocalDeployment(Path(args.root), ui_port=args.ui_port, code_port=args.code_port,
                                                 pg_port=args.pg_port))


class _Help(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; every option's help already names its default."""


def _env_help() -> str:
    from flywheel.settings import ENV_VARS

    return "environment variables:\n" + "\n".join(f"  {n} (default: {d or 'unset'})\n      {m}" for n, d, m in ENV_VARS)


def _command(sub: argparse._SubParsersAction, name: str, func: object, help: str) -> argparse.ArgumentParser:
    """A subcommand whose description is its function's docstring, with the environment variables below."""
    doc = (func.__doc__ or help).strip()  # type: ignore[attr-defined]
    parser = sub.add_parser(name, help=help, description=doc, epilog=_env_help(), formatter_class=_Help)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flywheel", description=__doc__, epilog=_env_help(), formatter_class=_Help)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    tw = _command(sub, "twin", cmd_twin, "write an offline twin of PAI")
    tw.add_argument("--out", required=True, help="the directory to write the twin to (required)")
    add_knobs(tw, TwinConfig, exclude=("split", "other_cameras"), aliases={"clips_per_chunk": ("--clips",)})
    tw.add_argument("--hf-cache", default="", help="also lay the twin out as a Hugging Face cache here (default: none)")
    tw.add_argument("--revision", default="0" * 40, help="commit sha for --hf-cache (default: forty zeros)")
    tw.add_argument("--overwrite", action="store_true", help="replace a twin written with another config (default: refuse)")
    _command(sub, "discover", cmd_discover, "register the source's chunks as partitions")
    ma = _command(sub, "materialize", cmd_materialize, "materialize assets for partitions, then print what QA found")
    ma.add_argument("--select", required=True, help="asset keys, comma-separated, as `dagster asset materialize` takes "
                                                    "them (required)")
    ma.add_argument("--partition", nargs="*", default=[], help="chunk partition keys, or 'all' registered chunk "
                                                              "partitions (default: none, for unpartitioned assets)")
    add_knobs(_command(sub, "train", cmd_train, "train the field agent (materialize train_field_agent)"),
              TrainConfig, TrainData)
    add_knobs(_command(sub, "eval", cmd_eval, "score a trained run NAVSIM-style against baselines (navsim_eval)"),
              EvalConfig)
    add_knobs(_command(sub, "closed-loop", cmd_closed_loop, "drive the twin with the agent, a 1 Hz Commander and the "
                                                            "safety shield (closed_loop_eval)"), ClosedLoopConfig)
    from evals.mining import MiningConfig
    from labelers.triage import AcquireConfig

    add_knobs(_command(sub, "turn", cmd_turn, "one turn of the flywheel: train, evaluate, mine, acquire, ingest"),
              TrainConfig, TrainData, MiningConfig, AcquireConfig, exclude=("run_id", "seed"))
    vw = _command(sub, "view", cmd_view, "a clip's windows, plans and scores in the Rerun viewer")
    vw.add_argument("clip", help="a clip id (or a unique prefix of one) of the lake or its benchmark lake (required)")
    vw.add_argument("--run", default="", help="the training run whose agent to draw (default: the latest)")
    vw.add_argument("--baselines-only", action="store_true", help="draw no agent (default: the agent too)")
    vw.add_argument("--out", default="", help="the .rrd file to write (default: <lake>/viewer/<clip>-<run>.rrd)")
    vw.add_argument("--open", action=argparse.BooleanOptionalAction, default=True,
                    help="open the recording in the Rerun viewer (default: open; --no-open on a machine without a display)")
    _command(sub, "tables", cmd_tables, "row counts of the lake tables")
    _command(sub, "demo", cmd_demo, "run the main job on the configured source")
    dl = _command(sub, "deploy-local", cmd_deploy_local, "the compose deployment as local processes, without Docker")
    dl.add_argument("--root", default=".deploy", help="where the cluster, DAGSTER_HOME and the logs live (default: .deploy)")
    dl.add_argument("--ui-port", type=int, default=3000, help="the webserver's port (default: 3000)")
    dl.add_argument("--code-port", type=int, default=4000, help="the code server's gRPC port (default: 4000)")
    dl.add_argument("--pg-port", type=int, default=0, help="PostgreSQL's port on 127.0.0.1 (default: a free one)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:  # configuration errors: one clear line, no traceback
        raise SystemExit(f"flywheel {args.cmd}: {exc}") from exc


if __name__ == "__main__":
    sys.exit(main())
