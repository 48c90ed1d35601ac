"""Index one PAI chunk: the clips, their egomotion samples, and the front camera's frames.

One pass over the chunk's files yields all three silver tables, so every zip member is read
once (the egomotion parquet feeds both the `egomotion` rows and the frame poses). A clip that
fails any check is quarantined with the reason; the chunk's other clips are indexed as usual.
Only a chunk file that cannot be read at all stops the run, naming the file.
"""

from __future__ import annotations

import io
import logging
import re
from collections import Counter
from dataclasses import dataclass, field

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from physical_ai_av.egomotion import EgomotionState

from lake import tables as T
from transforms import pai_layout as L
from transforms.source import ChunkFiles
from transforms.zipread import ChunkUnreadableError, MemberError, ZipMembers, is_unsafe_member_name

log = logging.getLogger(__name__)

STAGE = "clip_index"
EGO_COLUMNS = ("timestamp", "qx", "qy", "qz", "qw", "x", "y", "z", "vx", "vy", "vz", "ax", "ay", "az", "curvature")
# A window needs poses from t0 - 1.5 s (t0 >= 1.6 s) to t0 + 6.4 s: at least 0.1 s .. 8.0 s of egomotion.
MIN_EGO_START_US = 100_000
MIN_EGO_END_US = 8_000_000
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

    def quarantine_table(self, chunk: str) -> pa.Table:
        q = self.quarantine
        return pa.table({"chunk": [chunk] * len(q), "clip_id": [r.clip_id for r in q], "stage": [STAGE] * len(q),
                         "kind": [r.kind for r in q], "reason": [r.reason for r in q]}, schema=T.QUARANTINE.schema)

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
    values = np.stack([cols[c].astype(np.float64) for c in EGO_COLUMNS[1:]], 1)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        which = sorted({EGO_COLUMNS[1 + j] for j in np.nonzero(bad.any(0))[0]})
        raise _Quarantined("bad_egomotion", f"{name}: {int(bad.sum())} NaN/inf values in {which} "
                                            f"(first at row {row}, t={t[row]} us, {EGO_COLUMNS[1 + col]})")
    qn = np.linalg.norm(values[:, 0:4], axis=1)
    if np.abs(qn - 1).max() > 1e-3:
        i = int(np.argmax(np.abs(qn - 1)))
        raise _Quarantined("bad_egomotion", f"{name}: quaternion norm {qn[i]:.4f} at row {i} (expected 1)")
    if t[0] > MIN_EGO_START_US or t[-1] < MIN_EGO_END_US:
        raise _Quarantined("too_short", f"egomotion covers {t[0] / 1e6:.2f}..{t[-1] / 1e6:.2f} s; one window needs "
                                        f"{MIN_EGO_START_US / 1e6:.1f}..{MIN_EGO_END_US / 1e6:.1f} s")
    return cols


def _probe_mp4(stream: io.RawIOBase | io.BufferedIOBase, name: str) -> tuple[int, int]:
    """Open the video and decode its first frame: cheap, and catches files that will not decode."""
    try:
        with av.open(stream) as container:
            if not container.streams.video:
                raise _Quarantined("bad_video", f"{name} has no video stream")
            frame = next(container.decode(video=0))
            return frame.width, frame.height
    except (av.FFmpegError, StopIteration, ValueError, MemberError) as exc:
        raise _Quarantined("bad_video", f"{name} does not decode ({type(exc).__name__}: {exc})") from exc


def _frame_poses(cols: dict[str, np.ndarray], frame_t: np.ndarray) -> np.ndarray:
    """(N, 4) x, y, yaw, speed at frame times, through the official interpolator (spline + slerp)."""
    df = pd.DataFrame({c: cols[c] for c in EGO_COLUMNS})
    out = np.full((len(frame_t), 4), np.nan)
    inside = (frame_t >= cols["timestamp"][0]) & (frame_t <= cols["timestamp"][-1])
    if inside.any():
        state = EgomotionState.from_egomotion_df(df).create_interpolator(df["timestamp"].to_numpy())(frame_t[inside])
        rot = state.pose.rotation.as_matrix()
        out[inside, 0:2] = state.pose.translation[:, :2]
        out[inside, 2] = np.arctan2(rot[:, 1, 0], rot[:, 0, 0])
        out[inside, 3] = np.linalg.norm(state.velocity, axis=1)
    return out


