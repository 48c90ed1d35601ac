"""Faults the index and the source must turn into a quarantine row or an immediate, named error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from dagster_project.assets import ingest
from dagster_project.resources import LakeResource
from lake import io
from lake import tables as T
from tests.conftest import rewrite_zip
from tests.faults import damage as D
from tests.faults.conftest import new_instance, resources
from transforms import index as ix
from transforms import pai_layout as L
from transforms import source as S
from transforms import zipread
from transforms.source import mirror_source

REPO = Path(__file__).resolve().parents[2]


def _index(root: Path) -> ix.ChunkIndex:
    return ix.index_chunk(mirror_source(root).fetch_chunk(0), chunk="chunk_0000")


def _kinds(result: ix.ChunkIndex) -> dict[str, str]:
    return {q.clip_id: q.kind for q in result.quarantine}


def test_chunk_column_of_digit_strings_places_clips_as_integers_do(fault_copy: Path) -> None:
    clips = D.clips_of(fault_copy)
    D.edit_clip_index(fault_copy, lambda ci: ci.assign(chunk=ci["chunk"].astype(str)))
    assert mirror_source(fault_copy).list_chunks() == [0]
    result = _index(fault_copy)
    assert sorted(result.clips.column("clip_id").to_pylist()) == clips and not result.quarantine


def test_a_clip_with_no_usable_chunk_is_named_and_the_rest_indexed(fault_copy: Path) -> None:
    clips = D.clips_of(fault_copy)

    def nan_for_first(ci):
        ci = ci.assign(chunk=ci["chunk"].astype(float))
        ci.loc[clips[0], "chunk"] = np.nan
        return ci

    D.edit_clip_index(fault_copy, nan_for_first)
    assert mirror_source(fault_copy).list_chunks() == [0]
    result = _index(fault_copy)
    assert sorted(result.clips.column("clip_id").to_pylist()) == clips[1:]
    assert any(clips[0] in n and "no usable chunk" in n for n in result.notes), result.notes


def test_a_member_declaring_more_than_the_cap_is_not_inflated(fault_copy: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    clips = D.clips_of(fault_copy)
    name = L.FEATURES[L.EGOMOTION].members(clips[2])["egomotion"]
    rewrite_zip(fault_copy / L.FEATURES[L.EGOMOTION].path(0), lambda m: {**m, name: bytes(4 * 2**20)})
    monkeypatch.setattr(zipread, "MAX_MEMBER_BYTES", 2**20)
    result = _index(fault_copy)
    assert _kinds(result) == {clips[2]: "corrupt_member"}
    assert "declares 4 MiB inflated, more than the 1 MiB" in result.quarantine[0].reason


def test_a_zip_declaring_more_than_a_chunk_may_hold_fails_naming_it(fault_copy: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zipread, "MAX_ZIP_BYTES", 2**20)
    with pytest.raises(zipread.ChunkUnreadableError, match=r"egomotion.chunk_0000.zip: members declare .* zip bomb"):
        _index(fault_copy)


def test_a_clip_missing_from_the_zips_is_quarantined_as_missing(fault_copy: Path) -> None:
    clips = D.clips_of(fault_copy)
    D.remove_clip_files(fault_copy, clips[4])
    result = _index(fault_copy)
    assert _kinds(result) == {clips[4]: "missing_member"} and "egomotion.parquet missing" in result.quarantine[0].reason


def test_an_unforeseen_error_in_one_clip_becomes_its_quarantine_row(fault_copy: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    clips = D.clips_of(fault_copy)
    real = ix._check_clip_row

    def check(row: dict, name: str) -> None:
        if row["clip_id"] == clips[3]:
            raise KeyError("status")
        real(row, name)

    monkeypatch.setattr(ix, "_check_clip_row", check)
    result = _index(fault_copy)
    assert _kinds(result) == {clips[3]: "clip_error"}
    assert "KeyError" in result.quarantine[0].reason and result.counts()["clips_ok"] == len(clips) - 1


def _failed_at_once(result: dg.ExecuteInJobResult) -> bool:
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    return not result.success and not retried


def test_raw_chunks_fails_at_once_on_errors_a_retry_cannot_fix(fault_copy: Path, tmp_path: Path) -> None:
    start = time.monotonic()
    # a partition key alias: refused with the canonical key, nothing fetched
    res = dg.materialize([ingest.raw_chunks], partition_key="chunk_0", instance=new_instance(("chunk_0",)),
                         resources=resources(tmp_path / "lake", fault_copy), raise_on_error=False)
    assert _failed_at_once(res) and not (tmp_path / "lake").exists()
    # a lake path that is a file
    (tmp_path / "file").write_text("")
    res = dg.materialize([ingest.raw_chunks], partition_key="chunk_0000", instance=new_instance(),
                         resources={**resources(tmp_path / "file", fault_copy), "lake": LakeResource(
                             root=str(tmp_path / "file"))}, raise_on_error=False)
    assert _failed_at_once(res)
    # a features.csv whose path leaves the dataset
    rows = L.features_csv_rows()
    import pandas as pd

    pd.DataFrame([{**r, "chunk_path": "../../../../etc/hostname"} if r["feature"] == L.EGOMOTION else r
                  for r in rows]).to_csv(fault_copy / "features.csv", index=False)
    res = dg.materialize([ingest.raw_chunks], partition_key="chunk_0000", instance=new_instance(),
                         resources=resources(tmp_path / "lake2", fault_copy), raise_on_error=False)
    assert _failed_at_once(res) and io.read(tmp_path / "lake2", T.CHUNKS).num_rows == 0
    failure = next(e for e in res.all_events if e.event_type_value == "STEP_FAILURE")
    assert "../../../../etc/hostname" in str(failure.event_specific_data.error)
    assert time.monotonic() - start < 60  # the retry policy waits 60 s before a retry


def test_call_within_answers_or_gives_up_on_time() -> None:
    assert S.call_within(lambda: 7, seconds=5, what="x") == 7
    with pytest.raises(KeyError):
        S.call_within(lambda: {}["k"], seconds=5, what="x")
    start = time.monotonic()
    with pytest.raises(S.SourceError, match=r"discovering: no answer within 0.3 s"):
        S.call_within(lambda: time.sleep(5), seconds=0.3, what="discovering")
    assert time.monotonic() - start < 2


@pytest.mark.slow
def test_discovery_from_a_hub_that_never_answers_ends_before_a_sensor_tick(tmp_path: Path) -> None:
    """A server that accepts connections and never replies: huggingface_hub alone waited 397 s here."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        script = ("import time\nfrom transforms.source import HubSource\nt = time.monotonic()\n"
                  f"try:\n    HubSource('0' * 40, cache_dir={str(tmp_path)!r}).list_chunks()\n"
                  "except Exception as e:\n    print(type(e).__name__, e)\nprint('took', time.monotonic() - t)\n")
        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120,
                             env={**env, "HF_ENDPOINT": f"http://127.0.0.1:{server.getsockname()[1]}"})
    took = float(out.stdout.split("took")[-1])
    assert "SourceError" in out.stdout and "no answer within 30 s" in out.stdout, out.stdout + out.stderr[-2000:]
    assert took < 40  # a sensor tick is cut off at 60 s


