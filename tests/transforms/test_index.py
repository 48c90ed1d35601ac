"""Indexing a chunk: the happy path, and every kind of bad input quarantined without losing the rest."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import SMALL, rewrite_zip
from transforms import pai_layout as L
from transforms.index import ChunkIndex, index_chunk
from transforms.source import mirror_source
from transforms.zipread import ChunkUnreadableError

N = SMALL.clips_per_chunk


def _index(root: Path, chunk_id: int = 0, **kw: object) -> ChunkIndex:
    return index_chunk(mirror_source(root).fetch_chunk(chunk_id), chunk=L.chunk_key(chunk_id), **kw)


def _clips(root: Path, chunk_id: int = 0) -> list[str]:
    ci = pd.read_parquet(root / "clip_index.parquet")
    return sorted(ci.index[ci["chunk"] == chunk_id])


def _status(ix: ChunkIndex) -> dict[str, str]:
    return dict(zip(ix.clips.column("clip_id").to_pylist(), ix.clips.column("status").to_pylist(), strict=True))


def _assert_only(ix: ChunkIndex, bad: set[str], kind: str) -> None:
    status = _status(ix)
    assert {c for c, s in status.items() if s == "quarantined"} == bad, status
    assert {q.kind for q in ix.quarantine if q.clip_id in bad} == {kind}, ix.quarantine
    ok = {c for c, s in status.items() if s == "ok"}
    assert set(ix.egomotion.column("clip_id").to_pylist()) == ok  # the rest is indexed as usual
    assert set(ix.frames.column("clip_id").to_pylist()) == ok
    assert ix.counts()["clips_quarantined"] == len(bad)


def test_index_healthy_chunk(twin_dir: Path) -> None:
    ix = _index(twin_dir)
    assert ix.clips.num_rows == N and set(_status(ix).values()) == {"ok"} and not ix.quarantine
    clips = ix.clips.to_pylist()
    assert all(abs(c["fps"] - 30) < 0.01 and abs(c["egomotion_hz"] - 100) < 0.1 for c in clips)
    assert all(c["image_width"] == SMALL.width and c["frame_count"] > 300 for c in clips)
    ego = pd.read_parquet(io.BytesIO(_member(twin_dir, L.EGOMOTION, clips[0]["clip_id"], "egomotion")))
    rows = ix.egomotion.filter(pa.compute.equal(ix.egomotion.column("clip_id"), clips[0]["clip_id"]))
    assert rows.num_rows == len(ego)  # one row per pose sample, as in the file
    np.testing.assert_array_equal(rows.column("x").to_numpy(), ego["x"].to_numpy())
    fr = ix.frames.to_pandas()
    assert fr.groupby("clip_id")["frame_index"].apply(lambda s: (s.diff().dropna() == 1).all()).all()
    near0 = fr.loc[fr["timestamp_us"].abs().idxmin()]
    assert abs(near0["x_m"]) < 0.5 and abs(near0["yaw_rad"]) < 1e-3  # pose ~ origin at t ~ 0


def _member(root: Path, feature: str, clip: str, alias: str, chunk_id: int = 0) -> bytes:
    import zipfile

    with zipfile.ZipFile(root / L.FEATURES[feature].path(chunk_id)) as zf:
        return zf.read(L.FEATURES[feature].members(clip)[alias])


def _ego_zip(root: Path) -> Path:
    return root / L.FEATURES[L.EGOMOTION].path(0)


def _cam_zip(root: Path) -> Path:
    return root / L.FEATURES[L.FRONT_CAMERA].path(0)


def test_truncated_zip_salvages_complete_members(twin_copy: Path) -> None:
    path = _cam_zip(twin_copy)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])  # a partial download: the central directory is gone
    ix = _index(twin_copy)
    status = _status(ix)
    assert "ok" in status.values() and "quarantined" in status.values()
    assert any("salvaged" in n for n in ix.notes)
    assert {q.kind for q in ix.quarantine} <= {"corrupt_member", "missing_member"}


def test_corrupt_member_quarantines_its_clip(twin_copy: Path) -> None:
    clip = _clips(twin_copy)[1]
    name = L.FEATURES[L.EGOMOTION].members(clip)["egomotion"]
    raw = bytearray(_ego_zip(twin_copy).read_bytes())
    start = raw.find(name.encode()) + len(name) + 200  # inside the member's compressed data
    raw[start: start + 64] = bytes(64)
    _ego_zip(twin_copy).write_bytes(bytes(raw))
    _assert_only(_index(twin_copy), {clip}, "corrupt_member")


def test_path_traversal_member_is_reported_never_extracted(twin_copy: Path, tmp_path: Path) -> None:
    rewrite_zip(_ego_zip(twin_copy), lambda m: {**m, "../evil.parquet": b"x", "/etc/evil2": b"y"})
    ix = _index(twin_copy)
    unsafe = [q for q in ix.quarantine if q.kind == "unsafe_member"]
    assert len(unsafe) == 2 and "never extracted" in unsafe[0].reason
    assert set(_status(ix).values()) == {"ok"}  # the clips themselves are fine
    assert not (twin_copy / "labels" / "evil.parquet").exists() and not (tmp_path / "evil.parquet").exists()


def test_mp4_that_does_not_decode(twin_copy: Path) -> None:
    clip = _clips(twin_copy)[2]
    name = L.FEATURES[L.FRONT_CAMERA].members(clip)["video"]
    rewrite_zip(_cam_zip(twin_copy), lambda m: {**m, name: b"\x00\x00\x00\x18ftypmp42" + bytes(5000)})
    ix = _index(twin_copy)
    _assert_only(ix, {clip}, "bad_video")
    assert "does not decode" in ix.clips.filter(pa.compute.equal(ix.clips.column("clip_id"), clip)) \
        .column("status_reason")[0].as_py()


def test_clip_missing_its_egomotion_member(twin_copy: Path) -> None:
    clip = _clips(twin_copy)[0]
    name = L.FEATURES[L.EGOMOTION].members(clip)["egomotion"]
    rewrite_zip(_ego_zip(twin_copy), lambda m: {k: v for k, v in m.items() if k != name})
    _assert_only(_index(twin_copy), {clip}, "missing_member")


def _edit_egomotion(root: Path, clip: str, edit: object) -> None:
    name = L.FEATURES[L.EGOMOTION].members(clip)["egomotion"]

    def change(m: dict[str, bytes]) -> dict[str, bytes]:
        df = pd.read_parquet(io.BytesIO(m[name]))
        df = edit(df)
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
        return {**m, name: buf.getvalue()}

    rewrite_zip(_ego_zip(root), change)


def _nan_x(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[50, "x"] = np.nan
    return df


def _inf_v(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[60, "vx"] = np.inf
    return df


def _backwards(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[70, "timestamp"] = df.loc[68, "timestamp"]
    return df


def _short(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["timestamp"] < 6_000_000]


@pytest.mark.parametrize("edit, kind, words", [
    (_nan_x, "bad_egomotion", "NaN/inf values in ['x']"),
    (_inf_v, "bad_egomotion", "NaN/inf values in ['vx']"),
    (_backwards, "bad_egomotion", "not strictly increasing at row 70"),
    (_short, "too_short", "one window needs"),
])
def test_bad_egomotion_is_quarantined(twin_copy: Path, edit: object, kind: str, words: str) -> None:
    clip = _clips(twin_copy)[3]
    _edit_egomotion(twin_copy, clip, edit)
    ix = _index(twin_copy)
    _assert_only(ix, {clip}, kind)
    assert words in next(q.reason for q in ix.quarantine if q.clip_id == clip)


def test_clip_duplicated_across_chunks(twin_copy: Path) -> None:
    ci = pd.read_parquet(twin_copy / "clip_index.parquet")
    clip = _clips(twin_copy, 1)[0]
    dup = ci.loc[[clip]].assign(chunk=0)
    pd.concat([ci, dup]).to_parquet(twin_copy / "clip_index.parquet")
    ix0, ix1 = _index(twin_copy, 0), _index(twin_copy, 1)
    for ix in (ix0, ix1):
        assert _status(ix)[clip] == "quarantined"
        assert any(q.kind == "duplicate_clip" and "listed 2 times" in q.reason for q in ix.quarantine)
    assert sum(s == "ok" for s in _status(ix0).values()) == N  # chunk 0's own clips are untouched


def test_clip_already_indexed_in_another_chunk(twin_dir: Path) -> None:
    clip = _clips(twin_dir)[0]
    ix = _index(twin_dir, 0, known_clips={clip: "chunk_0042"})
    _assert_only(ix, {clip}, "duplicate_clip")
    assert "chunk_0042" in ix.quarantine[0].reason


def test_wholly_unreadable_chunk_fails_naming_the_file(twin_copy: Path) -> None:
    _ego_zip(twin_copy).write_bytes(b"this is not a zip at all" * 100)
    with pytest.raises(ChunkUnreadableError, match=r"egomotion\.chunk_0000\.zip: not a readable zip"):
        _index(twin_copy)


def test_frame_poses_equal_the_official_interpolator() -> None:
    """Our array interpolation = physical_ai_av's EgomotionState interpolator, incl. a long tail."""
    from physical_ai_av.egomotion import EgomotionState
    from scipy.spatial.transform import Rotation

    from transforms.index import EGO_COLUMNS, frame_poses

    rng = np.random.default_rng(0)
    t = -200_000 + np.cumsum(rng.integers(9_000, 11_000, 6000)).astype(np.int64)  # ~60 s, jittered ~100 Hz
    s = np.linspace(0, 1, len(t))
    yaw = 3.0 * np.sin(2 * np.pi * s) + 0.4 * s  # wraps past +-pi
    q = Rotation.from_euler("zyx", np.c_[yaw, 0.02 * np.sin(9 * s), 0.01 * np.cos(7 * s)]).as_quat()
    df = pd.DataFrame({"timestamp": t, "qx": q[:, 0], "qy": q[:, 1], "qz": q[:, 2], "qw": q[:, 3],
                       "x": 300 * np.sin(3 * s), "y": 200 * s**2, "z": 0.1 * s, "vx": np.cos(5 * s), "vy": s, "vz": 0 * s,
                       "ax": 0 * s, "ay": 0 * s, "az": 0 * s, "curvature": 0 * s})
    frame_t = np.arange(-10_000, 20_100_000, 33_333, dtype=np.int64)
    ours = frame_poses({c: df[c].to_numpy() for c in EGO_COLUMNS}, frame_t)
    state = EgomotionState.from_egomotion_df(df).create_interpolator(t)(frame_t)
    np.testing.assert_allclose(ours[:, :2], state.pose.translation[:, :2], atol=1e-6)
    rot = state.pose.rotation.as_matrix()
    dyaw = np.angle(np.exp(1j * (ours[:, 2] - np.arctan2(rot[:, 1, 0], rot[:, 0, 0]))))
    np.testing.assert_allclose(dyaw, 0, atol=1e-9)
    np.testing.assert_allclose(ours[:, 3], np.linalg.norm(state.velocity, axis=1), atol=1e-9)


def test_concurrent_indexing_reads_every_video(tmp_path: Path) -> None:
    """Regression: threads sharing one ZipFile's handle made PyAV fail mid-read (EOFError or
    InvalidDataError, which would have quarantined good clips). Members big enough for PyAV to
    seek inside them, several workers, repeated."""
    from transforms.twin.writer import TwinConfig, write_twin

    root = write_twin(tmp_path / "t", TwinConfig(chunks=1, clips_per_chunk=4, seed=0, width=256, height=144,
                                                  seconds=8.0))
    files = mirror_source(root).fetch_chunk(0)
    for _ in range(3):
        ix = index_chunk(files, chunk="chunk_0000", workers=4)
        assert ix.counts()["clips_ok"] == 4, ix.quarantine
