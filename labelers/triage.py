"""Acquisition from real PAI: egomotion-first triage, then the camera of the chosen clips only.

A chunk's front camera is ~2 GB for 100 clips and its egomotion ~40 MB, so choosing clips before
their video is fetched is worth ~50x in bytes. `triage` reads, for chunks not yet ingested, only the
egomotion zip (and the small metadata and calibration files), fits the windows' (a, κ) and labels
them with the kinematic labeler (the same stage functions ingest runs: transforms/unicycle.py,
labelers/build.py), ranks the clips by how well their meta-actions and speeds match the data request
(core/request.py `clip_score`), and then reads the camera members of the chosen clips alone.

Reading goes through the official `physical-ai-av` reader: over the hub, `get_clip_feature_paths(...,
maybe_stream=True)` reads single clips' members out of the chunk zip with HTTP range requests
(HfFileSystem); over an HF cache or a plain mirror it reads the cached file. Where the member read
fails the whole chunk file is downloaded instead, and the note says so. The chosen clips are written
as a PAI-layout directory (`into`): the mirror that the pipeline then ingests (FLYWHEEL_SOURCE=mirror,
FLYWHEEL_MIRROR_DIR=into); a chunk holds only its chosen clips there.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.config import knob
from core.request import DataRequest
from labelers.build import window_contexts
from labelers.kinematic import KinematicLabeler
from labelers.trace import Trace
from transforms import pai_layout as L
from transforms.ids import inside
from transforms.index import EGO_COLUMNS
from transforms.pai_reader import LocalPAIDataset
from transforms.twin.writer import ZIP_EPOCH, twin_gt_paths
from transforms.unicycle import targets_for_chunk

log = logging.getLogger(__name__)
ZIP_LOCAL_HEADER = 30  # bytes before a member's name in its local header
CHUNK_CALIBRATION = (L.CAMERA_INTRINSICS, L.SENSOR_EXTRINSICS, L.VEHICLE_DIMENSIONS)


@dataclass(frozen=True)
class AcquireConfig:
    method: Literal["auto", "twin", "triage", "reweight"] = knob(
        "auto", "twin: new twin chunks in the request's scenario mix; triage: egomotion-first choice of PAI clips "
                "(mirror or hub); reweight: no download, training samples weighted by the request; auto: twin on "
                "the twin source, else triage")
    request_id: str = knob("", "the data request to answer; empty: the latest in gold.data_requests")
    seed: int = knob(0, "twin: the same request and seed write the same clips")
    clips: int = knob(0, "clips to acquire; 0: enough for the request's windows")
    pool: str = knob("", "triage: a PAI mirror or HF cache directory to choose clips from; empty: the hub "
                         "(FLYWHEEL_HF_REVISION, HF_TOKEN)")
    into: str = knob("", "triage: the PAI-layout directory the chosen clips are written to, which the pipeline then "
                         "ingests as its mirror; empty: FLYWHEEL_MIRROR_DIR")
    max_chunks: int = knob(4, "triage: candidate chunks whose egomotion is read per acquisition")

    def __post_init__(self) -> None:
        if self.clips < 0 or self.max_chunks < 1:
            raise ValueError(f"clips={self.clips} (>= 0), max_chunks={self.max_chunks} (>= 1)")


@dataclass(frozen=True)
class ClipCandidate:
    chunk: int
    clip_id: str
    meta_actions: dict[str, int]  # kinematic meta-action -> windows
    windows: int
    score: float  # DataRequest.clip_score


@dataclass
class TriageResult:
    chosen: list[ClipCandidate]
    triaged: list[ClipCandidate]  # every candidate clip whose egomotion was read
    bytes_fetched: dict[int, int] = field(default_factory=dict)  # chunk -> bytes read (egomotion, calibration, members)
    bytes_whole: dict[int, int] = field(default_factory=dict)  # chunk -> its required files in full
    member_bytes: dict[str, int] = field(default_factory=dict)  # clip -> its camera members' bytes
    notes: list[str] = field(default_factory=list)
    written: list[int] = field(default_factory=list)  # chunks written under `into`


def official_reader(pool: str | Path | None, *, revision: str = "", token: str | None = None,
                    cache_dir: str | None = None) -> Any:
    """The physical-ai-av reader over a plain PAI directory, an HF cache directory (offline or not),
    or the hub (pool empty)."""
    from physical_ai_av.dataset import PhysicalAIAVDatasetInterface

    from transforms.source import find_hf_snapshot

    kw = {"repo_id": L.REPO_ID, "confirm_download_threshold_gb": math.inf}
    if pool:
        snap = find_hf_snapshot(Path(pool), revision or None)
        if snap is None:
            return LocalPAIDataset(pool)
        return PhysicalAIAVDatasetInterface(revision=snap.name, token=token or False, cache_dir=str(pool), **kw)
    if not revision:
        raise ValueError("triage over the hub needs FLYWHEEL_HF_REVISION pinned to a commit sha")
    return PhysicalAIAVDatasetInterface(revision=revision, token=token or None, cache_dir=cache_dir, **kw)


def _size(reader: Any, rel: str) -> int:
    path = reader._get_cached_path(rel)
    if path is not None:
        return os.path.getsize(path)
    return int(reader.fs.info(f"datasets/{reader.repo_id}/{rel}", revision=reader.revision)["size"])


def _egomotion(reader: Any, chunk: int, clips: list[str]) -> tuple[pa.Table, pa.Table, int]:
    """The chunk's egomotion (lake schema) and a `clips` table of its clips, and the bytes read."""
    rel = reader.features.get_chunk_feature_filename(chunk, L.EGOMOTION)
    parts, rows = [], []
    with reader.open_file(rel, maybe_stream=True) as f, zipfile.ZipFile(f) as zf:
        names = set(zf.namelist())
        for clip in clips:
            member = reader.features.get_clip_files_in_zip(clip, L.EGOMOTION)["egomotion"]
            if member not in names:
                continue
            ego = pq.read_table(io.BytesIO(zf.read(member))).select(list(EGO_COLUMNS))
            n = ego.num_rows
            parts.append(ego.add_column(0, "clip_id", pa.array([clip] * n)).add_column(0, "chunk", pa.array(["c"] * n)))
            ts = ego.column("timestamp").to_numpy()
            rows.append({"clip_id": clip, "status": "ok", "split": "train", "egomotion_start_us": int(ts[0]),
                         "egomotion_end_us": int(ts[-1])})
    ego = pa.concat_tables(parts) if parts else pa.table({})
    return ego, pa.Table.from_pylist(rows), _size(reader, rel)


