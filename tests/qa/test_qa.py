"""Data QA: the suites pass on real pipeline output, each breakage fails the check that names it,
a failed blocking check stops the downstream asset, and the report and training gate see it."""

from __future__ import annotations

import io as _io
import json
import tarfile
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from core.vocab import META_ACTIONS
from dagster_project.assets import ingest, labels, qa, shards, targets
from dagster_project.checks import qa_checks
from dagster_project.partitions import CHUNKS_PARTITION
from dagster_project.resources import EngineResource, LakeResource, PAISourceResource
from engines import EmbeddedEngine, Engine
from lake import io
from lake import tables as T
from qa.report import blocking_failures, failure_text
from qa.suites import SUITES, Inputs
from qa.validate import validate

KEY = "chunk_0000"
SPINE = [ingest.raw_chunks, ingest.chunk_index, targets.unicycle_targets, labels.commander_labels,
         shards.webdataset_shards]


def _instance() -> dg.DagsterInstance:
    inst = dg.DagsterInstance.ephemeral()
    inst.add_dynamic_partitions(CHUNKS_PARTITION, [KEY])
    return inst


def _resources(lake: Path, mirror: Path, engine_cls: type[EngineResource] = EngineResource) -> dict:
    return {"lake": LakeResource(root=str(lake)), "source": PAISourceResource(kind="mirror", mirror_dir=str(mirror)),
            "engine": engine_cls()}


@pytest.fixture(scope="module")
def good_lake(twin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dg.ExecuteInJobResult]:
    """One chunk through the per-chunk graph with every check, as a user's run does it."""
    lake = tmp_path_factory.mktemp("qa") / "lake"
    res = dg.materialize([*SPINE, *qa_checks], partition_key=KEY, instance=_instance(), resources=_resources(lake, twin_dir),
                         selection=dg.AssetSelection.assets(*SPINE) | dg.AssetSelection.checks_for_assets(*SPINE))
    return lake, res


def _table(lake: Path, name: str) -> pa.Table:
    return io.read(lake, next(t for t in T.ALL_TABLES if t.name == name), chunk=KEY)


def _validate(lake: Path, name: str, data: pa.Table | None = None) -> object:
    suite = SUITES[name]
    inputs = Inputs(related={t.name: _table(lake, t.name) for t in suite.inputs}, shard_root=lake / "shards")
    return validate(name, _table(lake, name) if data is None else data, partition=KEY, inputs=inputs)


def test_every_check_passes_on_real_output_and_is_recorded(good_lake: tuple[Path, dg.ExecuteInJobResult]) -> None:
    lake, res = good_lake
    assert res.success
    evals = res.get_asset_check_evaluations()
    names = {e.check_name for e in evals}
    assert names == {"qa_chunks", "qa_clips", "qa_egomotion", "qa_frames", "qa_unicycle_targets",
                     "qa_commander_labels", "qa_shard_manifest", "qa_quarantine"}
    assert all(e.passed for e in evals), [e.metadata for e in evals if not e.passed]
    results = io.read(lake, T.QA_RESULTS)
    assert set(results.column("table_name").to_pylist()) == {SUITES[n[3:]].table.name for n in names}
    assert results.num_rows == sum(len(SUITES[n[3:]].checks) for n in names) and pc.all(results.column("success")).as_py()
    # a passing expectation says what it observed: the column's range, its values, its nulls
    seen = {(r["table_name"], r["check"]): json.loads(r["observed"]) for r in results.to_pylist()}
    speed = seen[("egomotion", "speed 0..70 m/s")]
    assert 0 <= speed["min"] <= speed["max"] <= 70 and speed["nulls"] == 0, speed
    assert set(seen[("commander_labels", "meta-action vocabulary")]["values"]) <= set(META_ACTIONS)


def _fails_only(result: object, check: str) -> None:
    failed = [o.check for o in result.failed]  # type: ignore[attr-defined]
    assert failed == [check], result.summary()  # type: ignore[attr-defined]


