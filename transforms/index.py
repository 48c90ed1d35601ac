"""Index one PAI chunk: the clips, their egomotion samples, and the front camera's frames.

One pass over the chunk's files yields all three silver tables, so every zip member is read
once (the egomotion parquet feeds both the `egomotion` rows and the frame poses). A clip that
fails any check is quarantined with the reason; the chunk's other clips are indexed as usual.
Only a chunk file that cannot be read at all stops the run, naming the file.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.interpolate import CubicSpline

from lake import tables as T
from transforms import pai_layout as L
from transforms.geometry import slerp_quat, yaw_of_quat
from transforms.ids import clip_id_problem, split_problem
from transforms.source import ChunkFiles, placed_chunks
from transforms.zipread import ChunkUnreadableError, MemberError, ZipMembers, is_unsafe_member_name

log = logging.getLogger(__name__)

STAGE = "clip_index"
EGO_COLUMNS = ("timestamp", "qx", "qy", "qz", "qw", "x", "y", "z", "vx", "vy", "vz", "ax", "ay", "az", "curvature")
# A window needs poses from t0 - 1.5 s (t0 >= 1.6 s) to t0 + 6.4 s: at least 0.1 s .. 8.0 s of egomotion.
MIN_EGO_START_US = 100_000
MIN_EGO_END_US = 8_000_000
# What a usable clip must satisfy. A clip that does not is quarantined here, one clip at a time; the
# chunk-level QA suites (qa/suites.py) check the same bounds on what was accepted, so they only fail
# on a fault of the chunk itself or on a bug here.
MAX_EGO_GAP_US = 1_000_000  # a longer hole in the egomotion is a dropout, not a slow logger
MAX_SPEED_MPS = 70.0  # 250 km/h: beyond it a pose or velocity is a sensor or unit error
MAX_ACCEL_MPS2 = 15.0  # 1.5 g longitudinal: beyond any car's braking
DURATION_S = (1.0, 60.0)  # the camera's span
CAMERA_HZ = (5.0, 61.0)
EGOMOTION_HZ = (5.0, 1000.0)
MIN_CAMERA_SPAN = 0.8  # the camera's time span / the egomotion's
MIN_FRAME_COVERAGE = 0.95  # frames present / frames the camera's span implies at its rate
INDEX_WORKERS = min(4, os.cpu_count() or 1)
SPLINE_MARGIN = 100  # egomotion samples (~1 s) kept on each side of the frames for the spline
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class QuarantineRow:
    clip_id: str
    kind: str  # short category for counts: corrupt_member, missing_member, bad_egomotion, ...
    reason: str


@dataclass(frozen=True)
class ChunkIndex:
    clips: pa.Table
    egomotion: pa.Table
    frames: pa.Table
    quarantine: tuple[QuarantineRow, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    split_source: str = "clip_index.parquet"

    def quarantine_table(self, chunk: str) -> pa.Table:
        return T.quarantine_rows(chunk, STAGE, [(r.clip_id, r.kind, r.reason) for r in self.quarantine])

    def counts(self) -> dict[str, int]:
        status = Counter(self.clips.column("status").to_pylist())
        return {"clips": self.clips.num_rows, "clips_ok": status.get("ok", 0),
                "clips_quarantined": status.get("quarantined", 0), "egomotion_rows": self.egomotion.num_rows,
                "frames_rows": self.frames.num_rows, **{f"quarantine_{k}": v for k, v in
                                                         sorted(Counter(r.kind for r in self.quarantine).items())}}


class _Quarantined(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def _read_parquet_file(path: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ChunkUnreadableError(f"{path}: unreadable parquet ({exc}); delete it and fetch the chunk again") from exc


def _check_egomotion(ego: pa.Table, name: str) -> dict[str, np.ndarray]:
    missing = [c for c in EGO_COLUMNS if c not in ego.column_names]
    if missing:
        raise _Quarantined("bad_egomotion", f"{name} lacks columns {missing}")
    not_numeric = {c: str(ego.schema.field(c).type) for c in EGO_COLUMNS
                   if not (pa.types.is_integer(ego.schema.field(c).type) or pa.types.is_floating(ego.schema.field(c).type))}
    if not_numeric:
        raise _Quarantined("bad_egomotion", f"{name}: columns {not_numeric} are not numbers")
    cols = {c: ego.column(c).to_numpy(zero_copy_only=False) for c in EGO_COLUMNS}
    t = cols["timestamp"]
    if len(t) < 2:
        raise _Quarantined("bad_egomotion", f"{name} has {len(t)} samples")
    if not np.issubdtype(t.dtype, np.integer):
        t = t.astype(np.float64)
        bad = ~np.isfinite(t)
        if bad.any():
            i = int(np.argmax(bad))
            raise _Quarantined("bad_egomotion", f"{name}: {int(bad.sum())} non-finite timestamps (first at row {i})")
        cols["timestamp"] = t = t.astype(np.int64)
    step = np.diff(t)
    if (step <= 0).any():
        i = int(np.argmax(step <= 0))
        raise _Quarantined("bad_egomotion", f"{name}: timestamps not strictly increasing at row {i + 1} "
                                            f"({t[i]} -> {t[i + 1]} us)")
    if not all(np.isfinite(cols[c]).all() for c in EGO_COLUMNS[1:]):  # the common case costs no copy
        values = np.stack([cols[c].astype(np.float64) for c in EGO_COLUMNS[1:]], 1)
        bad = ~np.isfinite(values)
        row, col = np.argwhere(bad)[0]
        which = sorted({EGO_COLUMNS[1 + j] for j in np.nonzero(bad.any(0))[0]})
        raise _Quarantined("bad_egomotion", f"{name}: {int(bad.sum())} NaN/inf values in {which} "
                                            f"(first at row {row}, t={t[row]} us, {EGO_COLUMNS[1 + col]})")
    if step.max() > MAX_EGO_GAP_US:
        i = int(np.argmax(step))
        raise _Quarantined("egomotion_gap", f"{name}: {step[i] / 1e6:.2f} s without a sample after t={t[i] / 1e6:.2f} s "
                                            f"(row {i}); at most {MAX_EGO_GAP_US / 1e6:g} s")
    speed = np.hypot(cols["vx"], cols["vy"])
    for what, v, bound, unit in (("speed", speed, MAX_SPEED_MPS, "m/s"), ("ax", np.abs(cols["ax"]), MAX_ACCEL_MPS2, "m/s²")):
        if v.max() > bound:
            i = int(np.argmax(v))
            raise _Quarantined("bad_egomotion", f"{name}: {what} {v[i]:.1f} {unit} at row {i} (t={t[i]} us) is beyond "
                                                f"{bound:g} {unit}: a sensor or unit error")
    qn = np.sqrt(cols["qx"] ** 2 + cols["qy"] ** 2 + cols["qz"] ** 2 + cols["qw"] ** 2)
    if np.abs(qn - 1).max() > 1e-3:
        i = int(np.argmax(np.abs(qn - 1)))
        raise _Quarantined("bad_egomotion", f"{name}: quaternion norm {qn[i]:.4f} at row {i} (expected 1)")
    if t[0] > MIN_EGO_START_US or t[-1] < MIN_EGO_END_US:
        raise _Quarantined("too_short", f"egomotion covers {t[0] / 1e6:.2f}..{t[-1] / 1e6:.2f} s; one window needs "
                                        f"{MIN_EGO_START_US / 1e6:.1f}..{MIN_EGO_END_US / 1e6:.1f} s")
    return cols


def _probe_mp4(stream: io.RawIOBase | io.BufferedIOBase, name: str) -> tuple[int, int, int]:
    """Open the video and decode its first frame: cheap, and catches files that will not decode.
    Returns width, height and the frame count its header declares (0 when it declares none)."""
    try:
        # the demuxer named, not sniffed: PAI camera members are .mp4 (features.csv)
        with av.open(stream, format="mp4") as container:
            if not container.streams.video:
                raise _Quarantined("bad_video", f"{name} has no video stream")
            frames = int(container.streams.video[0].frames or 0)
            frame = next(container.decode(video=0))
            return frame.width, frame.height, frames
    except (av.FFmpegError, StopIteration, ValueError, MemberError) as exc:
        raise _Quarantined("bad_video", f"{name} does not decode ({type(exc).__name__}: {exc})") from exc


def frame_poses(cols: dict[str, np.ndarray], frame_t: np.ndarray) -> np.ndarray:
    """(N, 4) x, y, yaw, speed at frame times; NaN outside the egomotion.

    The same interpolation as `physical_ai_av`'s `EgomotionState` interpolator (cubic spline on
    translation and slerp on rotation, on times relative to the first sample; linear velocity),
    on plain arrays: its `RigidTransform` bookkeeping cost 5x more than the parquet reads it
    follows (tests/transforms/test_index.py checks that the two agree).
    """
    t = cols["timestamp"]
    out = np.full((len(frame_t), 4), np.nan)
    inside = (frame_t >= t[0]) & (frame_t <= t[-1])
    if inside.any():
        # Real egomotion runs 47-140 s past a 20 s clip: fit the spline over the frames' span plus
        # a 1 s margin only (the not-a-knot ends' influence dies out within a few samples).
        lo = max(0, int(np.searchsorted(t, frame_t[inside][0])) - SPLINE_MARGIN)
        hi = min(len(t), int(np.searchsorted(t, frame_t[inside][-1])) + SPLINE_MARGIN)
        tt = t[lo:hi]
        rel, q = (tt - t[0]).astype(np.float64), (frame_t[inside] - t[0]).astype(np.float64)
        out[inside, 0:2] = CubicSpline(rel, np.c_[cols["x"][lo:hi], cols["y"][lo:hi]], extrapolate=False)(q)
        quat = np.c_[cols["qx"][lo:hi], cols["qy"][lo:hi], cols["qz"][lo:hi], cols["qw"][lo:hi]]
        out[inside, 2] = yaw_of_quat(slerp_quat(rel, quat, q))
        vel = np.stack([np.interp(q, rel, cols[c][lo:hi]) for c in ("vx", "vy", "vz")], 1)
        out[inside, 3] = np.linalg.norm(vel, axis=1)
    return out


def _presence(files: ChunkFiles, clip_ids: pd.Index) -> pd.DataFrame:
    if "metadata/feature_presence.parquet" in files.files:
        pres = _read_parquet_file(str(files.path("metadata/feature_presence.parquet")))
    elif L.LEGACY_PRESENCE in files.files:  # datasets before 26.03
        pres = _read_parquet_file(str(files.path(L.LEGACY_PRESENCE))).select_dtypes(include=bool)
    else:
        pres = pd.DataFrame(index=clip_ids)
    pres = pres.reindex(clip_ids)

    def col(name: str) -> pd.Series:
        return pres[name].fillna(False).astype(bool) if name in pres else pd.Series(True, index=clip_ids)

    radars = [c for c in pres.columns if c.startswith("radar_")]
    return pd.DataFrame({
        "has_front_camera": col(L.FRONT_CAMERA), "has_egomotion": col(L.EGOMOTION),
        "has_calibration": col(L.CAMERA_INTRINSICS) & col(L.SENSOR_EXTRINSICS),
        "has_lidar": col("lidar_top_360fov"),
        "has_radar": pres[radars].fillna(False).astype(bool).any(axis=1) if radars else pd.Series(False, index=clip_ids),
    }, index=clip_ids)


@dataclass(frozen=True)
class IndexPlan:
    """What every clip of a chunk is checked against, read once on the driver; small and picklable.

    Chunk-wide facts (duplicates, calibration, stray zip members) are settled here; the clips
    themselves are indexed by `index_part`, on any machine that sees the chunk's files.
    """

    chunk: str
    files: ChunkFiles
    clip_ids: tuple[str, ...]
    rows: dict[str, dict[str, object]]  # the clips row of each clip before indexing (split, presence, ...)
    dup_chunks: dict[str, list[str]]  # this chunk's clips that clip_index.parquet lists more than once
    known_clips: dict[str, str]  # this chunk's clips already indexed, and their chunk partition
    calibrated: frozenset[str]  # clips with front-camera intrinsics and extrinsics
    stray: tuple[QuarantineRow, ...]  # zip members that belong to no clip of this chunk
    notes: tuple[str, ...]
    split_source: str  # where the clips' splits came from (see _splits)
    workers: int = INDEX_WORKERS


@dataclass(frozen=True)
class _Chunk:
    """A plan with the chunk's two zips open (per part: file handles do not travel)."""

    plan: IndexPlan
    cam_feat: L.Feature
    ego_feat: L.Feature
    cam_zip: ZipMembers
    ego_zip: ZipMembers

    @property
    def chunk(self) -> str:
        return self.plan.chunk


