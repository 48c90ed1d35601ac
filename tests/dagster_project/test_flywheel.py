"""One small turn of the flywheel on the twin, through Dagster: train → evaluate → hard_examples →
acquisitions → the sensor registers what was acquired → ingest → the turn sensor asks for the next
turn; and the lineage from a score in eval_runs to the clips it caused, and back."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from core.request import DataRequest, parse_weights
from dagster_project.assets import evaluation, flywheel, ingest, labels, shards, targets, training
from dagster_project.checks import qa_checks_for
from dagster_project.partitions import CHUNKS_PARTITION
from dagster_project.resources import EngineResource, LakeResource, PAISourceResource, TwinKnobs
from dagster_project.sensors import flywheel_turn, new_chunks
from lake import io
from lake import tables as T
from transforms.twin.writer import ACQUIRED_BASE

TWIN = {"chunks": 1, "clips_per_chunk": 4, "seed": 11, "width": 96, "height": 64, "seconds": 10.0}
CHUNK_ASSETS = [ingest.raw_chunks, ingest.chunk_index, targets.unicycle_targets, labels.commander_labels,
                shards.webdataset_shards]
SMALL_SHARDS = {"ops": {"webdataset_shards": {"config": {"image_width": 96, "image_height": 64}}}}
TRAIN = {"profile": "tiny", "steps": 4, "batch_size": 8, "val_every": 4, "checkpoint_every": 4}


def test_one_turn_of_the_flywheel_on_the_twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = tmp_path / "lake"
    source = PAISourceResource(kind="twin", twin_dir=str(tmp_path / "twin"), twin=TwinKnobs(**TWIN))
    res = {"lake": LakeResource(root=str(lake)), "source": source, "engine": EngineResource()}
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CHUNKS_PARTITION, ["chunk_0000"])
    assert dg.materialize(CHUNK_ASSETS, partition_key="chunk_0000", instance=instance, resources=res,
                          run_config=SMALL_SHARDS).success
    bench = {"clips_per_scenario": 1, "seconds": 9.0, "width": 96, "height": 64}
    run = {"ops": {"train_field_agent": {"config": TRAIN}, "benchmark_set": {"config": bench},
                   "navsim_eval": {"config": {"wrong_command": False}},
                   "hard_examples": {"config": {"budget_windows": 12}},
                   "acquisitions": {"config": {"method": "twin", "clips": 2}}}}
    loop = [flywheel.hard_examples, flywheel.acquisitions]
    result = dg.materialize([training.train_field_agent, evaluation.benchmark_set, evaluation.navsim_eval, *loop,
                             *qa_checks_for("hard_examples"), *qa_checks_for("acquisitions")], instance=instance,
                            resources=res, run_config=run)
    assert result.success
    # the new tables have their great-expectations suites, and real output passes them
    evaluated = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluated == {"qa_hard_examples": True, "qa_data_requests": True, "qa_acquisitions": True}, evaluated

    # mined: the hard windows with reasons and severities, and a request for their groups
    ev_run = io.read(lake, T.EVAL_RUNS).to_pylist()[0]["run_id"]
    hard = io.read(lake, T.HARD_EXAMPLES).to_pylist()
    assert hard and {h["run_id"] for h in hard} == {ev_run} and all(h["reasons"] for h in hard)
    # a failure the baseline shares weighs nothing; anything else does
    assert all(h["severity"] > 0 or all("so does" in x for x in h["reasons"].split("; ")) for h in hard)
    assert {h["scenario"] for h in hard} <= {"cruise", "follow", "stop_and_go", "lane_change_left",
                                             "lane_change_right", "overtake_left", "turn", "speed_change"}
    req_row = io.read(lake, T.DATA_REQUESTS).to_pylist()[0]
    request = DataRequest.from_json(req_row["request"])
    assert req_row["run_id"] == ev_run and request.windows == 12 and request.request_id == req_row["request_id"]
    assert sum(request.scenarios.values()) == pytest.approx(1.0) and req_row["hard_windows"] == len(hard)
    meta = instance.get_latest_materialization_event(dg.AssetKey("hard_examples")).asset_materialization.metadata
    assert meta["request_id"].value == request.request_id and "| group |" in meta["by_scenario"].value

    # acquired: two twin clips in the request's mix, with their lineage
    acq = io.read(lake, T.ACQUISITIONS).to_pylist()
    assert len(acq) == 2 and {a["request_id"] for a in acq} == {request.request_id}
    assert {a["run_id"] for a in acq} == {ev_run} and {a["chunk"] for a in acq} == {f"chunk_{ACQUIRED_BASE}"}
    assert all(a["scenario"] in request.scenarios for a in acq)

    # the discovery sensor registers the acquired chunk; its ingest adds the clips to the lake
    ctx = dg.build_sensor_context(instance=instance, resources={"source": source})
    result = new_chunks(ctx)
    assert result.dynamic_partitions_requests[0].partition_keys == [f"chunk_{ACQUIRED_BASE}"]
    instance.add_dynamic_partitions(CHUNKS_PARTITION, [f"chunk_{ACQUIRED_BASE}"])
    assert dg.materialize(CHUNK_ASSETS, partition_key=f"chunk_{ACQUIRED_BASE}", instance=instance, resources=res,
                          run_config=SMALL_SHARDS).success
    clips = io.read(lake, T.CLIPS, chunk=f"chunk_{ACQUIRED_BASE}").to_pylist()
    assert {c["clip_id"] for c in clips} == {a["clip_id"] for a in acq}

    # the walk back: an acquired clip -> its request -> the evaluated run and its score
    walked = io.read(lake, T.ACQUISITIONS, where={"request_id": acq[0]["request_id"]}).to_pylist()[0]
    score = [r for r in io.read(lake, T.EVAL_RUNS, where={"run_id": walked["run_id"]}).to_pylist()
             if r["policy"] == "field_agent" and r["split"] == "all"]
    assert len(score) == 1 and score[0]["epdms"] is not None

    # the turn sensor: enough new training windows since the run -> the next turn; too few -> skip
    sctx = dg.build_sensor_context(instance=instance, resources={"lake": res["lake"]})
    monkeypatch.setenv("FLYWHEEL_RETRAIN_MIN_WINDOWS", "1")
    asked = flywheel_turn(sctx)
    assert isinstance(asked, dg.RunRequest) and "new training windows" in asked.tags["flywheel/why"]
    monkeypatch.setenv("FLYWHEEL_RETRAIN_MIN_WINDOWS", "100000")
    assert isinstance(flywheel_turn(sctx), dg.SkipReason)

    # reweighting: the zero-download answer, recorded in the run's config
    rw = {"ops": {"train_field_agent": {"config": {**TRAIN, "reweight": True}}}}
    assert dg.materialize([training.train_field_agent], instance=instance, resources=res, run_config=rw).success
    runs = sorted(io.read(lake, T.TRAINING_RUNS).to_pylist(), key=lambda r: r["finished_us"])
    cfg = json.loads(runs[-1]["config"])
    assert parse_weights(cfg["sample_weights"]) and cfg["train_samples"] > json.loads(runs[0]["config"])["train_samples"]


def test_acquisitions_triage_a_mirror_into_the_folder_the_pipeline_ingests(twin_dir: Path, tmp_path: Path) -> None:
    """The asset's triage path: candidate chunks from a pool (here a mirror), the chosen clips
    written where the mirror source reads, the bytes in metadata and the lineage rows."""
    from tests.conftest import SMALL

    lake = tmp_path / "lake"
    request = DataRequest(20, meta_actions={"turn_left": 1.0, "turn_right": 1.0}, run_id="tiny-abc")
    io.overwrite_partition(lake, T.DATA_REQUESTS, pa.Table.from_pylist([{
        "request_id": request.request_id, "run_id": "tiny-abc", "windows": 20, "request": request.to_json(),
        "hard_windows": 3, "evaluated_windows": 10, "created_us": 1}], schema=T.DATA_REQUESTS.schema),
        extra={"run_id": "tiny-abc"})
    into = tmp_path / "acquired"
    res = {"lake": LakeResource(root=str(lake)), "engine": EngineResource(),
           "source": PAISourceResource(kind="mirror", mirror_dir=str(into))}
    run = {"ops": {"acquisitions": {"config": {"pool": str(twin_dir), "clips": 1, "max_chunks": SMALL.chunks}}}}
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([flywheel.acquisitions], instance=instance, resources=res, run_config=run).success
    meta = instance.get_latest_materialization_event(dg.AssetKey("acquisitions")).asset_materialization.metadata
    assert meta["method"].value == "triage" and meta["clips"].value == 1
    assert 0 < meta["bytes_fetched"].value < meta["bytes_whole_chunks"].value
    rows = io.read(lake, T.ACQUISITIONS).to_pylist()
    chosen = [r for r in rows if r["clip_id"]]
    assert len(chosen) == 1 and json.loads(chosen[0]["meta_actions"]).keys() & {"turn_left", "turn_right"}
    assert sum(r["bytes_fetched"] for r in rows) == meta["bytes_fetched"].value
    # the folder is the mirror the pipeline ingests: the new_chunks sensor finds the chunk there
    found = new_chunks(dg.build_sensor_context(instance=instance, resources={"source": res["source"]}))
    assert found.dynamic_partitions_requests[0].partition_keys == [chosen[0]["chunk"]]
    # a request is answered once: materializing again fetches nothing and keeps the lineage
    assert dg.materialize([flywheel.acquisitions], instance=instance, resources=res, run_config=run).success
    meta = instance.get_latest_materialization_event(dg.AssetKey("acquisitions")).asset_materialization.metadata
    assert meta["already_acquired"].value is True
    assert io.read(lake, T.ACQUISITIONS).to_pylist() == rows