def _set(t: pa.Table, col: str, values: list | np.ndarray) -> pa.Table:
    return t.set_column(t.schema.get_field_index(col), col, pa.array(values, t.schema.field(col).type))


def test_egomotion_breakages_fail_their_checks(good_lake: tuple[Path, dg.ExecuteInJobResult]) -> None:
    lake, _ = good_lake
    ego = _table(lake, "egomotion")
    ts = ego.column("timestamp").to_numpy().copy()
    ts[10], ts[11] = ts[11], ts[10]  # two samples out of order
    _fails_only(_validate(lake, "egomotion", _set(ego, "timestamp", ts)), "timestamps strictly increasing per clip, gaps < 1 s")
    vx = ego.column("vx").to_numpy().copy()
    vx[5] = 120.0  # km/h read as m/s
    _fails_only(_validate(lake, "egomotion", _set(ego, "vx", vx)), "speed 0..70 m/s")
    vx[5] = np.nan
    result = _validate(lake, "egomotion", _set(ego, "vx", vx))
    _fails_only(result, "vx present (not null/NaN)")
    # the failure names the offending row by its keys: chunk, clip, timestamp
    where = failure_text(result.failed[0].observed)  # type: ignore[attr-defined]
    row = ego.slice(5, 1).to_pylist()[0]
    assert f"chunk {KEY}, clip_id {row['clip_id']}, timestamp {row['timestamp']}: NaN" == where, where


