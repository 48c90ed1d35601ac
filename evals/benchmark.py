"""The benchmark set: a held-out twin with its own seed, every scenario, never in a training shard.

`build_benchmark` writes the twin (its own seed, every clip's split "benchmark", the scenarios in
equal numbers) and runs the same stage functions the chunk assets run — index, unicycle fit,
kinematic labels, shard export — into a lake of its own (`<lake>/benchmark`: the same tables and
shard layout as the main lake). It is built once: a stamp written last records its config, and a
later call with the same config returns at once; a build killed midway is redone (every table
write replaces its partition). Training can never read it: its shards are not in the training
lake's manifest, its seed is reserved (a TwinConfig with it must be the benchmark's), and the
training asset checks that no benchmark clip id is among its clips (`check_disjoint`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pyarrow as pa

from core.config import knob
from engines import EmbeddedEngine
from engines.stage import StageJob, run_stage
from evals.navsim_eval import EvalWindow, lake_windows
from evals.scene import ClipScene
from labelers.build import LABELS_STAGE, LabelPlan
from labelers.kinematic import KinematicLabeler
from lake import io
from lake import tables as T
from transforms.index import PART_OUTPUTS, assemble_index, index_part, plan_index
from transforms.index import STAGE as INDEX_STAGE
from transforms.pai_layout import chunk_key
from transforms.shards import ShardConfig, export_chunk
from transforms.source import TwinSource, chunk_manifest
from transforms.twin.world import SCENARIOS
from transforms.twin.writer import BENCHMARK_SEED, BENCHMARK_SPLIT, TwinConfig, write_twin
from transforms.unicycle import TARGETS_STAGE, TargetsPlan, UnicycleParams

BENCHMARK_DIR = "benchmark"  # its lake, under the training lake's root (its twin in <that>/twin)
STAMP = "benchmark.json"

Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchmarkConfig:
    clips_per_scenario: int = knob(6, "the benchmark twin holds every scenario this many times (8 scenarios)")
    width: int = knob(256, "frame and shard image width (px), as the training shards are exported")
    height: int = knob(144, "frame and shard image height (px)")
    seconds: float = knob(20.0, "clip length (s)")

    def __post_init__(self) -> None:
        if self.clips_per_scenario < 1:
            raise ValueError(f"clips_per_scenario={self.clips_per_scenario}: need >= 1 clip of every scenario")

    def twin(self) -> TwinConfig:
        """Scenarios cycle through the clips (transforms.twin.writer.scenario_of): 8·k clips in chunks
        of whole cycles give each scenario k clips; two chunks so that two cores write them."""
        chunks = 2 if self.clips_per_scenario % 2 == 0 else 1
        return TwinConfig(chunks=chunks, clips_per_chunk=len(SCENARIOS) * self.clips_per_scenario // chunks,
                          seed=BENCHMARK_SEED, width=self.width, height=self.height, seconds=self.seconds,
                          split=BENCHMARK_SPLIT)


@dataclass(frozen=True)
class BenchmarkSet:
    root: Path  # its lake
    config: BenchmarkConfig
    clips: int
    windows: int
    built: bool  # False: the cached build was reused


def check_disjoint(training_clip_ids: set[str], benchmark_clip_ids: set[str]) -> None:
    """Refuse a training set that shares any clip with the benchmark."""
    shared = sorted(training_clip_ids & benchmark_clip_ids)
    if shared:
        raise ValueError(f"{len(shared)} benchmark clips are in the training lake (e.g. {shared[0]}): the benchmark "
                         "must stay held out; remove those chunks from training or rebuild the benchmark with "
                         "another seed")


def benchmark_clip_ids(root: str | Path) -> set[str]:
    """The clip ids of a built benchmark lake (empty if none is built)."""
    if not (Path(root) / STAMP).exists():
        return set()
    return set(io.read(str(root), T.CLIPS, columns=["clip_id"]).column("clip_id").to_pylist())


def held_out_windows(lake_root: str | Path, splits: Sequence[str], *, labeler: str, labeler_version: str,
                     max_windows: int = 0) -> tuple[list[EvalWindow], dict[str, ClipScene], dict, int]:
    """navsim_eval's windows: the `splits` of the training lake, and with BENCHMARK_SPLIT among them the
    benchmark lake's windows. Returns evals.navsim_eval.lake_windows' four, merged (clip ids are unique
    across the two lakes: another seed)."""
    sources = [(str(lake_root), [s for s in splits if s != BENCHMARK_SPLIT])]
    if BENCHMARK_SPLIT in splits:
        bench = Path(lake_root) / BENCHMARK_DIR
        if not benchmark_clip_ids(bench):
            raise FileNotFoundError(f"the benchmark set is not built under {bench}: materialize benchmark_set first, or "
                                    f"leave {BENCHMARK_SPLIT!r} out of splits")
        sources.append((str(bench), [BENCHMARK_SPLIT]))
    windows, scenes, poses, unmatched = [], {}, {}, 0
    for root, only in sources:
        if only:
            w, sc, po, un = lake_windows(root, only, labeler=labeler, labeler_version=labeler_version,
                                         max_windows=max_windows)
            windows, scenes, poses, unmatched = windows + w, scenes | sc, poses | po, unmatched + un
    return windows, scenes, poses, unmatched


def _write_chunk(twin_root: str, cfg: TwinConfig, chunk: int) -> None:
    write_twin(Path(twin_root), cfg, chunks=[chunk])


def build_twin_lake(root: Path, twin_root: Path, twin: TwinConfig, shard_cfg: ShardConfig, *,
                    log: Log = print) -> tuple[int, int]:
    """A twin written under `twin_root` and run through the chunk stages into the lake at `root`
    (embedded engine, kinematic labels): the benchmark's build, and the learning benchmark's
    training lakes. Returns (clips indexed ok, windows exported)."""
    log(f"twin: writing {twin.chunks} chunks x {twin.clips_per_chunk} clips (seed {twin.seed}) under {twin_root}")
    write_twin(twin_root, twin, chunks=[], overwrite=True)  # metadata; a twin of another config is replaced
    with ProcessPoolExecutor(min(twin.chunks, os.cpu_count() or 1)) as pool:
        list(pool.map(_write_chunk, [str(twin_root)] * twin.chunks, [twin] * twin.chunks, range(twin.chunks)))
    source = TwinSource(twin_root, twin)
    done = [lake_twin_chunk(root, source, c, shard_cfg, log=log) for c in range(twin.chunks)]
    return sum(c for c, _ in done), sum(w for _, w in done)


def lake_twin_chunk(root: Path, source: TwinSource, chunk_id: int, shard_cfg: ShardConfig, *,
                    log: Log = print) -> tuple[int, int]:
    """One twin chunk through the chunk stages (index, fit, kinematic labels, shards) into the lake
    at `root`, as the chunk assets run them; returns (clips indexed ok, windows exported)."""
    eng, lake, key = EmbeddedEngine(), str(root), chunk_key(chunk_id)
    files = source.fetch_chunk(chunk_id)
    bronze = chunk_manifest(files, chunk=key)
    io.overwrite_partition(lake, T.CHUNKS, bronze, chunk=key)
    plan = plan_index(files, chunk=key, known_clips={})
    ix = assemble_index(plan, eng.map_parts(index_part, plan, list(plan.clip_ids), {}, PART_OUTPUTS, root=lake))
    eng.overwrite_partition(lake, T.QUARANTINE, ix.quarantine_table(key), chunk=key, extra={"stage": INDEX_STAGE})
    for table, data in ((T.EGOMOTION, ix.egomotion), (T.FRAMES, ix.frames), (T.CLIPS, ix.clips)):
        eng.overwrite_partition(lake, table, data, chunk=key)
    ok = sorted(r["clip_id"] for r in ix.clips.to_pylist() if r["status"] == "ok")
    targets = run_stage(eng, TARGETS_STAGE, StageJob(TargetsPlan(key, UnicycleParams()), ok), chunk=key,
                        root=lake).outputs["targets"]
    plan = LabelPlan(key, files, KinematicLabeler(), False)
    labels = run_stage(eng, LABELS_STAGE, StageJob(plan, ok, extra=plan.job_keys()), chunk=key,
                       root=lake).outputs["labels"]
    cfg = replace(shard_cfg, **plan.label_set)
    out = export_chunk(files, chunk=key, cfg=cfg, out_root=Path(root) / "shards", targets=targets, labels=labels,
                       egomotion=io.read(lake, T.EGOMOTION, chunk=key),
                       file_sha256=dict(zip(bronze.column("feature").to_pylist(),
                                            bronze.column("sha256").to_pylist(), strict=True)),
                       previous=io.read(lake, T.SHARD_MANIFEST, chunk=key).to_pylist())
    io.overwrite_partition(lake, T.SHARD_MANIFEST, pa.Table.from_pylist(out.manifest, schema=T.SHARD_MANIFEST.schema),
                           chunk=key)
    windows = sum(r.samples for r in out.result.shards)
    log(f"twin lake: {key}: {len(ok)} clips, {windows} windows; {ix.counts()}")
    return len(ok), windows


def build_benchmark(lake_root: str | Path, twin_root: str | Path, cfg: BenchmarkConfig, *,
                    shard_cfg: ShardConfig | None = None, log: Log = print) -> BenchmarkSet:
    """Build (or reuse) the benchmark lake under `lake_root` from a twin under `twin_root`."""
    root, twin_root = Path(lake_root), Path(twin_root)
    shard_cfg = shard_cfg or ShardConfig(image_width=cfg.width, image_height=cfg.height,
                                         labeler=KinematicLabeler.name, labeler_version=KinematicLabeler.version)
    want = {"benchmark": asdict(cfg), "shards": asdict(shard_cfg)}
    stamp = root / STAMP
    if stamp.exists():
        have = json.loads(stamp.read_text())
        if {k: have.get(k) for k in want} == want:
            return BenchmarkSet(root, cfg, int(have["clips"]), int(have["windows"]), built=False)
        log(f"benchmark: {root} was built with {have.get('benchmark')}; rebuilding for {asdict(cfg)}")
        stamp.unlink()
    clips, windows = build_twin_lake(root, twin_root, cfg.twin(), shard_cfg, log=log)
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps({**want, "clips": clips, "windows": windows}, indent=2, sort_keys=True))
    os.replace(tmp, stamp)  # last: a build killed before this line is redone next time
    return BenchmarkSet(root, cfg, clips, windows, built=True)
