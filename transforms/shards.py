"""Export training windows into WebDataset tar shards: deterministic, resumable, atomic.

A sample per window (standard webdataset keys): `jpg` the front camera at t0 (optionally
`prev1.jpg`..`prev3.jpg` at t0 - 0.1 s ...), `json` (clip, t0, command, trace, ego state, labeler),
`actions.npy` (64, 2) normalised (a, κ), `future.npy` (64, 3), `history.npy` (16, 3), float32.

Determinism: samples are ordered by (split, clip, t0); a shard closes at `max_count` samples or
once it passes `max_bytes`; tar members have fixed owner, mode and mtime; JPEG encoding is
deterministic for a given libjpeg. So a shard's bytes are a function of its inputs and the config,
and re-exporting gives the same sha256. Each shard is written aside and renamed when complete;
on resume, shards listed in the manifest with the same dataset version and an intact file are
skipped (their samples are not decoded again).

Generations: a shard's name carries its dataset version (`{split}/{chunk}-{version}-{n:05d}.tar`),
so a re-export with other inputs writes beside the old files, never over them, and the manifest's
Delta commit is the only switch between the two sets. Readers trust only what the manifest lists.
Files of the chunk that the committed manifest does not list (a killed export's, the generation
just replaced, `.tmp` files) are removed by `clean_shards`, under the chunk's lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import tarfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from core.config import knob
from lake.faults import crash_point
from transforms import pai_layout as L
from transforms.frames import FrameDecodeError, decode_frames
from transforms.ids import UnsafePathError, check_sample_key, check_split, inside, relative_path_problem
from transforms.pai_layout import chunk_id_of
from transforms.source import ChunkFiles, sha256_of
from transforms.windows import read_targets
from transforms.zipread import MemberError, ZipMembers

SHARD_MTIME = 1_700_000_000  # fixed member mtime: reproducible bytes
DECODE_AHEAD = 2  # clips decoded ahead of the writer (results are consumed in order)


@dataclass(frozen=True)
class ShardConfig:
    image_width: int = knob(256, "sample image width (px); the camera frame is resized to it")
    image_height: int = knob(144, "sample image height (px)")
    jpeg_quality: int = knob(90, "JPEG quality of the sample images (1..100)")
    history_frames: int = knob(0, "extra frames before t0, 0.1 s apart (0..3)")
    max_count: int = knob(1000, "samples per shard (at most)")
    max_bytes: int = knob(256 * 2**20, "bytes per shard (at most)")
    labeler: str = knob("", "export the labels of this labeler; empty: the chunk's latest labels (its last "
                            "commander_labels run)")
    labeler_version: str = knob("", "... and this version of it; empty: the latest")

    def __post_init__(self) -> None:
        if not 0 <= self.history_frames <= 3:
            raise ValueError(f"history_frames={self.history_frames}: choose 0..3 (frames at t0 - 0.1 s ...)")
        if self.image_width < 16 or self.image_height < 16 or not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"image {self.image_width}x{self.image_height} q{self.jpeg_quality}: need >= 16 px and "
                             "quality 1..100")
        if self.max_count < 1 or self.max_bytes < 1:
            raise ValueError(f"max_count={self.max_count}, max_bytes={self.max_bytes}: both must be >= 1")


@dataclass(frozen=True)
class Window:
    """Everything a sample needs except its images."""

    chunk: str
    clip_id: str
    t0_us: int
    split: str
    actions: np.ndarray  # (64, 2) normalised
    future_xyz: np.ndarray  # (64, 3)
    history_xyz: np.ndarray  # (16, 3)
    state: dict[str, float]  # v, a, κ, yaw rate at t0 (measured, from egomotion)
    label: dict[str, object]  # command, meta_action, trace, labeler, labeler_version, confidence

    @property
    def key(self) -> str:
        return f"{self.clip_id}_{self.t0_us:011d}"  # webdataset keys: no dots


@dataclass(frozen=True)
class ShardRecord:
    path: str  # relative to the shard root
    split: str
    samples: int
    bytes: int
    sha256: str
    first_key: str
    last_key: str


@dataclass
class ExportResult:
    shards: list[ShardRecord] = field(default_factory=list)
    written: int = 0
    skipped: int = 0
    quarantined: list[tuple[str, int, str]] = field(default_factory=list)  # (clip_id, t0_us, reason)
    frames_decoded: int = 0


def ego_state_at(egomotion: pa.Table, clip_ids: list[str], t0s: list[int]) -> list[dict[str, float]]:
    """Measured ego state at each t0 (linear interpolation of the egomotion): speed, longitudinal
    acceleration, curvature, yaw rate. Observations only: nothing from the future is used."""
    out = []
    by_clip: dict[str, dict[str, np.ndarray]] = {}
    for clip in sorted(set(clip_ids)):
        rows = egomotion.filter(pc.equal(egomotion.column("clip_id"), clip)).sort_by("timestamp")
        by_clip[clip] = {c: rows.column(c).to_numpy() for c in ("timestamp", "vx", "vy", "ax", "ay", "curvature")}
    for clip, t0 in zip(clip_ids, t0s, strict=True):
        e = by_clip[clip]
        at = {c: float(np.interp(t0, e["timestamp"], e[c])) for c in ("vx", "vy", "ax", "ay", "curvature")}
        v = float(np.hypot(at["vx"], at["vy"]))
        a_long = (at["ax"] * at["vx"] + at["ay"] * at["vy"]) / v if v > 0.1 else float(np.hypot(at["ax"], at["ay"]))
        out.append({"v_mps": v, "a_mps2": a_long, "kappa_1pm": at["curvature"], "yaw_rate_radps": at["curvature"] * v})
    return out


def windows_for_chunk(targets: pa.Table, labels: pa.Table, egomotion: pa.Table, *, chunk: str) -> list[Window]:
    """Join targets with one labeler version's labels; windows without a label are left out."""
    label_of = {(r["clip_id"], r["t0_us"]): r for r in labels.to_pylist()}
    rows = read_targets(targets)
    keep = [i for i, key in enumerate(rows.keys()) if key in label_of]
    acts = rows.normalised_actions()
    clip_ids, t0s = [rows.clip_id[i] for i in keep], [int(rows.t0_us[i]) for i in keep]
    states = ego_state_at(egomotion, clip_ids, t0s) if clip_ids else []
    out = []
    for i, c, t0, state in zip(keep, clip_ids, t0s, states, strict=True):
        lab = label_of[(c, t0)]
        out.append(Window(chunk, c, t0, rows.split[i], acts[i].astype(np.float32),
                          rows.future_xyz[i].astype(np.float32), rows.history_xyz[i].astype(np.float32), state,
                          {k: lab[k] for k in ("command", "meta_action", "labeler", "labeler_version", "confidence")}
                          | {"trace": json.loads(lab["trace"])}))
    return sorted(out, key=lambda w: (w.split, w.clip_id, w.t0_us))