def test_missing_front_camera_frames_fail_coverage(good_lake: tuple[Path, dg.ExecuteInJobResult]) -> None:
    lake, _ = good_lake
    frames = _table(lake, "frames")
    clip = frames.column("clip_id")[0].as_py()
    idx = np.arange(frames.num_rows)
    in_clip = np.flatnonzero(pc.equal(frames.column("clip_id"), clip).to_numpy(zero_copy_only=False))
    drop = set(in_clip[len(in_clip) // 2: len(in_clip) // 2 + len(in_clip) // 10].tolist())  # a 10% gap
    result = _validate(lake, "frames", frames.take([i for i in idx if i not in drop]))
    _fails_only(result, "front-camera frame coverage >= 95% per clip")


def test_target_and_label_breakages_fail_their_checks(good_lake: tuple[Path, dg.ExecuteInJobResult]) -> None:
    lake, _ = good_lake
    tg = _table(lake, "unicycle_targets")
    err = tg.column("rt_mean_err_m").to_numpy().copy()
    err[0] = 3.0
    _fails_only(_validate(lake, "unicycle_targets", _set(tg, "rt_mean_err_m", err)), "fit mean error <= 0.5 m")
    kappa, good = tg.column("curvature_1pm").to_pylist(), tg.column("curvature_1pm").to_pylist()
    kappa[1] = [0.5, *good[1][1:]]
    _fails_only(_validate(lake, "unicycle_targets", _set(tg, "curvature_1pm", kappa)), "curvature <= 0.33 1/m")
    kappa[1] = good[1][:63]
    _fails_only(_validate(lake, "unicycle_targets", _set(tg, "curvature_1pm", kappa)), "curvature_1pm holds 64 values")
    lb = _table(lake, "commander_labels")
    ma = lb.column("meta_action").to_pylist()
    ma[2] = "drift"
    _fails_only(_validate(lake, "commander_labels", _set(lb, "meta_action", ma)), "meta-action vocabulary")


def test_shard_sample_counts_must_equal_the_manifest(good_lake: tuple[Path, dg.ExecuteInJobResult],
                                                     tmp_path: Path) -> None:
    lake, _ = good_lake
    manifest = _table(lake, "shard_manifest")
    assert _validate(lake, "shard_manifest").success
    # a copy of the shards where one tar lost its last sample (a truncated upload, say)
    import shutil

    shards_copy = tmp_path / "shards"
    shutil.copytree(lake / "shards", shards_copy)
    path = shards_copy / manifest.column("path")[0].as_py()
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    last = members[-1][0].name.split(".", 1)[0]
    with tarfile.open(path, "w") as tar:
        for m, data in members:
            if not m.name.startswith(last + "."):
                tar.addfile(m, _io.BytesIO(data))
    suite = SUITES["shard_manifest"]
    assert suite.blocking
    result = validate("shard_manifest", manifest, partition=KEY, inputs=Inputs(shard_root=shards_copy))
    assert [o.check for o in result.failed] == ["samples in each tar equal the manifest", "file sizes equal the manifest"]


class BrokenTargetsEngine(EmbeddedEngine):
    """An engine whose unicycle_targets commits come out broken (NaN accelerations): a bug upstream."""

    def overwrite_partition(self, root: str, table: T.Table, data: pa.Table, *, chunk: str | None = None,
                            extra: dict[str, str] | None = None) -> int:
        if table.name == "unicycle_targets" and data.num_rows:
            accel = data.column("accel_mps2").to_pylist()
            accel[0] = [float("nan")] * 64
            data = data.set_column(data.schema.get_field_index("accel_mps2"), "accel_mps2",
                                   pa.array(accel, data.schema.field("accel_mps2").type))
        return super().overwrite_partition(root, table, data, chunk=chunk, extra=extra)


class BrokenEngineResource(EngineResource):
    def engine(self) -> Engine:
        return BrokenTargetsEngine()


def test_a_broken_table_fails_its_check_and_blocks_downstream(twin_dir: Path, tmp_path: Path) -> None:
    lake, inst = tmp_path / "lake", _instance()
    resources = _resources(lake, twin_dir, BrokenEngineResource)
    res = dg.materialize([*SPINE, *qa_checks], partition_key=KEY, instance=inst, resources=resources, raise_on_error=False,
                         selection=dg.AssetSelection.assets(*SPINE) | dg.AssetSelection.checks_for_assets(*SPINE))
    assert not res.success
    by_name = {e.check_name: e for e in res.get_asset_check_evaluations()}
    assert not by_name["qa_unicycle_targets"].passed
    assert by_name["qa_unicycle_targets"].severity == dg.AssetCheckSeverity.ERROR
    assert by_name["qa_egomotion"].passed and by_name["qa_frames"].passed
    assert "accelerations finite" in by_name["qa_unicycle_targets"].description
    # the broken table was written, nothing downstream of it was
    assert io.read(lake, T.UNICYCLE_TARGETS).num_rows > 0
    for asset in ("commander_labels", "webdataset_shards"):
        assert inst.get_latest_materialization_event(dg.AssetKey(asset)) is None, asset
    assert io.read(lake, T.COMMANDER_LABELS).num_rows == 0 and io.read(lake, T.SHARD_MANIFEST).num_rows == 0
    # training would refuse that chunk; the report shows the failure
    results = io.read(lake, T.QA_RESULTS)
    assert blocking_failures(results, [KEY]) == ["unicycle_targets[chunk_0000]: accelerations finite"]
    assert blocking_failures(results, ["chunk_0001"]) == []
    assert dg.materialize([qa.data_qa_report], instance=inst, resources=resources).success
    meta = inst.get_latest_materialization_event(dg.AssetKey("data_qa_report")).asset_materialization.metadata
    assert meta["failed_blocking"].value == 1
    page = Path(meta["report"].value).read_text()
    assert "FAILED (blocking)" in page and "accelerations finite" in page and "<script" not in page
    assert (lake / "qa_reports" / "latest.html").read_text() == page
    # reachable from the UI: the failures with their rows' keys are embedded; past validations are indexed
    assert "accelerations finite (blocking)" in meta["failures"].value and "clip_id " in meta["failures"].value
    assert "clip_id " in by_name["qa_unicycle_targets"].metadata["failures"].value
    assert dg.materialize([qa.data_qa_report], instance=inst, resources=resources).success
    index = (lake / "qa_reports" / "index.html").read_text()
    assert index.count(".html'>") == 3 and Path(meta["report"].value).name in index  # two runs + latest
