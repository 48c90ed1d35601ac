"""kill -9 at each commit boundary of the index, the shard export and the checkpoint, then a re-run.

Each stage runs in a subprocess that SIGKILLs itself at an injected point (lake/faults.py). After
the kill the lake must hold the old state or the new one, never a mix that a reader would use;
the re-run must converge to the state of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import webdataset as wds

from dagster_project.assets import ingest, targets
from dagster_project.assets import shards as shard_assets
from lake import io
from lake import tables as T
from lake.faults import ENV
from tests.faults import damage as D
from tests.faults.conftest import SHARDS, Run, collect, new_instance, resources, run_chain
from tests.faults.crash_run import train_run
from trainers import checkpoint as C
from trainers.data import shards_from_manifest
from transforms.source import sha256_of

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _killed_at(point: str, *args: str) -> None:
    env = {**os.environ, ENV: point}
    out = subprocess.run([sys.executable, "-m", "tests.faults.crash_run", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == -signal.SIGKILL, f"not killed at {point}: rc {out.returncode}\n{out.stderr[-3000:]}"


def _lake_copy(run: Run, tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    shutil.copytree(run.lake, lake, symlinks=True)
    return lake


def _targets(lake: Path, mirror: Path) -> dg.ExecuteInJobResult:
    return dg.materialize([targets.unicycle_targets], partition_key="chunk_0000", instance=new_instance(),
                          resources=resources(lake, mirror), raise_on_error=False)


@pytest.mark.parametrize("point", ["index.before_egomotion", "index.before_frames", "index.before_clips"])
def test_index_killed_between_its_commits(point: str, fault_copy: Path, clean_run: Run, tmp_path: Path) -> None:
    lake = _lake_copy(clean_run, tmp_path)  # the old state: every clip usable
    gap_clip = D.clips_of(fault_copy)[2]
    D.egomotion_gap(fault_copy, gap_clip)  # the new state will quarantine this clip
    assert dg.materialize([ingest.raw_chunks], partition_key="chunk_0000", instance=new_instance(),
                          resources=resources(lake, fault_copy)).success
    _killed_at(point, "index", str(lake), str(fault_copy))

    clips = {r["clip_id"]: r["status"] for r in io.read(lake, T.CLIPS).to_pylist()}
    assert clips[gap_clip] == "ok"  # `clips` is committed last: the old index is still in force
    ego_clips = set(io.read(lake, T.EGOMOTION).column("clip_id").to_pylist())
    mixed = gap_clip not in ego_clips
    assert mixed == (point != "index.before_egomotion")
    res = _targets(lake, fault_copy)
    assert res.success != mixed  # a mix is refused by name, never fitted
    if mixed:
        failure = next(e for e in res.all_events if e.event_type_value == "STEP_FAILURE")
        assert "two index runs" in str(failure.event_specific_data.error) and gap_clip in str(
            failure.event_specific_data.error)

    run = run_chain(lake, fault_copy)  # the re-run converges
    assert run.ok and run.quarantine == {("clip_index", gap_clip): "egomotion_gap"}
    others = [c for c in clean_run.targets if c != gap_clip]
    assert set(run.targets) == set(run.samples) == set(others)
    assert all(run.targets[c] == clean_run.targets[c] and run.samples[c] == clean_run.samples[c] for c in others)


def _listed_files(lake: Path) -> tuple[list[dict], set[str]]:
    manifest = io.read(lake, T.SHARD_MANIFEST).to_pylist()
    on_disk = {p.relative_to(lake / "shards").as_posix() for p in (lake / "shards").rglob("*")
               if p.is_file() and ".locks" not in p.parts}
    return manifest, on_disk


def _consistent(lake: Path, expect_samples: int) -> str:
    """The manifest describes files that are there, intact, with no sample twice; returns its version."""
    manifest, _ = _listed_files(lake)
    assert len({r["dataset_version"] for r in manifest}) == 1
    for r in manifest:
        assert sha256_of(lake / "shards" / r["path"]) == r["sha256"]
    s = shards_from_manifest(io.read(lake, T.SHARD_MANIFEST), lake / "shards", labeler="kinematic",
                             labeler_version="1.0")
    keys = [x["__key__"] for x in wds.WebDataset(s.train + s.val + [str(lake / "shards" / r["path"]) for r in manifest
                                                                     if r["split"] == "test"], shardshuffle=False)]
    assert len(keys) == len(set(keys)) == sum(r["samples"] for r in manifest) == expect_samples
    return manifest[0]["dataset_version"]


@pytest.mark.parametrize("point", ["shards.after_publish@2", "shards.before_commit", "shards.after_commit"])
def test_shard_reexport_killed_leaves_one_generation(point: str, fault_twin: Path, clean_run: Run,
                                                     tmp_path: Path) -> None:
    lake = _lake_copy(clean_run, tmp_path)
    total = sum(clean_run.samples.values())
    old = _consistent(lake, total)
    smaller = json.dumps({"max_count": 25})  # another export config: a new dataset version, other shard cuts
    _killed_at(point, "shards", str(lake), str(fault_twin), smaller)

    after = _consistent(lake, total)  # old or new, never a mix; training would read exactly this
    assert (after == old) == (point != "shards.after_commit")

    assert dg.materialize([shard_assets.webdataset_shards], partition_key="chunk_0000", instance=new_instance(),
                          resources=resources(lake, fault_twin),
                          run_config={"ops": {"webdataset_shards": {"config": {**SHARDS, **json.loads(smaller)}}}}).success
    new = _consistent(lake, total)
    assert new != old
    manifest, on_disk = _listed_files(lake)
    assert on_disk == {r["path"] for r in manifest}  # orphans, temp files and the old generation are gone
    assert collect(lake).samples == clean_run.samples


@pytest.mark.parametrize("point, resumed_from", [("checkpoint.before_switch@2", 2), ("checkpoint.after_switch@2", 4)])
def test_checkpoint_killed_while_saving_resumes(point: str, resumed_from: int, clean_run: Run, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _killed_at(point, "train", str(clean_run.lake), str(runs))
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    ckpt, state = C.run_paths(run_dir)
    step = C.read_meta(ckpt)["step"]
    assert step == json.loads((state / "progress.json").read_text())["step"] == resumed_from  # one pair
    res = train_run(str(clean_run.lake), str(runs))
    assert res.resumed_from == resumed_from and C.read_meta(res.checkpoint)["step"] == 4
    assert sorted(p.name for p in (run_dir / "gens").iterdir()) == [f"{4:09d}"]  # older generations dropped