@dataclass
class _ClipResult:
    row: dict[str, object]
    quarantine: QuarantineRow | None = None
    egomotion: dict[str, np.ndarray] | None = None
    frames: dict[str, np.ndarray] | None = None


def _read_member_parquet(zm: ZipMembers, name: str) -> pa.Table:
    try:
        return pq.read_table(io.BytesIO(zm.read(name)))
    except MemberError as exc:
        raise _Quarantined("corrupt_member", str(exc)) from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise _Quarantined("corrupt_member", f"{name}: unreadable parquet ({exc})") from exc


def _index_clip(c: _Chunk, clip_id: str, row: dict[str, object]) -> _ClipResult:
    """One clip's rows, or its quarantine row. Nothing a clip's files hold escapes this boundary:
    an unforeseen error becomes a quarantine row naming the clip, the file and the cause."""
    where = "clip_index.parquet"
    try:
        try:
            for why in (clip_id_problem(clip_id), split_problem(row["split"])):
                if why is not None:
                    raise _Quarantined("bad_identifier", f"{why}: not indexed")
            _check_placement(c, clip_id)
            ego_name = c.ego_feat.members(clip_id)["egomotion"]
            names = c.cam_feat.members(clip_id)
            for member, zm in ((ego_name, c.ego_zip), (names["video"], c.cam_zip), (names["frame_timestamps"], c.cam_zip)):
                if member not in zm:
                    raise _Quarantined("missing_member", f"member {member} missing from {zm.path.name}")
            if clip_id not in c.plan.calibrated:
                raise _Quarantined("missing_calibration", f"no {L.FRONT_CAMERA} row in the chunk's camera_intrinsics "
                                                          "or sensor_extrinsics")
            where = ego_name
            cols = _check_egomotion(_read_member_parquet(c.ego_zip, ego_name), ego_name)
            where = names["frame_timestamps"]
            frame_t = _frame_times(_read_member_parquet(c.cam_zip, where), where)
            where = names["video"]
            try:
                video = c.cam_zip.open(where)
            except MemberError as exc:
                raise _Quarantined("corrupt_member", str(exc)) from exc
            with video:
                width, height, n_video = _probe_mp4(video, where)
            if n_video and n_video != len(frame_t):
                raise _Quarantined("frame_mismatch", f"{names['frame_timestamps']} has {len(frame_t)} rows but "
                                                     f"{where} holds {n_video} frames: frame times cannot be trusted")
            where = "the clip's rates and spans"
            t = cols["timestamp"]
            row = {**row, "duration_s": (frame_t[-1] - frame_t[0]) / 1e6, "frame_count": len(frame_t),
                   "fps": float(1e6 / np.median(np.diff(frame_t))), "egomotion_hz": float(1e6 / np.median(np.diff(t))),
                   "egomotion_start_us": int(t[0]), "egomotion_end_us": int(t[-1]), "camera_start_us": int(frame_t[0]),
                   "camera_end_us": int(frame_t[-1]), "image_width": width, "image_height": height}
            _check_clip_row(row, names["frame_timestamps"])
        except _Quarantined:
            raise
        except (MemoryError, RecursionError):
            raise
        except Exception as exc:
            raise _Quarantined("clip_error", f"{where}: {type(exc).__name__}: {exc}") from exc
    except _Quarantined as q:
        return _ClipResult({**row, "status": "quarantined", "status_reason": q.reason},
                           QuarantineRow(clip_id, q.kind, q.reason))
    poses = frame_poses(cols, frame_t)
    frames = {"frame_index": np.arange(len(frame_t), dtype=np.int64), "timestamp_us": frame_t,
              "x_m": poses[:, 0], "y_m": poses[:, 1], "yaw_rad": poses[:, 2], "speed_mps": poses[:, 3]}
    return _ClipResult(row, None, cols, frames)