def dataset_version(cfg: ShardConfig, *, chunk: str, inputs: dict[str, str]) -> str:
    """A hash of the export config and the identities of its inputs (file sha256s, table digests)."""
    doc = json.dumps({"config": asdict(cfg), "chunk": chunk, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _jpeg(img: np.ndarray, cfg: ShardConfig) -> bytes:
    im = Image.fromarray(img)
    if im.size != (cfg.image_width, cfg.image_height):
        im = im.resize((cfg.image_width, cfg.image_height), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=cfg.jpeg_quality, optimize=False, progressive=False)
    return buf.getvalue()


def sample_members(w: Window, images: list[np.ndarray], cfg: ShardConfig) -> list[tuple[str, bytes]]:
    """(member name, bytes) of one sample, in a fixed order."""
    meta = {"clip_id": w.clip_id, "t0_us": w.t0_us, "chunk": w.chunk, "split": w.split, "state": w.state,
            "image": {"width": cfg.image_width, "height": cfg.image_height, "history_frames": cfg.history_frames},
            **w.label}
    members = [(f"{w.key}.jpg", _jpeg(images[0], cfg))]
    members += [(f"{w.key}.prev{k}.jpg", _jpeg(images[k], cfg)) for k in range(1, len(images))]
    members += [(f"{w.key}.json", json.dumps(meta, sort_keys=True).encode()),
                (f"{w.key}.actions.npy", _npy(w.actions)), (f"{w.key}.future.npy", _npy(w.future_xyz)),
                (f"{w.key}.history.npy", _npy(w.history_xyz))]
    return members


class _ShardFile:
    """A tar being written aside (`.name.tmp`), published by rename when closed."""

    def __init__(self, root: Path, rel: str) -> None:
        self.final = inside(root, rel)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.final.with_name(f".{self.final.name}.tmp-{os.getpid()}")
        self._f = open(self.tmp, "wb")
        self._tar = tarfile.open(fileobj=self._f, mode="w", format=tarfile.USTAR_FORMAT)
        self.samples, self.first_key, self.last_key = 0, "", ""

    def add(self, key: str, members: list[tuple[str, bytes]]) -> None:
        check_sample_key(key)
        for name, data in members:
            if not name.startswith(f"{key}.") or relative_path_problem(name) or "/" in name:
                raise UnsafePathError(f"tar member {name!r} of sample {key!r}: members are '<key>.<ext>'")
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), SHARD_MTIME, 0o444
            info.uname = info.gname = "flywheel"
            self._tar.addfile(info, io.BytesIO(data))
        self.samples += 1
        self.first_key = self.first_key or key
        self.last_key = key

    @property
    def nbytes(self) -> int:
        return self._f.tell()

    def publish(self) -> None:
        self._tar.close()
        self._f.close()
        self.tmp.replace(self.final)

    def abort(self) -> None:
        try:  # closing flushes, and fails again on a full disk: the file goes regardless
            self._tar.close()
            self._f.close()
        finally:
            self._f.close()
            self.tmp.unlink(missing_ok=True)


def _clip_groups(windows: list[Window]) -> list[list[Window]]:
    groups: list[list[Window]] = []
    for w in windows:
        if groups and groups[-1][0].clip_id == w.clip_id:
            groups[-1].append(w)
        else:
            groups.append([w])
    return groups


def _decode_group(zm: ZipMembers, feat: L.Feature, group: list[Window],
                  offsets: list[int]) -> dict[int, np.ndarray] | Exception:
    """One clip's needed frames in one pass, or the error that prevented it."""
    names = feat.members(group[0].clip_id)
    try:
        times = pq.read_table(io.BytesIO(zm.read(names["frame_timestamps"]))).column("timestamp").to_numpy()
        wanted = np.array(sorted({w.t0_us - o for w in group for o in offsets}), np.int64)
        usable = wanted[(wanted >= times[0]) & (wanted <= times[-1])]
        with zm.open(names["video"]) as video:
            return decode_frames(video, times, usable) if len(usable) else {}
    except (MemberError, FrameDecodeError, pa.ArrowInvalid, OSError) as exc:
        return exc


def _images_by_clip(files: ChunkFiles, windows: list[Window], cfg: ShardConfig,
                    result: ExportResult) -> Iterator[tuple[Window, list[np.ndarray] | None]]:
    """Each window with its frames (t0 and, if asked, before), decoded in one pass per clip.

    The next clips are decoded in background threads while the caller encodes and writes the
    current one (FFmpeg releases the GIL), so export runs close to decoding speed.
    """
    feat = files.features[L.FRONT_CAMERA]
    zm = ZipMembers(files.feature_path(L.FRONT_CAMERA))
    offsets = [k * 100_000 for k in range(cfg.history_frames + 1)]
    groups = _clip_groups(windows)
    try:
        with ThreadPoolExecutor(max_workers=DECODE_AHEAD) as pool:
            pending = deque(pool.submit(_decode_group, zm, feat, g, offsets) for g in groups[:DECODE_AHEAD])
            for k, group in enumerate(groups):
                frames = pending.popleft().result()
                if k + DECODE_AHEAD < len(groups):
                    pending.append(pool.submit(_decode_group, zm, feat, groups[k + DECODE_AHEAD], offsets))
                if isinstance(frames, Exception):
                    for w in group:
                        result.quarantined.append((w.clip_id, w.t0_us, f"front frames unavailable: {frames}"))
                        yield w, None
                    continue
                result.frames_decoded += len(frames)
                for w in group:
                    imgs = [frames.get(w.t0_us - o) for o in offsets]
                    if any(im is None for im in imgs):
                        result.quarantined.append((w.clip_id, w.t0_us, "a frame at or before t0 is outside the video"))
                        yield w, None
                    else:
                        yield w, imgs  # type: ignore[misc]
    finally:
        zm.close()


@dataclass(frozen=True)
class _Pick:
    clip_id: str
    t0_us: int


def front_frames(files: ChunkFiles, picks: list[tuple[str, int]]) -> dict[tuple[str, int], np.ndarray]:
    """The front camera at each (clip_id, time) pick, decoded one pass per clip: the contact sheets of the
    assets' metadata. A pick the video cannot give (a damaged clip, a time outside it) is left out."""
    feat = files.features[L.FRONT_CAMERA]
    zm = ZipMembers(files.feature_path(L.FRONT_CAMERA))
    out: dict[tuple[str, int], np.ndarray] = {}
    try:
        for group in _clip_groups([_Pick(c, int(t)) for c, t in sorted(picks)]):
            frames = _decode_group(zm, feat, group, [0])  # type: ignore[arg-type]
            if not isinstance(frames, Exception):
                out |= {(p.clip_id, p.t0_us): frames[p.t0_us] for p in group if p.t0_us in frames}
    finally:
        zm.close()
    return out


Members = list[tuple[str, bytes]]
# pending windows (in split, clip, t0 order) -> each with its sample members, or None if it cannot be made
Encoder = Callable[[list[Window], ExportResult], Iterator[tuple[Window, Members | None]]]


def encode_local(files: ChunkFiles, cfg: ShardConfig) -> Encoder:
    """Decode and encode in this process, streaming: clips are decoded ahead of the writer."""

    def encode(ws: list[Window], result: ExportResult) -> Iterator[tuple[Window, Members | None]]:
        for w, imgs in _images_by_clip(files, ws, cfg, result):
            yield w, None if imgs is None else sample_members(w, imgs, cfg)

    return encode


def shard_path(split: str, chunk: str, version: str, n: int) -> str:
    """A shard's path under the shard root; the split and chunk come from data, so both are checked."""
    chunk_id_of(chunk)
    return f"{check_split(split)}/{chunk}-{version}-{n:05d}.tar"


def export_shards(files: ChunkFiles, windows: list[Window], out_root: Path, cfg: ShardConfig, *, chunk: str,
                  version: str, done: dict[str, ShardRecord] | None = None, encode: Encoder | None = None) -> ExportResult:
    """Write the chunk's windows into shards `shard_path(split, chunk, version, n)` under out_root.

    `done` maps shard paths already exported at this dataset version to their records; those
    whose file is intact (same sha256) are skipped and their samples not decoded again.
    `encode` makes the samples of the other windows (default: `encode_local`); the tars are
    written here, in order, so the shard cut and the bytes never depend on who encoded.
    """
    out_root = Path(out_root)
    done = done or {}
    result = ExportResult()
    by_split: dict[str, list[Window]] = {}
    for w in windows:
        by_split.setdefault(w.split, []).append(w)
    pending: list[Window] = []
    next_n: dict[str, int] = {}
    for split, ws in sorted(by_split.items()):
        n, pos = 0, 0
        # resume: skip the completed prefix of this split's shards
        while (rec := done.get(shard_path(split, chunk, version, n))) is not None and (out_root / rec.path).is_file() and \
                sha256_of(out_root / rec.path) == rec.sha256:
            if pos >= len(ws) or ws[pos].key != rec.first_key:  # data, not an invariant: checked under -O too
                raise ValueError(
                    f"{chunk}: cannot resume at {rec.path}: the manifest says it starts with {rec.first_key}, the "
                    f"windows of this version give {ws[pos].key if pos < len(ws) else 'none'} there. The shards on "
                    "disk do not match their manifest: delete that chunk's shards and materialize webdataset_shards again")
            pos += rec.samples
            result.shards.append(rec)
            result.skipped += 1
            n += 1
        pending += ws[pos:]
        next_n[split] = n
    shard: _ShardFile | None = None
    split = ""

    def close() -> None:
        nonlocal shard
        assert shard is not None
        result.shards.append(_close(shard, out_root, split))
        result.written += 1
        next_n[split] += 1
        shard = None

    try:
        for w, members in (encode or encode_local(files, cfg))(pending, result):
            if shard is not None and w.split != split:
                close()
            split = w.split
            if members is None:
                continue
            if shard is None:
                shard = _ShardFile(out_root, shard_path(split, chunk, version, next_n[split]))
            shard.add(w.key, members)
            if shard.samples >= cfg.max_count or shard.nbytes >= cfg.max_bytes:
                close()
        if shard is not None:
            close()
    finally:
        if shard is not None:
            shard.abort()
    result.shards.sort(key=lambda r: r.path)
    return result


def _close(shard: _ShardFile, root: Path, split: str) -> ShardRecord:
    shard.publish()
    crash_point("shards.after_publish")
    rel = shard.final.relative_to(root).as_posix()
    return ShardRecord(rel, split, shard.samples, shard.final.stat().st_size, sha256_of(shard.final),
                       shard.first_key, shard.last_key)


def table_digest(table: pa.Table, columns: list[str], sort_by: list[str]) -> str:
    """A content hash of some columns of a table (order-independent: rows are sorted first)."""
    t = table.select(columns).sort_by([(c, "ascending") for c in sort_by])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, t.schema) as writer:
        writer.write_table(t)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:16]


