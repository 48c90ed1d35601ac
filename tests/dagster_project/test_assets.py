"""The Dagster code location: definitions load, assets materialize per chunk, re-runs replace."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import webdataset as wds

from dagster_project.assets import ingest, targets
from dagster_project.partitions import CHUNKS_PARTITION
from dagster_project.resources import EngineResource, LakeResource, PAISourceResource
from evals.benchmark import benchmark_clip_ids
from labelers.base import LabelerUnavailable
from lake import io
from lake import tables as T
from tests.conftest import SMALL, rewrite_zip
from transforms import pai_layout as L
from transforms.twin.writer import BENCHMARK_SEED, twin_gt_paths
from transforms.unicycle import window_t0s
from transforms.zipread import ChunkUnreadableError

REPO = Path(__file__).resolve().parents[2]


def _resources(lake: Path, mirror: Path) -> dict:
    return {"lake": LakeResource(root=str(lake)), "source": PAISourceResource(kind="mirror", mirror_dir=str(mirror)),
            "engine": EngineResource()}


@pytest.fixture
def instance() -> dg.DagsterInstance:
    """An ephemeral instance with both chunk partitions registered."""
    inst = dg.DagsterInstance.ephemeral()
    inst.add_dynamic_partitions(CHUNKS_PARTITION, ["chunk_0000", "chunk_0001"])
    return inst


def _materialize(instance: dg.DagsterInstance, resources: dict, key: str) -> dg.ExecuteInJobResult:
    return dg.materialize([ingest.raw_chunks, ingest.chunk_index, targets.unicycle_targets], partition_key=key,
                          instance=instance,
                          resources=resources)


def test_spine_assets_materialize_and_rerun_without_duplicates(twin_dir: Path, tmp_path: Path,
                                                                instance: dg.DagsterInstance) -> None:
    res = _resources(tmp_path / "lake", twin_dir)
    for _ in range(2):  # a re-run replaces its partition
        assert _materialize(instance, res, "chunk_0000").success
    assert _materialize(instance, res, "chunk_0001").success
    lake = tmp_path / "lake"
    assert io.read(lake, T.CLIPS).num_rows == 2 * SMALL.clips_per_chunk
    ego = io.read(lake, T.EGOMOTION)
    keys = ego.select(["clip_id", "timestamp"]).group_by(["clip_id", "timestamp"]).aggregate([([], "count_all")])
    assert keys.num_rows == ego.num_rows  # no duplicate pose rows
    n_gt = len(twin_gt_paths(0))  # the twin's ground truth travels with its chunk
    assert io.read(lake, T.CHUNKS, chunk="chunk_0000").num_rows == len(L.METADATA_FILES) + len(L.REQUIRED_FEATURES) + n_gt
    mat = instance.get_latest_materialization_event(dg.AssetKey("clip_index")).asset_materialization
    assert mat.partition == "chunk_0001" and mat.metadata["clips_ok"].value == SMALL.clips_per_chunk
    targets_rows = io.read(lake, T.UNICYCLE_TARGETS)
    clips = io.read(lake, T.CLIPS).to_pylist()
    expected = sum(len(window_t0s(c["egomotion_start_us"], c["egomotion_end_us"])) for c in clips)
    assert targets_rows.num_rows == expected  # every window of every clip, once
    keys = targets_rows.select(["clip_id", "t0_us"]).group_by(["clip_id", "t0_us"]).aggregate([([], "count_all")])
    assert keys.num_rows == targets_rows.num_rows > 0  # re-runs replaced, not appended
    meta = instance.get_latest_materialization_event(dg.AssetKey("unicycle_targets")).asset_materialization.metadata
    assert meta["windows"].value == io.read(lake, T.UNICYCLE_TARGETS, chunk="chunk_0001").num_rows
    assert meta["rt_mean_err_m_p95"].value < 0.07 and "data:image/png;base64" in meta["histograms"].value


def test_quarantine_counts_reach_metadata_and_lake(twin_copy: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    rewrite_zip(twin_copy / L.FEATURES[L.EGOMOTION].path(0), lambda m: dict(list(m.items())[1:]))
    assert _materialize(instance, _resources(tmp_path / "lake", twin_copy), "chunk_0000").success
    mat = instance.get_latest_materialization_event(dg.AssetKey("frames")).asset_materialization
    assert mat.metadata["clips_quarantined"].value == 1 and mat.metadata["quarantine_missing_member"].value == 1
    q = io.read(tmp_path / "lake", T.QUARANTINE)
    assert q.num_rows == 1 and q.column("stage")[0].as_py() == "clip_index"
    clips = io.read(tmp_path / "lake", T.CLIPS)
    assert pc.sum(pc.equal(clips.column("status"), "ok")).as_py() == SMALL.clips_per_chunk - 1


def test_unreadable_chunk_fails_the_run_naming_the_file(twin_copy: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    (twin_copy / L.FEATURES[L.FRONT_CAMERA].path(0)).write_bytes(b"garbage")
    with pytest.raises(ChunkUnreadableError, match=r"camera_front_wide_120fov\.chunk_0000\.zip: not a readable zip"):
        _materialize(instance, _resources(tmp_path / "lake", twin_copy), "chunk_0000")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    return {**env, "DAGSTER_HOME": str(home), "FLYWHEEL_LAKE": str(tmp_path / "lake"), **extra}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def test_definitions_validate(tmp_path: Path) -> None:
    _run([sys.executable, "-m", "dagster", "definitions", "validate", "-m", "dagster_project"], _env(tmp_path))


@pytest.mark.parametrize("source", ["twin", "mirror"])
def test_cli_discover_then_materialize_from_fresh_dagster_home(source: str, twin_dir: Path, tmp_path: Path) -> None:
    if source == "twin":
        env = _env(tmp_path, FLYWHEEL_SOURCE="twin", FLYWHEEL_TWIN_DIR=str(tmp_path / "twin"),
                   FLYWHEEL_TWIN_CHUNKS="2", FLYWHEEL_TWIN_CLIPS="2", FLYWHEEL_TWIN_WIDTH="64",
                   FLYWHEEL_TWIN_HEIGHT="48", FLYWHEEL_TWIN_SECONDS="8")
    else:
        env = _env(tmp_path, FLYWHEEL_SOURCE="mirror", FLYWHEEL_MIRROR_DIR=str(twin_dir))
    out = _run([sys.executable, "-m", "flywheel.cli", "discover"], env).stdout
    assert "['chunk_0000', 'chunk_0001']" in out
    _run([sys.executable, "-m", "dagster", "asset", "materialize", "-m", "dagster_project", "--select",
          "raw_chunks,clip_index,egomotion,frames", "--partition", "chunk_0000"], env)
    clips = io.read(tmp_path / "lake", T.CLIPS)
    assert set(clips.column("chunk").to_pylist()) == {"chunk_0000"} and clips.num_rows >= 2
    assert io.read(tmp_path / "lake", T.FRAMES).num_rows > 200


def test_commander_labels_are_versioned(twin_dir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    from dagster_project.assets import labels

    res = _resources(tmp_path / "lake", twin_dir)
    lake = tmp_path / "lake"
    assert _materialize(instance, res, "chunk_0000").success
    # rows of an older kinematic version, as if labeled before an upgrade
    old = io.read(lake, T.UNICYCLE_TARGETS, chunk="chunk_0000").slice(0, 3)
    n_old = old.num_rows
    io.overwrite_partition(lake, T.COMMANDER_LABELS, pa.table({
        "chunk": ["chunk_0000"] * n_old, "clip_id": old.column("clip_id"), "t0_us": old.column("t0_us"),
        "labeler": ["kinematic"] * n_old, "labeler_version": ["0.9"] * n_old, "meta_action": ["keep_lane"] * n_old,
        "command": ["Follow the lane"] * n_old, "trace": ["{}"] * n_old, "confidence": [0.5] * n_old}),
        chunk="chunk_0000", extra={"labeler": "kinematic", "labeler_version": "0.9"})
    for _ in range(2):
        assert dg.materialize([labels.commander_labels], partition_key="chunk_0000", instance=instance,
                              resources=res).success
    rows = io.read(lake, T.COMMANDER_LABELS)
    versions = pc.value_counts(rows.column("labeler_version")).to_pylist()
    n_windows = io.read(lake, T.UNICYCLE_TARGETS, chunk="chunk_0000").num_rows
    assert {v["values"]: v["counts"] for v in versions} == {"0.9": n_old, "1.0": n_windows}
    current = io.read(lake, T.COMMANDER_LABELS, where={"labeler": "kinematic", "labeler_version": "1.0"})
    assert current.num_rows == n_windows and all(current.column("command").to_pylist())
    meta = instance.get_latest_materialization_event(dg.AssetKey("commander_labels")).asset_materialization.metadata
    assert meta["windows_labeled"].value == n_windows and "| command | windows | share |" in meta["commands"].value


@pytest.mark.slow
def test_a_model_labeler_over_two_workers_commits_each_window_once(twin_dir: Path, tmp_path: Path,
                                                                  instance: dg.DagsterInstance) -> None:
    """commander_labels with the tiny offline VLM split over 2 worker processes, twice: every window is
    labeled or flagged exactly once, and the second run replaces the first's rows (idempotent merge)."""
    from dagster_project.assets import labels
    from trainers.tiny_backbone import build_tiny_backbone

    res = _resources(tmp_path / "lake", twin_dir)
    lake = tmp_path / "lake"
    assert _materialize(instance, res, "chunk_0000").success
    model = build_tiny_backbone(tmp_path / "tiny_vlm", with_weights=True)
    cfg = {"labeler": "vlm", "vlm_model_dir": str(model), "workers": 2}
    n_windows = io.read(lake, T.UNICYCLE_TARGETS, chunk="chunk_0000").num_rows
    counts = []
    for _ in range(2):
        result = dg.materialize([labels.commander_labels], partition_key="chunk_0000", instance=instance, resources=res,
                                run_config={"ops": {"commander_labels": {"config": cfg}}})
        assert result.success
        messages = [e.message for e in instance.all_logs(result.run_id) if e.message]
        assert any("over 2 workers" in m for m in messages) and any(m.startswith("worker 1/2: exit 0") for m in messages)
        labeled = io.read(lake, T.COMMANDER_LABELS, where={"labeler": "vlm"}).num_rows
        flagged = [r for r in io.read(lake, T.QUARANTINE, chunk="chunk_0000").to_pylist() if r["stage"].startswith(
            "commander_labels:vlm:")]
        counts.append((labeled, len(flagged)))
    assert counts[0] == counts[1] and counts[0][0] + counts[0][1] == n_windows
    assert not list((lake / ".labeling" / "sharded" / "chunk_0000").iterdir())