def _check_placement(c: _Chunk, clip_id: str) -> None:
    if clip_id in c.plan.dup_chunks:
        chunks = c.plan.dup_chunks[clip_id]
        raise _Quarantined("duplicate_clip", f"clip id listed {len(chunks)} times in clip_index.parquet "
                                             f"(chunks {chunks}): ambiguous, not indexed")
    if c.plan.known_clips.get(clip_id, c.chunk) != c.chunk:
        raise _Quarantined("duplicate_clip", f"clip id already indexed in {c.plan.known_clips[clip_id]}: "
                                             "not indexed twice")


def _frame_times(ts: pa.Table, name: str) -> np.ndarray:
    if "timestamp" not in ts.column_names:
        raise _Quarantined("bad_video", f"{name} has no 'timestamp' column")
    kind = ts.schema.field("timestamp").type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise _Quarantined("bad_video", f"{name}: 'timestamp' is {kind}, expected integer microseconds")
    raw = ts.column("timestamp").to_numpy(zero_copy_only=False)
    if not np.isfinite(raw.astype(np.float64)).all():
        raise _Quarantined("bad_video", f"{name}: non-finite frame timestamps")
    frame_t = raw.astype(np.int64)
    if len(frame_t) < 2 or (np.diff(frame_t) <= 0).any():
        raise _Quarantined("bad_video", f"{name}: frame timestamps not strictly increasing")
    return frame_t