def clip_meta_actions(egomotion: pa.Table, clips: pa.Table) -> dict[str, tuple[list[str], list[float]]]:
    """clip -> (each window's kinematic meta-action, its v0): the ingest's fit and labeler, no video."""
    targets = targets_for_chunk(egomotion, clips, chunk="triage").table
    contexts = window_contexts(targets, None)
    out: dict[str, tuple[list[str], list[float]]] = {}
    for w, r in zip(contexts, KinematicLabeler().label(contexts), strict=True):
        if isinstance(r, Trace):
            ma, v0 = out.setdefault(w.clip_id, ([], []))
            ma.append(r.meta_action)
            v0.append(w.v0_mps)
    return out


def triage(reader: Any, request: DataRequest, *, exclude: set[int], clips: int, max_chunks: int,
           log_fn: Callable[[str], None] = log.info) -> TriageResult:
    """Rank the clips of up to `max_chunks` chunks not in `exclude` by the request, from their
    egomotion alone; choose the best `clips`."""
    index = reader.clip_index
    chunks = sorted(int(c) for c in index["chunk"].dropna().unique() if int(c) not in exclude)[:max_chunks]
    if not chunks:
        raise ValueError(f"no chunk left to triage: every chunk of the pool ({len(index)} clips) is in the lake or "
                         "was acquired before; point the pool at more data")
    res = TriageResult([], [])
    for chunk in chunks:
        ids = sorted(index.index[index["chunk"] == chunk])
        ego, table, ego_bytes = _egomotion(reader, chunk, ids)
        labelled = clip_meta_actions(ego, table) if table.num_rows else {}
        for clip, (mas, v0s) in sorted(labelled.items()):
            res.triaged.append(ClipCandidate(chunk, clip, dict(Counter(mas)), len(mas), request.clip_score(mas, v0s)))
        calib = sum(_size(reader, reader.features.get_chunk_feature_filename(chunk, f)) for f in CHUNK_CALIBRATION)
        camera = _size(reader, reader.features.get_chunk_feature_filename(chunk, L.FRONT_CAMERA))
        res.bytes_fetched[chunk] = ego_bytes + calib
        res.bytes_whole[chunk] = ego_bytes + calib + camera
        log_fn(f"triage: chunk {chunk}: {len(labelled)} of {len(ids)} clips labelled from {ego_bytes:,} bytes of "
               "egomotion")
    ranked = sorted(res.triaged, key=lambda c: (-c.score, c.chunk, c.clip_id))
    res.chosen = ranked[:clips]
    return res


