"""The benchmark set: every scenario, its own seed, cached, and never in a training shard."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.benchmark import BenchmarkConfig, benchmark_clip_ids, build_benchmark, check_disjoint
from lake import io
from lake import tables as T
from transforms.twin.world import SCENARIOS
from transforms.twin.writer import BENCHMARK_SEED, TwinConfig, clip_ids, write_twin


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("bench")
    cfg = BenchmarkConfig(clips_per_scenario=1, width=64, height=48, seconds=9.0)
    return root, build_benchmark(root / "lake", root / "twin", cfg, log=lambda _: None)


def test_benchmark_has_every_scenario_in_its_own_split(bench: tuple[Path, object]) -> None:
    root, b = bench
    lake = str(root / "lake")
    clips = io.read(lake, T.CLIPS)
    assert b.built and b.clips == len(SCENARIOS) == clips.num_rows
    assert set(clips.column("split").to_pylist()) == {"benchmark"}
    manifest = io.read(lake, T.SHARD_MANIFEST)
    assert set(manifest.column("split").to_pylist()) == {"benchmark"} and b.windows > 0
    assert all((root / "lake" / "shards" / p).exists() for p in manifest.column("path").to_pylist())
    import pandas as pd
    scen = pd.concat(pd.read_parquet(p) for p in (root / "twin" / "twin" / "scenario").glob("*.parquet"))
    assert sorted(scen["scenario"]) == sorted(SCENARIOS)


def test_benchmark_is_built_once(bench: tuple[Path, object]) -> None:
    root, b = bench
    again = build_benchmark(root / "lake", root / "twin", b.config, log=lambda _: None)
    assert not again.built and (again.clips, again.windows) == (b.clips, b.windows)


def test_no_benchmark_clip_or_seed_reaches_training(bench: tuple[Path, object], tmp_path: Path) -> None:
    root, _ = bench
    held_out = benchmark_clip_ids(root / "lake")
    assert len(held_out) == len(SCENARIOS)
    # the training twins a user can make: any other seed gives other clips ...
    for seed in (0, 1, 42):
        train = {c for ids in clip_ids(TwinConfig(chunks=4, clips_per_chunk=16, seed=seed)).values() for c in ids}
        assert not train & held_out
        check_disjoint(train, held_out)
    # ... the benchmark's seed is refused for training ...
    with pytest.raises(ValueError, match="reserved for the benchmark"):
        TwinConfig(seed=BENCHMARK_SEED)
    with pytest.raises(ValueError, match=r"split='\.\./x': leave it empty"):
        TwinConfig(split="../x")
    # ... and a lake that somehow holds a benchmark clip is refused by name
    with pytest.raises(ValueError, match=r"1 benchmark clips are in the training lake .* held out"):
        check_disjoint({"x", sorted(held_out)[0]}, held_out)
    assert benchmark_clip_ids(tmp_path) == set()  # none built: nothing to compare


def test_twins_written_before_the_split_field_keep_their_hash(tmp_path: Path) -> None:
    cfg = TwinConfig(chunks=1, clips_per_chunk=1, width=32, height=32, seconds=8.0)
    assert "split" not in cfg.stamp() and len(cfg.config_hash()) == 16
    write_twin(tmp_path, cfg, chunks=[])
    write_twin(tmp_path, cfg, chunks=[])  # the stamp it wrote is the stamp it expects
