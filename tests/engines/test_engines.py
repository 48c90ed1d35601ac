"""The engine contract: a part function's output for some clips is the concatenation of its
outputs for any split of them. The embedded engine calls it once; Spark calls it per part.
(tests/engines/test_spark_equality.py checks the Spark engine itself, in Spark local mode.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from engines import EmbeddedEngine, Input, conform_output, make_engine
from flywheel.settings import Settings
from labelers.build import LabelPlan, labels_part
from labelers.kinematic import KinematicLabeler
from lake import io
from lake import tables as T
from tests.conftest import SMALL
from transforms.index import PART_OUTPUTS, index_part, plan_index
from transforms.shards import SHARD_PART_OUTPUTS, ShardConfig, ShardsPlan, shards_part, windows_for_chunk
from transforms.source import TwinSource
from transforms.unicycle import TargetsPlan, UnicycleParams, targets_part


def assert_tables_equal(a: pa.Table, b: pa.Table, key: list[str], what: str) -> None:
    """Row for row after sorting by `key`; floats (and lists of floats) to 1e-9 relative."""
    assert a.schema.names == b.schema.names, what
    assert a.num_rows == b.num_rows, f"{what}: {a.num_rows} rows vs {b.num_rows}"
    a, b = (t.sort_by([(k, "ascending") for k in key]) for t in (a, b))
    for name in a.column_names:
        x, y = a.column(name), b.column(name)
        typ = x.type.value_type if pa.types.is_list(x.type) else x.type
        if pa.types.is_floating(typ):
            flat = [np.asarray(c.combine_chunks().flatten() if pa.types.is_list(c.type) else c, float) for c in (x, y)]
            np.testing.assert_allclose(flat[0], flat[1], rtol=1e-9, atol=1e-9, err_msg=f"{what}.{name}")
            if pa.types.is_list(x.type):
                assert x.combine_chunks().offsets == y.combine_chunks().offsets, f"{what}.{name}: list lengths differ"
        else:
            assert x.to_pylist() == y.to_pylist(), f"{what}.{name} differs"


def _split_run(fn: object, ctx: object, clip_ids: list[str], inputs: dict[str, pa.Table],
               outputs: dict[str, pa.Schema], cut: int) -> dict[str, pa.Table]:
    """The part function on clip_ids[:cut] and clip_ids[cut:], concatenated: what Spark does."""
    from engines import rows_of

    halves = [fn(ctx, ids, {k: rows_of(v, ids) for k, v in inputs.items()})  # type: ignore[operator]
              for ids in (clip_ids[:cut], clip_ids[cut:])]
    return {k: pa.concat_tables([conform_output(k, h[k], s) for h in halves]) for k, s in outputs.items()}


def test_every_part_function_splits_like_the_whole(twin_dir: Path) -> None:
    files = TwinSource(str(twin_dir), SMALL).fetch_chunk(0)
    chunk = "chunk_0000"
    plan = plan_index(files, chunk=chunk)
    ids = list(plan.clip_ids)
    whole = index_part(plan, ids, {})
    parts = _split_run(index_part, plan, ids, {}, PART_OUTPUTS, 1)
    for name, key in (("clips", ["clip_id"]), ("egomotion", ["clip_id", "timestamp"]), ("frames", ["clip_id", "frame_index"])):
        assert whole[name].num_rows > 0
        assert_tables_equal(parts[name], whole[name], key, name)

    ego, clips = whole["egomotion"], whole["clips"]
    tplan = TargetsPlan(chunk, UnicycleParams())
    targets = targets_part(tplan, ids, {"egomotion": ego, "clips": clips})["targets"]
    split = _split_run(targets_part, tplan, ids, {"egomotion": ego, "clips": clips},
                       {"targets": T.UNICYCLE_TARGETS.schema}, 3)["targets"]
    assert targets.num_rows > 10
    assert_tables_equal(split, targets, ["clip_id", "t0_us"], "unicycle_targets")

    lplan = LabelPlan(chunk, files, KinematicLabeler(), image=False)
    labels = labels_part(lplan, ids, {"targets": targets})["labels"]
    assert labels.num_rows == targets.num_rows
    assert_tables_equal(_split_run(labels_part, lplan, ids, {"targets": targets}, {"labels": T.COMMANDER_LABELS.schema},
                                   2)["labels"], labels, ["clip_id", "t0_us"], "commander_labels")

    inputs = {"targets": targets, "labels": labels, "egomotion": ego}
    keys = frozenset(w.key for w in windows_for_chunk(targets, labels, ego, chunk=chunk)[::2])  # as after a resume
    splan = ShardsPlan(chunk, files, ShardConfig(), keys)
    samples = shards_part(splan, ids, inputs)["samples"]
    assert sorted(samples.column("key").to_pylist()) == sorted(keys)
    split = _split_run(shards_part, splan, ids, inputs, SHARD_PART_OUTPUTS, 1)["samples"]
    def by_key(t: pa.Table) -> dict[str, list]:  # parts come in (split, clip, t0) order each: compare by key
        return dict(zip(t.column("key").to_pylist(), t.column("members").to_pylist(), strict=True))

    assert by_key(split) == by_key(samples)  # JPEG bytes included


def test_embedded_engine_reads_each_clips_rows_and_checks_outputs(tmp_path: Path) -> None:
    rows = pa.Table.from_pylist([{"chunk": "c", "clip_id": c, "status": "ok"} for c in "abc"], schema=T.CLIPS.schema)
    io.overwrite_partition(tmp_path, T.CLIPS, rows, chunk="c")

    def count(ctx: object, clip_ids: list[str], inputs: dict[str, pa.Table]) -> dict[str, pa.Table]:
        return {"n": pa.table({"clips": [len(clip_ids)], "rows": [inputs["clips"].num_rows], "ctx": [ctx]})}

    schema = pa.schema([("clips", pa.int64()), ("rows", pa.int64()), ("ctx", pa.string())])
    out = EmbeddedEngine().map_parts(count, "x", ["a", "c"], {"clips": Input(T.CLIPS, "c")}, {"n": schema},
                                     root=str(tmp_path))
    assert out["n"].to_pylist() == [{"clips": 2, "rows": 2, "ctx": "x"}]
    with pytest.raises(ValueError, match=r"part output 'n' has columns \['clips', 'rows', 'ctx'\]; declared \['x'\]"):
        EmbeddedEngine().map_parts(count, "x", ["a"], {"clips": Input(T.CLIPS, "c")}, {"n": pa.schema([("x", pa.int64())])},
                                   root=str(tmp_path))


def test_engine_settings_name_the_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_ENGINE", "dask")
    with pytest.raises(ValueError, match=r"FLYWHEEL_ENGINE='dask': choose one of embedded, spark"):
        Settings.from_env()
    monkeypatch.setenv("FLYWHEEL_ENGINE", "Spark")
    monkeypatch.setenv("FLYWHEEL_SPARK_DELTA", "maybe")
    with pytest.raises(ValueError, match=r"FLYWHEEL_SPARK_DELTA='maybe': choose one of auto, packages, off"):
        Settings.from_env()
    monkeypatch.setenv("FLYWHEEL_SPARK_DELTA", "off")
    monkeypatch.setenv("FLYWHEEL_SPARK_MASTER", "spark://master:7077")
    s = Settings.from_env()
    assert (s.engine, s.spark_master, s.spark_delta) == ("spark", "spark://master:7077", "off")
    monkeypatch.setenv("FLYWHEEL_SPARK_JARS", "/opt/jars")
    from dagster_project.resources import resources_from_env

    assert resources_from_env()["engine"].spark_jars == "/opt/jars"  # type: ignore[attr-defined]
    monkeypatch.delenv("FLYWHEEL_ENGINE")
    assert Settings.from_env(engine="spark").engine == "spark"  # the cluster deployment's default
    assert Settings.from_env().engine == "embedded"
    with pytest.raises(ValueError, match="engine 'ray'"):
        make_engine("ray")
