"""Acquisition: twin chunks by request, and egomotion-first triage over a mirror and a prepared HF cache."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from core.request import DataRequest
from labelers.triage import official_reader, triage, triage_rows, write_chosen
from tests.conftest import SMALL
from transforms import pai_layout as L
from transforms.index import index_chunk
from transforms.source import LocalDirSource, TwinSource, write_hf_cache
from transforms.twin.acquire import acquire_twin, acquisition_rows, plan_scenarios
from transforms.twin.writer import ACQUIRED_BASE, write_twin

REV = "0123456789abcdef0123456789abcdef01234567"
# bends: of the small twin's 8 clips, only its "turn" clip holds them
BENDS = DataRequest(60, meta_actions={"turn_left": 1.0, "turn_right": 1.0})


def _triage(reader, into: Path):
    res = triage(reader, BENDS, exclude=set(), clips=1, max_chunks=SMALL.chunks)
    write_chosen(reader, res, into)
    return res


def test_triage_over_a_mirror_chooses_by_egomotion_and_fetches_only_the_chosen_cameras(twin_dir: Path,
                                                                                      tmp_path: Path) -> None:
    res = _triage(official_reader(twin_dir), tmp_path / "into")
    assert len(res.triaged) == SMALL.chunks * SMALL.clips_per_chunk  # every candidate clip was labelled
    scores = [c.score for c in res.chosen]
    assert scores == sorted(scores, reverse=True) and scores[0] >= max(c.score for c in res.triaged)
    assert all({"turn_left", "turn_right"} & set(c.meta_actions) for c in res.chosen)  # what the request asks for
    truth = pd.concat(pd.read_parquet(twin_dir / f"twin/scenario/scenario.chunk_{c:04d}.parquet")
                      for c in range(SMALL.chunks)).set_index("clip_id")["scenario"]
    assert {truth[c.clip_id] for c in res.chosen} == {"turn"}
    # bytes: the egomotion and calibration of every triaged chunk, the camera of the chosen clips only
    fetched, whole = sum(res.bytes_fetched.values()), sum(res.bytes_whole.values())
    assert 0 < fetched < whole and all(res.member_bytes[c.clip_id] > 0 for c in res.chosen)
    # the chosen clips are a mirror the pipeline ingests: index finds them, and nothing else
    src = LocalDirSource(tmp_path / "into")
    assert src.list_chunks() == sorted({c.chunk for c in res.chosen})
    chunk = res.chosen[0].chunk
    ix = index_chunk(src.fetch_chunk(chunk), chunk=L.chunk_key(chunk))
    ok = {r["clip_id"] for r in ix.clips.to_pylist() if r["status"] == "ok"}
    assert ok == {c.clip_id for c in res.chosen if c.chunk == chunk}
    rows = triage_rows(res, BENDS, source="mirror", acquired_us=1)
    assert sum(r["bytes_fetched"] for r in rows) == fetched
    assert {r["clip_id"] for r in rows if r["clip_id"]} == {c.clip_id for c in res.chosen}


def test_triage_over_a_prepared_hf_cache_matches_the_mirror(twin_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hf"
    write_hf_cache(twin_dir, cache, REV)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = _triage(official_reader(cache, revision=REV), tmp_path / "from_cache")
    mirror = _triage(official_reader(twin_dir), tmp_path / "from_mirror")
    assert [c.clip_id for c in hub.chosen] == [c.clip_id for c in mirror.chosen]
    assert not hub.notes  # the official reader read the members (no whole-chunk fallback)
    rel = L.FEATURES[L.FRONT_CAMERA].path(hub.chosen[0].chunk)
    assert (tmp_path / "from_cache" / rel).read_bytes() == (tmp_path / "from_mirror" / rel).read_bytes()


def test_triage_refuses_when_no_chunk_is_left(twin_dir: Path) -> None:
    with pytest.raises(ValueError, match="no chunk left to triage"):
        triage(official_reader(twin_dir), BENDS, exclude=set(range(SMALL.chunks)), clips=1, max_chunks=2)


def test_twin_acquisition_follows_the_request_and_is_idempotent(tmp_path: Path) -> None:
    root = write_twin(tmp_path / "twin", SMALL)
    req = DataRequest(40, scenarios={"stop_and_go": 3.0, "overtake_left": 1.0}, run_id="r1")
    assert plan_scenarios(req, 8, seed=1) == plan_scenarios(req, 8, seed=1)  # deterministic
    assert Counter(plan_scenarios(req, 8, seed=1)) == {"stop_and_go": 6, "overtake_left": 2}
    first = acquire_twin(root, SMALL, req, seed=1, clips=6)
    assert [a.chunk_id for a in first] == [ACQUIRED_BASE, ACQUIRED_BASE + 1] and all(a.new for a in first)
    again = acquire_twin(root, SMALL, req, seed=1, clips=6)
    assert [a.chunk_id for a in again] == [a.chunk_id for a in first] and not any(a.new for a in again)
    src = TwinSource(root, SMALL)
    assert src.list_chunks() == [0, 1, ACQUIRED_BASE, ACQUIRED_BASE + 1]
    truth = pd.read_parquet(root / f"twin/scenario/scenario.chunk_{ACQUIRED_BASE:04d}.parquet")
    assert truth["scenario"].tolist() == first[0].scenarios
    index = pd.read_parquet(root / "clip_index.parquet")
    assert set(index.index[index["chunk"] >= ACQUIRED_BASE]) == {c for a in first for c in a.clip_ids}
    rows = acquisition_rows(first, req, acquired_us=5, seconds=SMALL.seconds)
    assert len(rows) == 6 and {r["request_id"] for r in rows} == {req.request_id}
    with pytest.raises(ValueError, match="does not simulate"):
        acquire_twin(root, SMALL, DataRequest(10, scenarios={"roundabout": 1.0}))


def test_triage_falls_back_to_the_whole_chunk_when_member_reads_fail(twin_dir: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hf"
    write_hf_cache(twin_dir, cache, REV)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    reader = official_reader(cache, revision=REV)

    def refuse(*args: object, **kw: object) -> None:
        raise OSError("416 Range Not Satisfiable")

    monkeypatch.setattr(reader, "get_clip_feature_paths", refuse)
    res = _triage(reader, tmp_path / "into")
    clip = res.chosen[0]
    whole_camera = (twin_dir / L.FEATURES[L.FRONT_CAMERA].path(clip.chunk)).stat().st_size
    assert res.member_bytes[clip.clip_id] == whole_camera and "whole chunk file" in res.notes[0]
    assert "416" in res.notes[0]
    assert LocalDirSource(tmp_path / "into").list_chunks() == [clip.chunk]  # the clip still arrived
