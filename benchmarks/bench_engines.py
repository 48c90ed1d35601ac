"""Embedded vs Spark local[2] per stage on one twin chunk, Spark's fixed start-up cost, and what
the per-clip cost says about a cluster that makes a full pass over PAI in 24 hours.

    python -m benchmarks.bench_engines [--clips 100] [--size 256x144] [--seconds 20] [--out benchmarks/out/engines]

Each stage is one real Dagster run of its asset (as `dagster asset materialize` runs it), timed
wall-clock, for each engine over its own lake; the outputs of both are checked equal in row
counts. The twin chunk is kept under --out and reused by the next run.

The twin's frames are small (256x144) and PAI's are 1920x1080; rendering a real-size twin clip
takes ~13 min, so instead the cost that grows with frame size, decoding every frame up to the last
window's and JPEG-encoding the needed ones, is measured on a short synthetic clip at both sizes,
and the per-clip estimate is adjusted by the difference.
"""

from __future__ import annotations

import argparse
import io as bytes_io
import math
import shutil
import time
from pathlib import Path

import dagster as dg
import numpy as np

from dagster_project.assets import ingest, labels, shards, targets
from dagster_project.partitions import CHUNKS_PARTITION
from dagster_project.resources import EngineResource, LakeResource, PAISourceResource, shared_engine
from lake import io
from lake import tables as T
from transforms.frames import decode_frames
from transforms.shards import ShardConfig, _jpeg
from transforms.twin.writer import TwinConfig, encode_mp4, write_twin

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
    eng = shared_engine("spark", "local[2]", "auto", 4)
    eng.spark.range(1).rdd.map(lambda x: x).count()
    return time.perf_counter() - t


def make_twin(root: Path, clips: int, width: int, height: int, seconds: float) -> tuple[Path, float]:
    t = time.perf_counter()
    path = write_twin(root, TwinConfig(chunks=1, clips_per_chunk=clips, seed=11, width=width, height=height,
                                       seconds=seconds))
    return path, time.perf_counter() - t


def frame_costs(width: int, height: int, frames: int = 90, every: int = 15) -> tuple[float, float]:
    """Seconds per decoded frame and per JPEG-encoded sample frame, on a synthetic clip of this size
    (a panning texture of 8-pixel blobs: neither flat, which the encoder collapses, nor per-pixel
    noise, which no camera produces), decoded the way the shard export does."""
    rng = np.random.default_rng(0)
    blobs = rng.integers(0, 255, (height // 8 + 1, width // 4 + 1, 3), dtype=np.uint8)
    base = np.repeat(np.repeat(blobs, 8, 0), 8, 1)[:height, : width * 2]
    video = encode_mp4((np.ascontiguousarray(base[:, k * 4:k * 4 + width]) for k in range(frames)), width, height, 30.0)
    times = np.arange(frames, dtype=np.int64) * 33_333
    wanted = times[every - 1::every]
    t = time.perf_counter()
    got = decode_frames(bytes_io.BytesIO(video), times, wanted)
    decode = (time.perf_counter() - t) / int(wanted[-1] // 33_333 + 1)
    t = time.perf_counter()
    for img in got.values():
        _jpeg(img, ShardConfig())
    return decode, (time.perf_counter() - t) / len(got)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--size", default="256x144")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--out", default="benchmarks/out/engines")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    root = Path(args.out) / f"{args.clips}x{width}x{height}x{args.seconds:g}s"
    twin, gen_s = make_twin(root / "twin", args.clips, width, height, args.seconds)
    print(f"twin chunk: {args.clips} clips of {args.seconds:g} s at {width}x{height}, ready in {gen_s:.0f} s ({root})",
          flush=True)
    for kind in ("embedded", "spark"):
        shutil.rmtree(root / kind, ignore_errors=True)
    embedded = run_stages(twin, root / "embedded", "embedded")
    print(f"embedded: {sum(embedded.values()):.1f} s", flush=True)
    startup = spark_startup()
    spark = run_stages(twin, root / "spark", "spark")
    print(f"spark local[2]: {sum(spark.values()):.1f} s after a {startup:.1f} s start-up", flush=True)
    for table in TABLES:
        n = [io.read(root / k, table, chunk=KEY).num_rows for k in ("embedded", "spark")]
        assert n[0] == n[1] > 0, f"{table.name}: embedded {n[0]} rows, spark {n[1]}"
    ok = io.read(root / "embedded", T.CLIPS, chunk=KEY, where={"status": "ok"}).num_rows
    windows = io.read(root / "embedded", T.SHARD_MANIFEST, chunk=KEY).column("samples").to_pylist()
    clips = io.read(root / "embedded", T.CLIPS, chunk=KEY, where={"status": "ok"})
    frames_per_clip = float(np.mean(clips.column("frame_count").to_numpy()))

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
    lines = [(f"{width}x{height} frames (as measured)", core_s)]
    small, big = frame_costs(width, height), frame_costs(1920, 1080)
    samples_per_clip = sum(windows) / ok
    extra = frames_per_clip * (big[0] - small[0]) + samples_per_clip * (big[1] - small[1])
    print(f"\nframe cost {width}x{height}: decode {small[0] * 1e3:.2f} ms, JPEG {small[1] * 1e3:.2f} ms; 1920x1080: decode "
          f"{big[0] * 1e3:.2f} ms ({big[0] / small[0]:.0f}x), JPEG incl. resize {big[1] * 1e3:.2f} ms "
          f"({big[1] / small[1]:.0f}x); per clip {frames_per_clip:.0f} frames decoded, {samples_per_clip:.0f} samples "
          f"-> +{extra:.2f} core-s per clip at PAI's frame size")
    lines.append(("1920x1080 frames (decode-adjusted)", core_s + extra))
    print(f"\n24-hour pass over PAI ({PAI_CHUNKS:,} chunks, {PAI_CLIPS:,} clips), {EFFICIENCY:.0%} of core time useful:")
    for what, per_clip in lines:
        core_h = PAI_CLIPS * per_clip / 3600
        need = PAI_CLIPS * per_clip / (DAY_S * EFFICIENCY)
        nodes = math.ceil(need / NODE_CORES)
        print(f"- {what}: {per_clip:.3f} core-s per clip -> {core_h:,.0f} core-hours -> {math.ceil(need):,} cores "
              f"= {nodes:,} node{'s' if nodes != 1 else ''} of {NODE_CORES} cores")


if __name__ == "__main__":
    main()