def _presence(files: ChunkFiles, clip_ids: pd.Index) -> pd.DataFrame:
    if "metadata/feature_presence.parquet" in files.files:
        pres = _read_parquet_file(str(files.path("metadata/feature_presence.parquet")))
    elif "metadata/sensor_presence.parquet" in files.files:  # datasets before 26.03
        pres = _read_parquet_file(str(files.path("metadata/sensor_presence.parquet"))).select_dtypes(include=bool)
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


def index_chunk(files: ChunkFiles, *, chunk: str, known_clips: dict[str, str] | None = None) -> ChunkIndex:
    """Index one chunk. `known_clips` maps clip ids already indexed to their chunk partition."""
    known_clips = known_clips or {}
    quarantine: list[QuarantineRow] = []
    notes: list[str] = []
    clip_index = _read_parquet_file(str(files.path("clip_index.parquet")))
    if "chunk" not in clip_index.columns:
        raise ChunkUnreadableError(f"{files.path('clip_index.parquet')}: no 'chunk' column; is this PAI's clip index?")
    dup_ids = set(clip_index.index[clip_index.index.duplicated(keep=False)])
    mine = clip_index[clip_index["chunk"] == files.chunk_id]
    clip_ids = pd.Index(sorted(set(mine.index)), name="clip_id")
    collection = (_read_parquet_file(str(files.path("metadata/data_collection.parquet"))).reindex(clip_ids)
                  if "metadata/data_collection.parquet" in files.files else pd.DataFrame(index=clip_ids))
    presence = _presence(files, clip_ids)

    cam_feat, ego_feat = files.features[L.FRONT_CAMERA], files.features[L.EGOMOTION]
    cam_zip = ZipMembers(files.feature_path(L.FRONT_CAMERA))
    ego_zip = ZipMembers(files.feature_path(L.EGOMOTION))
    notes += cam_zip.notes + ego_zip.notes
    intr = _read_parquet_file(str(files.feature_path(L.CAMERA_INTRINSICS)))
    extr = _read_parquet_file(str(files.feature_path(L.SENSOR_EXTRINSICS)))
    intr_keys, extr_keys = set(intr.index.tolist()), set(extr.index.tolist())

    # members nobody asked for: unsafe names, and clips that clip_index places elsewhere
    listed = set(clip_ids)
    for zm in (cam_zip, ego_zip):
        for name in zm.names:
            found = UUID_RE.search(name)
            owner = found.group(0) if found else ""
            if is_unsafe_member_name(name):
                quarantine.append(QuarantineRow(owner, "unsafe_member",
                                                f"unsafe member path {name!r} in {zm.path.name}: ignored, never extracted"))
            elif owner and owner not in listed:
                where = clip_index.loc[[owner], "chunk"].tolist() if owner in clip_index.index else "no chunk"
                quarantine.append(QuarantineRow(owner, "foreign_member",
                                                f"{name} in {zm.path.name} belongs to a clip that clip_index.parquet "
                                                f"puts in chunk {where}: ignored"))

    clip_rows, ego_tables, frame_tables = [], [], []
    for clip_id in clip_ids:
        row: dict[str, object] = {"chunk": chunk, "clip_id": clip_id, "status": "ok", "status_reason": None}
        meta = mine.loc[[clip_id]].iloc[0]
        row["split"] = str(meta.get("split", "train"))
        for c in ("country", "platform_class", "month", "hour_of_day"):
            row[c] = collection.at[clip_id, c] if c in collection.columns and pd.notna(collection.at[clip_id, c]) else None
        row.update(presence.loc[clip_id].to_dict())
        try:
            if clip_id in dup_ids:
                chunks = sorted(clip_index.loc[[clip_id], "chunk"].tolist())
                raise _Quarantined("duplicate_clip", f"clip id listed {len(chunks)} times in clip_index.parquet "
                                                     f"(chunks {chunks}): ambiguous, not indexed")
            if clip_id in known_clips and known_clips[clip_id] != chunk:
                raise _Quarantined("duplicate_clip", f"clip id already indexed in {known_clips[clip_id]}: not indexed "
                                                     f"twice")
            if (clip_id, L.FRONT_CAMERA) not in intr_keys or (clip_id, L.FRONT_CAMERA) not in extr_keys:
                raise _Quarantined("missing_calibration", f"no {L.FRONT_CAMERA} row in the chunk's camera_intrinsics "
                                                          "or sensor_extrinsics")
            ego_name = ego_feat.members(clip_id)["egomotion"]
            if ego_name not in ego_zip:
                raise _Quarantined("missing_member", f"egomotion member {ego_name} missing from {ego_zip.path.name}")
            try:
                ego_bytes = ego_zip.read(ego_name)
            except MemberError as exc:
                raise _Quarantined("corrupt_member", str(exc)) from exc
            try:
                ego_tbl = pq.read_table(io.BytesIO(ego_bytes))
            except (pa.ArrowInvalid, OSError) as exc:
                raise _Quarantined("corrupt_member", f"{ego_name}: unreadable parquet ({exc})") from exc
            cols = _check_egomotion(ego_tbl, ego_name)

            names = cam_feat.members(clip_id)
            for alias in ("video", "frame_timestamps"):
                if names[alias] not in cam_zip:
                    raise _Quarantined("missing_member", f"camera member {names[alias]} missing from {cam_zip.path.name}")
            try:
                ts_tbl = pq.read_table(io.BytesIO(cam_zip.read(names["frame_timestamps"])))
            except MemberError as exc:
                raise _Quarantined("corrupt_member", str(exc)) from exc
            except (pa.ArrowInvalid, OSError) as exc:
                raise _Quarantined("corrupt_member", f"{names['frame_timestamps']}: unreadable parquet ({exc})") from exc
            if "timestamp" not in ts_tbl.column_names:
                raise _Quarantined("bad_video", f"{names['frame_timestamps']} has no 'timestamp' column")
            frame_t = ts_tbl.column("timestamp").to_numpy(zero_copy_only=False).astype(np.int64)
            if len(frame_t) < 2 or (np.diff(frame_t) <= 0).any():
                raise _Quarantined("bad_video", f"{names['frame_timestamps']}: frame timestamps not strictly increasing")
            try:
                video = cam_zip.open(names["video"])
            except MemberError as exc:
                raise _Quarantined("corrupt_member", str(exc)) from exc
            with video:
                width, height = _probe_mp4(video, names["video"])
        except _Quarantined as q:
            row.update(status="quarantined", status_reason=q.reason)
            quarantine.append(QuarantineRow(clip_id, q.kind, q.reason))
            clip_rows.append(row)
            continue

        t = cols["timestamp"]
        row.update(
            duration_s=(frame_t[-1] - frame_t[0]) / 1e6, frame_count=len(frame_t),
            fps=float(1e6 / np.median(np.diff(frame_t))), egomotion_hz=float(1e6 / np.median(np.diff(t))),
            egomotion_start_us=int(t[0]), egomotion_end_us=int(t[-1]), camera_start_us=int(frame_t[0]),
            camera_end_us=int(frame_t[-1]), image_width=width, image_height=height)
        clip_rows.append(row)
        ego_tables.append(pa.table({"chunk": pa.array([chunk] * len(t)), "clip_id": pa.array([clip_id] * len(t)),
                                    **{c: cols[c] for c in EGO_COLUMNS}}))
        poses = _frame_poses(cols, frame_t)
        frame_tables.append(pa.table({
            "chunk": [chunk] * len(frame_t), "clip_id": [clip_id] * len(frame_t),
            "frame_index": np.arange(len(frame_t), dtype=np.int64), "timestamp_us": frame_t,
            "x_m": poses[:, 0], "y_m": poses[:, 1], "yaw_rad": poses[:, 2], "speed_mps": poses[:, 3]}))

    for note in notes:
        log.warning("chunk %s: %s", chunk, note)
    for q in quarantine:
        log.warning("chunk %s: quarantined clip %s (%s): %s", chunk, q.clip_id or "-", q.kind, q.reason)
    clips = pa.Table.from_pylist(clip_rows, schema=T.CLIPS.schema)

    def cat(tables: list[pa.Table], table: T.Table) -> pa.Table:
        return pa.concat_tables([t.cast(table.schema) for t in tables]) if tables else table.schema.empty_table()

    cam_zip.close()
    ego_zip.close()
    return ChunkIndex(clips, cat(ego_tables, T.EGOMOTION), cat(frame_tables, T.FRAMES), tuple(quarantine), tuple(notes))