def test_unavailable_labeler_fails_the_run_with_what_to_do(twin_dir: Path, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    from dagster_project.assets import labels

    res = _resources(tmp_path / "lake", twin_dir)
    assert _materialize(instance, res, "chunk_0000").success
    with pytest.raises(LabelerUnavailable, match=r"labeler alpamayo reads .* add alpamayo to FLYWHEEL_LABELERS"):
        dg.materialize([labels.commander_labels], partition_key="chunk_0000", instance=instance, resources=res,
                       run_config={"ops": {"commander_labels": {"config": {"labeler": "alpamayo"}}}})


def test_webdataset_shards_asset_writes_manifest_and_resumes(twin_dir: Path, tmp_path: Path,
                                                             instance: dg.DagsterInstance) -> None:
    from dagster_project.assets import labels, shards
    from transforms.source import sha256_of

    res = _resources(tmp_path / "lake", twin_dir)
    lake = tmp_path / "lake"
    assert _materialize(instance, res, "chunk_0000").success
    assert dg.materialize([labels.commander_labels, shards.webdataset_shards], partition_key="chunk_0000",
                          instance=instance, resources=res).success
    manifest = io.read(lake, T.SHARD_MANIFEST).to_pylist()
    assert manifest and sum(r["samples"] for r in manifest) == io.read(lake, T.UNICYCLE_TARGETS).num_rows
    for r in manifest:
        assert sha256_of(lake / "shards" / r["path"]) == r["sha256"]
    assert len({r["dataset_version"] for r in manifest}) == 1
    assert dg.materialize([shards.webdataset_shards], partition_key="chunk_0000", instance=instance, resources=res).success
    meta = instance.get_latest_materialization_event(dg.AssetKey("webdataset_shards")).asset_materialization.metadata
    assert meta["shards_written"].value == 0 and meta["shards_skipped"].value == len(manifest)
    with pytest.raises(dg.Failure, match=r"no rows labelled by any labeler 9\.9 in commander_labels\[chunk_0000\] "
                                         r"\(it has \[\('kinematic', '1\.0'\)\]\)"):
        dg.materialize([shards.webdataset_shards], partition_key="chunk_0000", instance=instance, resources=res,
                       run_config={"ops": {"webdataset_shards": {"config": {"labeler_version": "9.9"}}}})


def test_a_relabel_flows_downstream_without_naming_it(twin_dir: Path, tmp_path: Path, instance: dg.DagsterInstance,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Bump the kinematic labeler's version: shards and training follow without a config edit."""
    from dagster_project.assets import labels, shards
    from labelers.kinematic import KinematicLabeler
    from trainers.data import shards_from_manifest

    res, lake = _resources(tmp_path / "lake", twin_dir), tmp_path / "lake"
    assert _materialize(instance, res, "chunk_0000").success
    for version in ("1.0", "1.1"):
        monkeypatch.setattr(KinematicLabeler, "version", version)
        assert dg.materialize([labels.commander_labels, shards.webdataset_shards], partition_key="chunk_0000",
                              instance=instance, resources=res).success
    held = {(r["labeler"], r["labeler_version"]) for r in io.read(lake, T.COMMANDER_LABELS).to_pylist()}
    assert held == {("kinematic", "1.0"), ("kinematic", "1.1")}  # the old labels stay beside the new
    manifest = io.read(lake, T.SHARD_MANIFEST)
    assert {(r["labeler"], r["labeler_version"]) for r in manifest.to_pylist()} == {("kinematic", "1.1")}
    assert shards_from_manifest(manifest, lake / "shards").labels == ("kinematic", "1.1")
    # named, an older version is still exported (the lake holds it)
    assert dg.materialize([shards.webdataset_shards], partition_key="chunk_0000", instance=instance, resources=res,
                          run_config={"ops": {"webdataset_shards": {"config": {"labeler_version": "1.0"}}}}).success
    assert {r["labeler_version"] for r in io.read(lake, T.SHARD_MANIFEST).to_pylist()} == {"1.0"}


def _stale(instance: dg.DagsterInstance, assets: list, key: str) -> str:
    """The stale status the UI shows as (un)synced, computed as Dagster's own test helper does."""
    from dagster._utils.test.data_versions import get_stale_status_resolver

    return get_stale_status_resolver(instance, assets).get_status(dg.AssetKey(key)).name


def test_train_field_agent_trains_on_all_chunks_and_records_the_run(twin_dir: Path, tmp_path: Path,
                                                                    instance: dg.DagsterInstance) -> None:
    from dagster_project.assets import labels, shards, training

    res = _resources(tmp_path / "lake", twin_dir)
    lake = tmp_path / "lake"
    small = {"image_width": 128, "image_height": 72}
    for key in ("chunk_0000", "chunk_0001"):
        assert _materialize(instance, res, key).success
        assert dg.materialize([labels.commander_labels, shards.webdataset_shards], partition_key=key, instance=instance,
                              resources=res, run_config={"ops": {"webdataset_shards": {"config": small}}}).success
    cfg = {"profile": "tiny", "steps": 4, "batch_size": 8, "val_every": 4, "checkpoint_every": 4}
    run = {"ops": {"train_field_agent": {"config": cfg}}}
    assert dg.materialize([training.train_field_agent], instance=instance, resources=res, run_config=run).success
    meta = instance.get_latest_materialization_event(dg.AssetKey("train_field_agent")).asset_materialization.metadata
    runs = io.read(lake, T.TRAINING_RUNS).to_pylist()
    assert len(runs) == 1 and runs[0]["run_id"] == meta["run_id"].value and runs[0]["steps"] == 4
    assert meta["chunks"].value == 2 and meta["val_ade_6p4s_m"].value == pytest.approx(runs[0]["val_ade_6p4s_m"], abs=1e-3)
    assert "constant (a, κ)" in meta["val_metrics"].value and "data:image/png;base64" in meta["loss_curve"].value
    assert next(iter(meta)) == "headline" and meta["verdict"].value in ("beats", "loses to", "ties with")
    assert "beats_constant_velocity" not in meta
    assert Path(runs[0]["checkpoint"], "checkpoint.json").exists()
    metrics = io.read(lake, T.TRAINING_METRICS, where={"run_id": runs[0]["run_id"]})
    assert pc.sum(pc.equal(metrics.column("name"), "loss")).as_py() == 4
    # the same config on the same data: reported, not retrained, and no duplicate rows
    assert dg.materialize([training.train_field_agent], instance=instance, resources=res, run_config=run).success
    meta = instance.get_latest_materialization_event(dg.AssetKey("train_field_agent")).asset_materialization.metadata
    assert meta["already_trained"].value and io.read(lake, T.TRAINING_METRICS).num_rows == metrics.num_rows
    with pytest.raises(dg.Failure, match=r"training refused: no rows labelled by vlm \(any version\) in the shard "
                                         r"manifest"):
        dg.materialize([training.train_field_agent], instance=instance, resources=res,
                       run_config={"ops": {"train_field_agent": {"config": {**cfg, "labeler": "vlm"}}}})
    # navsim_eval scores that run and the baselines on the held-out windows of both chunks and on the
    # benchmark set (built once, here a small one: one clip of every scenario)
    from dagster_project.assets import evaluation

    with pytest.raises(dg.Failure, match="materialize benchmark_set first"):
        dg.materialize([evaluation.navsim_eval], instance=instance, resources=res,
                       run_config={"ops": {"navsim_eval": {"config": {"run_id": runs[0]["run_id"]}}}})
    bench = {"clips_per_scenario": 1, "seconds": 9.0, "width": 128, "height": 72}
    ev = {"ops": {"navsim_eval": {"config": {"run_id": runs[0]["run_id"]}}, "benchmark_set": {"config": bench}}}
    for _ in range(2):  # a re-evaluation replaces the run's rows; the benchmark is built once
        assert dg.materialize([evaluation.benchmark_set, evaluation.navsim_eval], instance=instance, resources=res,
                              run_config=ev).success
    built = instance.get_latest_materialization_event(dg.AssetKey("benchmark_set")).asset_materialization.metadata
    assert built["clips"].value == 8 and not built["built"].value
    # no benchmark clip is in any shard of the training lake (every split), nor its seed in the training twin
    held_out_ids = benchmark_clip_ids(lake / "benchmark")
    urls = [str(lake / "shards" / m["path"]) for m in io.read(lake, T.SHARD_MANIFEST).to_pylist()]
    trained = {s["__key__"].rsplit("_", 1)[0] for s in wds.DataPipeline(wds.SimpleShardList(urls),
                                                                         wds.tarfile_to_samples())}
    assert len(held_out_ids) == 8 and len(trained) == 8 and not trained & held_out_ids
    assert json.loads((twin_dir / "twin" / "config.json").read_text())["seed"] != BENCHMARK_SEED
    meta = instance.get_latest_materialization_event(dg.AssetKey("navsim_eval")).asset_materialization.metadata
    held_out = sum(r["samples"] for r in io.read(lake, T.SHARD_MANIFEST).to_pylist() if r["split"] in ("val", "test"))
    held_out += built["windows"].value
    windows = io.read(lake, T.EVAL_WINDOWS)
    assert set(windows.column("split").to_pylist()) == {"val", "test", "benchmark"}
    # the headline leads: the agent against the strongest baseline on the benchmark, with the interval
    assert next(iter(meta)) == "headline" and meta["headline_split"].value == "benchmark"
    assert re.search(r"ADE@6\.4 s on benchmark \(8 clips, \d+ windows\): field agent [\d.]+ m (beats|loses to|ties with) "
                     r"constant_\w+ [\d.]+ m, the strongest baseline \(paired difference [-+][\d.]+ m, 95% \[",
                     meta["headline"].value), meta["headline"].value
    assert meta["ade_6p4s_strongest_baseline"].value in ("constant_velocity", "constant_controls")
    assert "| cruise | 1 |" in meta["scenario_ade_6p4s_benchmark"].value
    stats = io.read(lake, T.EVAL_STATS).to_pylist()
    assert {s["group_kind"] for s in stats} == {"all", "scenario", "meta_action"}
    assert all(s["lo"] <= s["mean"] <= s["hi"] for s in stats)
    assert meta["windows"].value == held_out and windows.num_rows == 5 * held_out
    assert meta["scored_windows"].value == held_out  # the twin's ground truth covers every window
    summary = {(r["policy"], r["split"]): r for r in io.read(lake, T.EVAL_RUNS).to_pylist()}
    assert {p for p, _ in summary} == {"logged", "constant_velocity", "constant_controls", "field_agent",
                                       "wrong_command"}
    assert summary[("logged", "all")]["epdms"] >= 0.95 and summary[("field_agent", "all")]["windows"] == held_out
    assert "| field_agent |" in meta["scores"].value and "EPDMS" in meta["scores"].value
    assert all("data:image/png;base64" in meta[k].value for k in ("best_windows", "worst_windows"))
    # a no-op re-materialization of train_field_agent keeps its data version: navsim_eval stays in sync,
    # and it carries no numbers (each would be a duplicate point in the UI's plots)
    assert dg.materialize([training.train_field_agent], instance=instance, resources=res, run_config=run).success
    noop = instance.get_latest_materialization_event(dg.AssetKey("train_field_agent")).asset_materialization
    assert noop.metadata["already_trained"].value and not [k for k, v in noop.metadata.items()
                                                            if isinstance(v, (dg.IntMetadataValue, dg.FloatMetadataValue))]
    assert _stale(instance, [training.train_field_agent, evaluation.benchmark_set, evaluation.navsim_eval],
                  "navsim_eval") == "FRESH"
    with pytest.raises(ValueError, match=r"run_id 'nope' is not in eval.training_runs"):
        dg.materialize([evaluation.navsim_eval], instance=instance, resources=res,
                       run_config={"ops": {"navsim_eval": {"config": {"run_id": "nope"}}}})
    # closed_loop_eval: the same run's agent drives two short routes in the twin, with and without the
    # shield, beside constant (a, κ) and the twin's driver; one row per (policy, route), GIFs of the extremes
    loop = {"run_id": runs[0]["run_id"], "scenarios": ["stop_and_go", "turn"], "seconds": 5.0}
    assert dg.materialize([evaluation.closed_loop_eval], instance=instance, resources=res,
                          run_config={"ops": {"closed_loop_eval": {"config": loop}}}).success
    meta = instance.get_latest_materialization_event(dg.AssetKey("closed_loop_eval")).asset_materialization.metadata
    routes = {(r["policy"], r["route_id"]): r for r in io.read(lake, T.CLOSED_LOOP_ROUTES).to_pylist()}
    assert len(routes) == 8 and {p for p, _ in routes} == {"field_agent", "field_agent_shield", "constant_controls",
                                                          "driver_model"}
    agent = [r for (p, _), r in routes.items() if p == "field_agent"]
    assert all(r["plans"] >= 2 and r["plan_p50_ms"] > 0 and r["steps"] >= 1 and r["render_ms"] > 0 for r in agent)
    assert all(r["driving_score"] >= 0.9 for (p, _), r in routes.items() if p == "driver_model")
    assert next(iter(meta)) == "headline" and "agent planning latency" in meta["headline"].value
    assert "| field_agent_shield |" in meta["scores"].value and "| turn |" in meta["driving_score_by_scenario"].value
    assert all(Path(meta[f"video_{tag}"].value).stat().st_size > 1000 for tag in ("best", "worst"))
    assert Path(meta["video_worst_rerun"].value).suffix == ".rrd"
    # the leaderboard: run x policy, EPDMS first with its interval, the closed loop's driving score beside it
    assert dg.materialize([evaluation.runs], instance=instance, resources=res).success
    board = {r["policy"]: r for r in io.read(lake, T.RUNS).to_pylist()}
    agent = board["field_agent"]
    assert agent["split"] == "benchmark" and agent["epdms_lo"] <= agent["epdms"] <= agent["epdms_hi"]
    assert agent["driving_score"] is not None and agent["steps"] == 4 and agent["clips"] == 8
    assert board["driver_model"]["epdms"] is None and board["driver_model"]["driving_score"] >= 0.9  # closed loop only
    assert board["logged"]["driving_score"] is None and board["logged"]["epdms"] >= 0.95  # open loop only
    meta = instance.get_latest_materialization_event(dg.AssetKey("runs")).asset_materialization.metadata
    assert meta["leaderboard"].value.startswith("| EPDMS [95%] | run | policy |")
    assert f"| {agent['epdms']:.3f} [{agent['epdms_lo']:.3f}, {agent['epdms_hi']:.3f}] |" in meta["leaderboard"].value
    assert "data:image/png;base64" in meta["training_curves"].value
    # the CLI's flags reach the asset as run config: a LoRA run beside the first one
    cli = [sys.executable, "-m", "flywheel.cli", "train", "--profile", "tiny", "--steps", "3", "--batch-size", "8",
           "--val-every", "3", "--lora-rank", "2", "--no-freeze-backbone"]
    out = _run(cli, _env(tmp_path)).stdout
    assert re.search(r"val ADE@6\.4 s: agent [\d.]+ m (beats|loses to|ties with) constant [^ ]+ [\d.]+ m \(the strongest "
                     r"baseline; difference [-+][\d.]+ m, 95% \[", out), out[-2000:]
    lora = [r for r in io.read(lake, T.TRAINING_RUNS).to_pylist() if json.loads(r["config"])["lora_rank"] == 2]
    assert len(lora) == 1 and lora[0]["steps"] == 3 and Path(lora[0]["checkpoint"], "adapter.safetensors").exists()
    # the same asset through Dagster Pipes: 2 training processes under torchrun (gloo), a new run (another
    # seed); their log lines reach this run's log and their result its materialization and tables
    piped = {**cfg, "seed": 1, "launcher": "pipes", "nproc_per_node": 2}
    result = dg.materialize([training.train_field_agent], instance=instance, resources=res,
                            run_config={"ops": {"train_field_agent": {"config": piped}}})
    assert result.success
    meta = instance.get_latest_materialization_event(dg.AssetKey("train_field_agent")).asset_materialization.metadata
    assert meta["steps"].value == 4 and not meta["already_trained"].value and meta["run_id"].value != runs[0]["run_id"]
    assert Path(meta["checkpoint"].value, "weights.safetensors").exists()
    assert meta["val_ade_6p4s_m"].value == pytest.approx(io.read(lake, T.TRAINING_RUNS, where={
        "run_id": meta["run_id"].value}).column("val_ade_6p4s_m")[0].as_py(), abs=1e-3)
    messages = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert any("x 2 processes" in m for m in messages) and any(m.startswith("step 4/4 loss") for m in messages)
    assert not list((lake / "checkpoints" / ".jobs").glob("*.json"))  # the job file is removed