@contextmanager
def chunk_lock(out_root: Path, chunk: str) -> Iterator[None]:
    """Exclusive hold on a chunk's shards for one export, its commit and its clean-up.

    Two materializations of the same chunk then follow each other instead of deleting each
    other's files. The kernel drops the lock when its process dies, even by kill -9.
    """
    lock = inside(Path(out_root) / ".locks", f"{chunk}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def clean_shards(out_root: Path, chunk: str, keep: set[str]) -> list[str]:
    """Remove the chunk's shard files that `keep` (the committed manifest's paths) does not list:
    temp files of a killed or failed export, and generations replaced. Returns what was removed.
    Call it holding `chunk_lock`."""
    chunk_id_of(chunk)
    out_root = Path(out_root)
    gone = []
    for split_dir in (d for d in out_root.iterdir() if d.is_dir() and not d.name.startswith(".")) \
            if out_root.is_dir() else ():
        for f in [*split_dir.glob(f"{chunk}-*.tar"), *split_dir.glob(f".{chunk}-*.tar.tmp-*")]:
            rel = f.relative_to(out_root).as_posix()
            if rel not in keep:
                f.unlink(missing_ok=True)
                gone.append(rel)
    return sorted(gone)


@dataclass(frozen=True)
class ChunkExport:
    version: str
    manifest: list[dict[str, object]]  # rows of lake.tables.SHARD_MANIFEST
    result: ExportResult


@dataclass(frozen=True)
class Published:
    export: ChunkExport
    delta_version: int  # of the manifest commit that switched to it
    removed: list[str]  # files no manifest listed, before the export (a killed export's) and after (replaced)


def publish_chunk(out_root: Path, chunk: str, *, previous: Callable[[], list[dict[str, object]]],
                  export: Callable[[list[dict[str, object]]], ChunkExport],
                  commit: Callable[[list[dict[str, object]]], int]) -> Published:
    """The one way a chunk's shards change. Under the chunk's lock: drop the files the committed
    manifest (`previous()`) does not list, `export` beside the live generation, `commit` the new
    manifest (the switch), then drop the generation it replaced."""
    with chunk_lock(out_root, chunk):
        rows = previous()
        removed = clean_shards(out_root, chunk, keep={str(r["path"]) for r in rows})
        out = export(rows)
        crash_point("shards.before_commit")
        version = commit(out.manifest)
        crash_point("shards.after_commit")
        removed += clean_shards(out_root, chunk, keep={str(r["path"]) for r in out.manifest})
    return Published(out, version, removed)


def export_chunk(files: ChunkFiles, *, chunk: str, cfg: ShardConfig, out_root: Path, targets: pa.Table,
                 labels: pa.Table, egomotion: pa.Table, file_sha256: dict[str, str],
                 previous: list[dict[str, object]], encode: Encoder | None = None) -> ChunkExport:
    """Export one chunk's labeled windows, resuming from `previous` manifest rows of the same version.

    `file_sha256` maps features to the sha256 of the chunk files they were read from (bronze).
    Nothing is deleted here: the old generation stays until the caller has committed the new
    manifest and called `clean_shards`.
    """
    if not (cfg.labeler and cfg.labeler_version):
        raise ValueError(f"{chunk}: export with a resolved label set, got labeler={cfg.labeler!r}, "
                         f"labeler_version={cfg.labeler_version!r} (transforms.label_sets.label_set names it)")
    if labels.num_rows == 0:
        raise ValueError(f"{chunk}: no commander_labels of {cfg.labeler} {cfg.labeler_version}; materialize "
                         "commander_labels with that labeler first, or set labeler/labeler_version to one that exists")
    windows = windows_for_chunk(targets, labels, egomotion, chunk=chunk)
    version = dataset_version(cfg, chunk=chunk, inputs={
        "camera": file_sha256[L.FRONT_CAMERA], "egomotion": file_sha256[L.EGOMOTION],
        "targets": table_digest(targets, ["clip_id", "t0_us", "accel_norm", "curvature_norm"], ["clip_id", "t0_us"]),
        "labels": table_digest(labels, ["clip_id", "t0_us", "command", "trace"], ["clip_id", "t0_us"])})
    done = {str(r["path"]): ShardRecord(**{k: r[k] for k in ShardRecord.__dataclass_fields__})  # type: ignore[arg-type]
            for r in previous if r["dataset_version"] == version}
    res = export_shards(files, windows, out_root, cfg, chunk=chunk, version=version, done=done, encode=encode)
    rows = [{**asdict(s), "chunk": chunk, "dataset_version": version, "labeler": cfg.labeler,
             "labeler_version": cfg.labeler_version, "config": json.dumps(asdict(cfg), sort_keys=True)} for s in res.shards]
    return ChunkExport(version, rows, res)


# ---------------------------------------------------------------- encoding as engine parts


@dataclass(frozen=True)
class ShardsPlan:
    chunk: str
    files: ChunkFiles
    cfg: ShardConfig
    keys: frozenset[str]  # the windows to encode (a resumed export skips the others)


SAMPLE_MEMBER = pa.struct([("name", pa.string()), ("data", pa.binary())])
# the windows a part could not encode travel back to the driver as (clip_id, t0_us, reason); the
# driver quarantines them with the rest of the export's (lake.tables.quarantine_rows)
SKIPPED_WINDOWS = pa.schema([("clip_id", pa.string()), ("t0_us", pa.int64()), ("reason", pa.string())])
SHARD_PART_OUTPUTS = {
    "samples": pa.schema([("key", pa.string()), ("members", pa.list_(SAMPLE_MEMBER))]),
    "skipped": SKIPPED_WINDOWS,
    "stats": pa.schema([("frames_decoded", pa.int64())]),
}


def shards_part(plan: ShardsPlan, clip_ids: list[str], inputs: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Encode the samples of some clips (an engine part function: see engines/__init__.py).

    Inputs: their `targets`, `labels` (one labeler version) and `egomotion` rows. The same
    windows and the same `encode_local` as the embedded export, so the bytes are the same.
    """
    ws = [w for w in windows_for_chunk(inputs["targets"], inputs["labels"], inputs["egomotion"], chunk=plan.chunk)
          if w.key in plan.keys]
    result = ExportResult()
    keys, members = [], []
    for w, m in encode_local(plan.files, plan.cfg)(ws, result):
        if m is not None:
            keys.append(w.key)
            members.append([{"name": n, "data": d} for n, d in m])
    return {"samples": pa.table({"key": keys, "members": members}, schema=SHARD_PART_OUTPUTS["samples"]),
            "skipped": pa.table({"clip_id": [q[0] for q in result.quarantined], "t0_us": [q[1] for q in result.quarantined],
                                 "reason": [q[2] for q in result.quarantined]}, schema=SKIPPED_WINDOWS),
            "stats": pa.table({"frames_decoded": [result.frames_decoded]}, schema=SHARD_PART_OUTPUTS["stats"])}


def parted_encoder(map_parts: Callable[[ShardsPlan, list[str]], dict[str, pa.Table]], files: ChunkFiles,
                   cfg: ShardConfig, *, chunk: str) -> Encoder:
    """An `Encoder` that runs `shards_part` through an engine's `map_parts` (all pending clips at once)."""

    def encode(ws: list[Window], result: ExportResult) -> Iterator[tuple[Window, Members | None]]:
        if not ws:
            return
        out = map_parts(ShardsPlan(chunk, files, cfg, frozenset(w.key for w in ws)), sorted({w.clip_id for w in ws}))
        samples = dict(zip(out["samples"].column("key").to_pylist(), out["samples"].column("members").to_pylist(),
                           strict=True))
        why = {(r["clip_id"], r["t0_us"]): r["reason"] for r in out["skipped"].to_pylist()}
        result.frames_decoded += sum(out["stats"].column("frames_decoded").to_pylist())
        for w in ws:
            m = samples.get(w.key)
            if m is None:
                result.quarantined.append((w.clip_id, w.t0_us, why.get((w.clip_id, w.t0_us), "not encoded")))
            yield w, None if m is None else [(x["name"], x["data"]) for x in m]

    return encode