def test_flywheel_tables_refuses_a_path_that_holds_no_lake(tmp_path: Path) -> None:
    out = subprocess.run([str(Path(sys.executable).parent / "flywheel"), "tables"], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "FLYWHEEL_LAKE": str(tmp_path / "nothing")}, timeout=120)
    assert out.returncode == 2 and "holds no lake table" in out.stderr and str(tmp_path / "nothing") in out.stderr


_PEAK = ("import resource, sys\nfrom transforms.index import index_chunk\nfrom transforms.source import mirror_source\n"
         "ix = index_chunk(mirror_source(sys.argv[1]).fetch_chunk(0), chunk='chunk_0000', workers=1)\n"
         "print(sorted(q.kind for q in ix.quarantine), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n")


def _peak_mib(root: Path) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _PEAK, str(root)], capture_output=True, text=True, cwd=REPO,
                         timeout=300, check=True)
    kinds, mib = out.stdout.strip().rsplit(" ", 1)
    return kinds, int(mib)


@pytest.mark.slow
def test_a_zip_bomb_member_costs_no_memory(fault_twin: Path, fault_copy: Path) -> None:
    """A 1 GiB member of zeros (1 MiB deflated) in place of one clip's egomotion: refused by its
    declared size, so indexing the chunk peaks no higher than indexing the clean one."""
    clip = D.clips_of(fault_copy)[1]
    name = L.FEATURES[L.EGOMOTION].members(clip)["egomotion"]
    rewrite_zip(fault_copy / L.FEATURES[L.EGOMOTION].path(0), lambda m: {**m, name: bytes(2**30)})
    clean_kinds, clean_mib = _peak_mib(fault_twin)
    kinds, mib = _peak_mib(fault_copy)
    assert clean_kinds == "[]" and kinds == "['corrupt_member']"
    print(f"peak RSS: clean chunk {clean_mib} MiB, with a 1 GiB member {mib} MiB")
    assert mib < clean_mib + 100
