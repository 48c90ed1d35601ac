"""Embedded vs Spark local[2] per stage on one twin chunk, Spark's fixed start-up cost, and what
the per-clip cost says about a cluster that makes a full pass over PAI in 24 hours.

    python -m benchmarks.bench_engines [--clips 100] [--size 256x144] [--seconds 20] [--real-size 1]

Each stage is one real Dagster run of its asset (as `dagster asset materialize` runs it), timed
wall-clock, for each engine over its own lake; the outputs of both are checked equal in row
counts. `--real-size N` also times the embedded stages on N clips at PAI's 1920x1080 to scale the
per-clip cost from the twin's small frames to real ones.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import dagster as dg

from dagster_project.assets import ingest, labels, shards, targets
from dagster_project.partitions import CHUNKS_PARTITION
from dagster_project.resources import EngineResource, LakeResource, PAISourceResource, _engine
from lake import io
from lake import tables as T
from transforms.twin.writer import TwinConfig, write_twin

KEY = "chunk_0000"
STAGES = [("index", ingest.chunk_index), ("unicycle fit", targets.unicycle_targets),
          ("kinematic labels", labels.commander_labels), ("shard export", shards.webdataset_shards)]
TABLES = (T.CLIPS, T.EGOMOTION, T.FRAMES, T.UNICYCLE_TARGETS, T.COMMANDER_LABELS, T.SHARD_MANIFEST)
PAI_CHUNKS = 3_100
PAI_CLIPS = 300_000
DAY_S = 86_400
EFFICIENCY = 0.75  # share of a cluster's core-hours that does stage work (scheduling, stragglers, I/O waits)
NODE_CORES = 16


def run_stages(twin: Path, lake: Path, kind: str) -> dict[str, float]:
    """Seconds per stage of one chunk with one engine (raw_chunks first, untimed: it is the source's)."""
    inst = dg.DagsterInstance.ephemeral()
    inst.add_dynamic_partitions(CHUNKS_PARTITION, [KEY])
    res = {"lake": LakeResource(root=str(lake)), "source": PAISourceResource(kind="mirror", mirror_dir=str(twin)),
           "engine": EngineResource(kind=kind)}
    assert dg.materialize([ingest.raw_chunks], partition_key=KEY, instance=inst, resources=res).success
    out = {}
    for name, asset in STAGES:
        t = time.perf_counter()
        assert dg.materialize([asset], partition_key=KEY, instance=inst, resources=res).success, name
        out[name] = time.perf_counter() - t
    return out


def spark_startup() -> float:
    """Session start plus a first one-row job (Python workers started): paid once per process."""
    t = time.perf_counter()
    eng = _engine("spark", "local[2]", "auto", 4)
    eng.spark.range(1).rdd.map(lambda x: x).count()
    return time.perf_counter() - t


def make_twin(root: Path, clips: int, width: int, height: int, seconds: float) -> tuple[Path, float]:
    t = time.perf_counter()
    path = write_twin(root, TwinConfig(chunks=1, clips_per_chunk=clips, seed=11, width=width, height=height,
                                       seconds=seconds))
    return path, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--size", default="256x144")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--real-size", type=int, default=0, help="clips at 1920x1080 for the per-clip scale factor")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        twin, gen_s = make_twin(root / "twin", args.clips, width, height, args.seconds)
        print(f"twin chunk: {args.clips} clips of {args.seconds:g} s at {width}x{height}, generated in {gen_s:.0f} s",
              flush=True)
        embedded = run_stages(twin, root / "embedded", "embedded")
        print(f"embedded: {sum(embedded.values()):.1f} s", flush=True)
        startup = spark_startup()
        spark = run_stages(twin, root / "spark", "spark")
        print(f"spark local[2]: {sum(spark.values()):.1f} s after a {startup:.1f} s start-up", flush=True)
        for table in TABLES:
            n = [io.read(root / k, table, chunk=KEY).num_rows for k in ("embedded", "spark")]
            assert n[0] == n[1] > 0, f"{table.name}: embedded {n[0]} rows, spark {n[1]}"
        ok = io.read(root / "embedded", T.CLIPS, chunk=KEY, where={"status": "ok"}).num_rows
        real = None
        if args.real_size:
            twin_r, _ = make_twin(root / "twin_real", args.real_size, 1920, 1080, args.seconds)
            real = run_stages(twin_r, root / "embedded_real", "embedded")

    cores = 2
    print("\n| stage | embedded s | Spark local[2] s | Spark / embedded | embedded s per clip | Spark core-s per clip |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, _ in STAGES:
        e, s = embedded[name], spark[name]
        print(f"| {name} | {e:.1f} | {s:.1f} | {s / e:.2f} | {e / ok:.3f} | {s * cores / ok:.3f} |")
    e_tot, s_tot = sum(embedded.values()), sum(spark.values())
    print(f"| all four | {e_tot:.1f} | {s_tot:.1f} | {s_tot / e_tot:.2f} | {e_tot / ok:.3f} | {s_tot * cores / ok:.3f} |")
    print(f"| Spark start-up (once per process) | | {startup:.1f} | | | |")
    print(f"({ok} usable clips; Spark core-seconds count both local cores busy for the stage's wall time)")

    core_s = s_tot * cores / ok
    lines = [("twin frames", core_s)]
    if real is not None:
        scale = (sum(real.values()) / args.real_size) / (e_tot / ok)
        print(f"\n1920x1080 embedded: {sum(real.values()) / args.real_size:.2f} s per clip = {scale:.1f} x the twin's "
              f"{e_tot / ok:.3f} s ({args.real_size} clips: " + ", ".join(f"{k} {v:.1f} s" for k, v in real.items()) + ")")
        lines.append(("PAI-size frames", core_s * scale))
    print(f"\n24-hour pass over PAI ({PAI_CHUNKS:,} chunks, {PAI_CLIPS:,} clips), {EFFICIENCY:.0%} of core time useful:")
    for what, per_clip in lines:
        core_h = PAI_CLIPS * per_clip / 3600
        need = PAI_CLIPS * per_clip / (DAY_S * EFFICIENCY)
        print(f"- {what}: {per_clip:.3f} core-s per clip -> {core_h:,.0f} core-hours -> {math.ceil(need):,} cores "
              f"= {math.ceil(need / NODE_CORES):,} nodes of {NODE_CORES} cores")


if __name__ == "__main__":
    main()