def _check_clip_row(row: dict[str, object], ts_name: str) -> None:
    """The bounds the chunk's QA suite holds usable clips to, one clip at a time."""
    for col, (lo, hi) in (("duration_s", DURATION_S), ("fps", CAMERA_HZ), ("egomotion_hz", EGOMOTION_HZ)):
        if not lo <= row[col] <= hi:  # type: ignore[operator]
            raise _Quarantined("bad_rates", f"{col} {row[col]:.3g} outside {lo:g}..{hi:g}")
    span = (row["camera_end_us"] - row["camera_start_us"]) / (row["egomotion_end_us"] - row["egomotion_start_us"])  # type: ignore[operator]
    if span < MIN_CAMERA_SPAN:
        raise _Quarantined("bad_rates", f"the camera covers {span:.0%} of the egomotion's span; at least "
                                        f"{MIN_CAMERA_SPAN:.0%}")
    coverage = row["frame_count"] / (row["duration_s"] * row["fps"] + 1)  # type: ignore[operator]
    if coverage < MIN_FRAME_COVERAGE:
        raise _Quarantined("frame_gap", f"{ts_name}: {row['frame_count']} frames where its span at {row['fps']:.3g} Hz "
                                        f"implies {row['duration_s'] * row['fps'] + 1:.0f} ({coverage:.0%}); at least "  # type: ignore[operator]
                                        f"{MIN_FRAME_COVERAGE:.0%}")
    for flag in ("has_front_camera", "has_egomotion"):
        if not row[flag]:
            raise _Quarantined("presence_mismatch", f"feature_presence says {flag} is false although its files are there")