def _camera_members(reader: Any, clip: str) -> tuple[dict[str, bytes], int, str]:
    """A clip's front-camera members, the bytes their reading cost, and a note when it fell back."""
    rel = reader.features.get_chunk_feature_filename(int(reader.get_clip_chunk(clip)), L.FRONT_CAMERA)
    names = reader.features.get_clip_files_in_zip(clip, L.FRONT_CAMERA)
    note = ""
    try:
        if isinstance(reader, LocalPAIDataset):  # a plain directory: read the members where they lie
            with zipfile.ZipFile(reader.download_file(rel)) as zf:
                data = {n: zf.read(n) for n in names.values()}
        else:  # the official reader: range reads of these members over the hub, the cached file offline
            paths = reader.get_clip_feature_paths(clip, L.FRONT_CAMERA, maybe_stream=True)
            data = {names[alias]: Path(p).read_bytes() for alias, p in paths.items()}
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        note = f"member reads failed ({type(exc).__name__}: {str(exc)[:120]}); fetched the whole chunk file"
        with zipfile.ZipFile(reader.download_file(rel)) as zf:
            data = {n: zf.read(n) for n in names.values()}
        return data, _size(reader, rel), note
    with reader.open_file(rel, maybe_stream=True) as f, zipfile.ZipFile(f) as zf:
        cost = sum(ZIP_LOCAL_HEADER + len(i.filename) + len(i.extra) + i.compress_size
                   for i in zf.infolist() if i.filename in data)
    return data, cost, note


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in sorted(members.items()):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".mp4") else zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def _put(root: Path, rel: str, data: bytes) -> None:
    path = inside(root, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def _merged_parquet(root: Path, rel: str, new: pd.DataFrame) -> bytes:
    old = pd.read_parquet(root / rel) if (root / rel).is_file() else None
    df = new if old is None else pd.concat([old[~old.index.isin(new.index)], new])
    buf = io.BytesIO()
    df.to_parquet(buf)
    return buf.getvalue()


def write_chosen(reader: Any, res: TriageResult, into: str | Path) -> None:
    """The chosen clips as a PAI-layout directory: per chunk, the camera zip of its chosen clips, their
    egomotion members and the chunk's calibration; the metadata listing them. Chunk files first and the
    clip index last, so a kill leaves no clip listed whose files are missing."""
    root = Path(into)
    root.mkdir(parents=True, exist_ok=True)
    by_chunk: dict[int, list[str]] = {}
    for c in res.chosen:
        by_chunk.setdefault(c.chunk, []).append(c.clip_id)
    feats = reader.features
    for chunk, clips in sorted(by_chunk.items()):
        camera: dict[str, bytes] = {}
        for clip in clips:
            data, cost, note = _camera_members(reader, clip)
            camera |= data
            res.member_bytes[clip] = cost
            res.bytes_fetched[chunk] += cost
            if note:
                res.notes.append(f"{clip}: {note}")
        ego_rel = feats.get_chunk_feature_filename(chunk, L.EGOMOTION)
        with reader.open_file(ego_rel, maybe_stream=True) as f, zipfile.ZipFile(f) as zf:
            ego = {m: zf.read(m) for clip in clips for m in feats.get_clip_files_in_zip(clip, L.EGOMOTION).values()}
        for name in CHUNK_CALIBRATION:
            rel = feats.get_chunk_feature_filename(chunk, name)
            _put(root, rel, Path(reader.download_file(rel)).read_bytes())
        for rel in twin_gt_paths(chunk).values():  # the twin's ground truth, when the pool is a twin
            src = reader._get_cached_path(rel)
            if src is not None:
                _put(root, rel, Path(src).read_bytes())
        _put(root, ego_rel, _zip(ego))
        _put(root, feats.get_chunk_feature_filename(chunk, L.FRONT_CAMERA), _zip(camera))
        res.written.append(chunk)
    chosen = [c.clip_id for c in res.chosen]
    if not (root / "features.csv").is_file():
        shutil.copyfile(reader.download_file("features.csv"), root / "features.csv")
    for rel, frame in (("metadata/feature_presence.parquet", reader.feature_presence),
                       ("metadata/data_collection.parquet", reader.data_collection)):
        _put(root, rel, _merged_parquet(root, rel, frame.loc[chosen]))
    _put(root, "clip_index.parquet", _merged_parquet(root, "clip_index.parquet", reader.clip_index.loc[chosen]))


def triage_rows(res: TriageResult, request: DataRequest, *, source: str, acquired_us: int) -> list[dict]:
    """`acquisitions` rows: one per chosen clip (its camera bytes), and one per triaged chunk
    (clip_id "": its egomotion and calibration bytes, and the whole chunk's size)."""
    from transforms.pai_layout import chunk_key

    base = {"request_id": request.request_id, "run_id": request.run_id, "method": "triage", "source": source,
            "scenario": None, "acquired_us": acquired_us}
    chosen_per_chunk = Counter(c.chunk for c in res.chosen)
    rows = [base | {"chunk": chunk_key(c.chunk), "clip_id": c.clip_id, "meta_actions": json.dumps(c.meta_actions),
                    "match_score": c.score, "windows": c.windows, "bytes_fetched": res.member_bytes.get(c.clip_id),
                    "bytes_whole": None, "note": None} for c in res.chosen]
    member_total = Counter()
    for c in res.chosen:
        member_total[c.chunk] += res.member_bytes.get(c.clip_id, 0)
    triaged_per_chunk = Counter(c.chunk for c in res.triaged)
    rows += [base | {"chunk": chunk_key(ch), "clip_id": "", "meta_actions": None, "match_score": None,
                     "windows": None, "bytes_fetched": res.bytes_fetched[ch] - member_total[ch],
                     "bytes_whole": res.bytes_whole[ch],
                     "note": f"egomotion of {triaged_per_chunk[ch]} clips read; {chosen_per_chunk[ch]} chosen"}
             for ch in sorted(res.bytes_whole)]
    return rows