def _stray_members(zips: tuple[ZipMembers, ...], clip_index: pd.DataFrame, listed: set[str]) -> list[QuarantineRow]:
    """Members nobody asked for: unsafe names, and clips that clip_index places elsewhere."""
    rows = []
    for zm in zips:
        for name in zm.names:
            found = UUID_RE.search(name)
            owner = found.group(0) if found else ""
            if is_unsafe_member_name(name):
                rows.append(QuarantineRow(owner, "unsafe_member",
                                          f"unsafe member path {name!r} in {zm.path.name}: ignored, never extracted"))
            elif owner and owner not in listed:
                where = clip_index.loc[[owner], "chunk"].tolist() if owner in clip_index.index else "no chunk"
                rows.append(QuarantineRow(owner, "foreign_member", f"{name} in {zm.path.name} belongs to a clip that "
                                                                   f"clip_index.parquet puts in chunk {where}: ignored"))
    return rows


def _concat(parts: list[tuple[str, dict[str, np.ndarray]]], table: T.Table, chunk: str) -> pa.Table:
    """One table from per-clip column arrays; the key columns are built once, not per clip."""
    if not parts:
        return table.schema.empty_table()
    lengths = [len(next(iter(cols.values()))) for _, cols in parts]
    # dictionary-encoded then cast: no Python string object per row
    ids = pa.DictionaryArray.from_arrays(pa.array(np.repeat(np.arange(len(parts), dtype=np.int32), lengths)),
                                         pa.array([cid for cid, _ in parts], pa.string())).cast(pa.string())
    chunk_col = pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(ids), np.int32)), pa.array([chunk])).cast(pa.string())
    data = {"chunk": chunk_col, "clip_id": ids}
    for name in parts[0][1]:
        data[name] = np.concatenate([cols[name] for _, cols in parts])
    return pa.table(data).cast(table.schema)


def _splits(files: ChunkFiles, mine: pd.DataFrame) -> tuple[dict[str, str], str]:
    """Each clip's split, and where it came from: `splits/default.parquet` where the dataset ships
    it (physical-ai-av reads it over clip_index's column), else clip_index.parquet."""
    listed = mine["split"].astype(str).to_dict() if "split" in mine.columns else {}
    if L.SPLITS_FILE not in files.files:
        return listed, "clip_index.parquet"
    official = _read_parquet_file(str(files.path(L.SPLITS_FILE)))
    if "split" not in official.columns:
        raise ChunkUnreadableError(f"{files.path(L.SPLITS_FILE)}: no 'split' column; is this PAI's split file?")
    official = official["split"].astype(str)
    covered = [c for c in mine.index if c in official.index]
    missing = len(mine) - len(covered)
    source = L.SPLITS_FILE + (f" ({missing} clips it does not list keep clip_index.parquet's)" if missing else "")
    return {**listed, **{c: official[c] for c in covered}}, source


def plan_index(files: ChunkFiles, *, chunk: str, known_clips: dict[str, str] | None = None,
               workers: int = INDEX_WORKERS) -> IndexPlan:
    """Read a chunk's metadata and zip directories; `known_clips` maps clip ids already indexed to
    their chunk partition."""
    clip_index = _read_parquet_file(str(files.path("clip_index.parquet")))
    if "chunk" not in clip_index.columns:
        raise ChunkUnreadableError(f"{files.path('clip_index.parquet')}: no 'chunk' column; is this PAI's clip index?")
    placed, unplaced_note = placed_chunks(clip_index, files.path("clip_index.parquet"))
    clip_index = clip_index.assign(chunk=placed)
    mine = clip_index[clip_index["chunk"] == files.chunk_id]
    clip_ids = pd.Index(sorted(set(mine.index)), name="clip_id")
    collection = (_read_parquet_file(str(files.path("metadata/data_collection.parquet"))).reindex(clip_ids)
                  if "metadata/data_collection.parquet" in files.files else pd.DataFrame(index=clip_ids))
    # plain dicts: per-clip pandas .loc/.at lookups cost more than reading the clip's parquet
    presence = _presence(files, clip_ids).to_dict("index")
    collection = collection.reindex(columns=["country", "platform_class", "month", "hour_of_day"]).astype(object)
    collection = collection.where(collection.notna(), None).to_dict("index")
    splits, split_source = _splits(files, mine)
    intr = _read_parquet_file(str(files.feature_path(L.CAMERA_INTRINSICS)))
    extr = _read_parquet_file(str(files.feature_path(L.SENSOR_EXTRINSICS)))
    with_cam = {k[0] for k in intr.index if k[1] == L.FRONT_CAMERA} & {k[0] for k in extr.index if k[1] == L.FRONT_CAMERA}
    dups = clip_index[clip_index.index.duplicated(keep=False) & clip_index.index.isin(clip_ids)]
    zips = (ZipMembers(files.feature_path(L.FRONT_CAMERA)), ZipMembers(files.feature_path(L.EGOMOTION)))
    try:
        stray = _stray_members(zips, clip_index, set(clip_ids))
        notes = tuple(n for zm in zips for n in zm.notes) + ((unplaced_note,) if unplaced_note else ())
    finally:
        for zm in zips:
            zm.close()
    known = known_clips or {}
    return IndexPlan(
        chunk, files, tuple(clip_ids),
        {cid: {"chunk": chunk, "clip_id": cid, "status": "ok", "status_reason": None, "split": splits.get(cid, "train"),
               **collection[cid], **presence[cid]} for cid in clip_ids},
        {cid: sorted(g["chunk"].tolist()) for cid, g in dups.groupby(level=0)},
        {cid: known[cid] for cid in clip_ids if cid in known}, frozenset(with_cam), tuple(stray), notes, split_source,
        workers)


PART_OUTPUTS = {"clips": T.CLIPS.schema, "egomotion": T.EGOMOTION.schema, "frames": T.FRAMES.schema,
                "quarantine": pa.schema([("clip_id", pa.string()), ("kind", pa.string()), ("reason", pa.string())])}


def index_part(plan: IndexPlan, clip_ids: list[str], inputs: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Index some clips of a planned chunk (an engine part function: see engines/__init__.py).

    Clips are independent and their work (zlib, parquet, FFmpeg) mostly releases the GIL, so a
    small thread pool indexes them concurrently; results keep clip order, so output is stable.
    """
    files = plan.files
    c = _Chunk(plan, files.features[L.FRONT_CAMERA], files.features[L.EGOMOTION],
               ZipMembers(files.feature_path(L.FRONT_CAMERA)), ZipMembers(files.feature_path(L.EGOMOTION)))
    try:
        with ThreadPoolExecutor(max_workers=max(1, plan.workers)) as pool:
            results = list(pool.map(lambda cid: _index_clip(c, cid, plan.rows[cid]), clip_ids))
    finally:
        c.cam_zip.close()
        c.ego_zip.close()
    q = [r.quarantine for r in results if r.quarantine is not None]
    ok = [(r.row["clip_id"], r) for r in results if r.egomotion is not None]
    return {
        "clips": pa.Table.from_pylist([r.row for r in results], schema=T.CLIPS.schema),
        "egomotion": _concat([(cid, r.egomotion) for cid, r in ok], T.EGOMOTION, plan.chunk),
        "frames": _concat([(cid, r.frames) for cid, r in ok], T.FRAMES, plan.chunk),
        "quarantine": pa.Table.from_pylist([{"clip_id": r.clip_id, "kind": r.kind, "reason": r.reason} for r in q],
                                           schema=PART_OUTPUTS["quarantine"]),
    }


def assemble_index(plan: IndexPlan, parts: dict[str, pa.Table]) -> ChunkIndex:
    """The chunk's index from its parts' outputs (concatenated in clip order)."""
    quarantine = plan.stray + tuple(QuarantineRow(**r) for r in parts["quarantine"].to_pylist())
    for note in plan.notes:
        log.warning("chunk %s: %s", plan.chunk, note)
    for q in quarantine:
        log.warning("chunk %s: quarantined clip %s (%s): %s", plan.chunk, q.clip_id or "-", q.kind, q.reason)
    return ChunkIndex(parts["clips"], parts["egomotion"], parts["frames"], quarantine, plan.notes, plan.split_source)


def index_chunk(files: ChunkFiles, *, chunk: str, known_clips: dict[str, str] | None = None,
                workers: int = INDEX_WORKERS) -> ChunkIndex:
    """Index one chunk in this process (the embedded engine does the same through `index_part`)."""
    plan = plan_index(files, chunk=chunk, known_clips=known_clips, workers=workers)
    return assemble_index(plan, index_part(plan, list(plan.clip_ids), {}))
