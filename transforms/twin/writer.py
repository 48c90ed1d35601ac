"""Write the offline twin of PAI to disk, in the dataset's exact layout.

`write_twin(root, cfg)` produces features.csv, clip_index.parquet, metadata/*.parquet and, per
chunk, the front-wide camera zip (mp4 + timestamps + blurred boxes per clip), the egomotion zip
and the three calibration parquets. Ground truth the real data lacks lives under `twin/` (see
TWIN_README below). Everything is a function of the config: the same config writes the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.spatial.transform import Rotation

from core.config import knob
from core.progress import Progress
from transforms import pai_layout as L
from transforms.ids import BENCHMARK_SPLIT
from transforms.twin.render import OTHER_CAMERAS, FThetaCamera, render_frames
from transforms.twin.world import SCENARIOS, World, simulate

TWIN_DIR = "twin"
TWIN_README = """# Twin-only ground truth (not part of PAI)

Written by the flywheel's offline twin next to the PAI layout; real PAI data has none of it.
All poses are in each clip's anchor frame (ego rear axle at clip t = 0, x forward, y left),
timestamps in microseconds on the clip clock, like PAI's own files.

- `scenario/scenario.chunk_NNNN.parquet`: one row per clip: scenario, desired speed, lane count,
  oncoming lanes, lane width, stop lines (arc length s of each line on the reference line), seed.
- `road/road.chunk_NNNN.parquet`: the reference line (centre of lane 0, the rightmost lane of the
  ego's direction) every 0.5 m: s, x, y, heading, curvature. Lane i's centre is at d = i * width
  (d to the left); the oncoming lane is at d = n_lanes * width; road edges at -width/2 and
  (n_lanes + oncoming - 0.5) * width.
- `agents/agents.chunk_NNNN.parquet`: other vehicles at 10 Hz: track id, class, box size, centre
  x/y, yaw, Frenet s/d and signed speed (negative: oncoming).
- `intent/intent.chunk_NNNN.parquet`: the driver model at 10 Hz: its intent (the Commander
  vocabulary), lane, Frenet s/d, the lead vehicle constraining it and the gap, the distance to the
  next stop line.
"""

# Reserved for the benchmark set (evals/benchmark.py): a training twin with this seed would hold its clips.
BENCHMARK_SEED = 7_340_033

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member dates: the same config writes the same bytes


@dataclass(frozen=True)
class TwinConfig:
    chunks: int = knob(2, "chunks in the twin")
    clips_per_chunk: int = knob(8, "clips per chunk (real PAI: up to 100)")
    seed: int = knob(0, "the twin's seed: the same config writes the same bytes")
    width: int = knob(256, "camera width (px; real PAI: 1920)")
    height: int = knob(144, "camera height (px; real PAI: 1080)")
    seconds: float = knob(20.0, "clip length (s; real PAI: 20)")
    fps: float = knob(30.0, "camera frame rate (real PAI: 30)")
    split: str = knob("", "empty: train/val/test by position (split_of); else every clip's split (the benchmark's)")
    other_cameras: tuple[str, ...] = knob((), "cameras beyond the front-wide one, as the labelers ask "
                                              "(labelers.registry.LABELER_FEATURES)")

    def __post_init__(self) -> None:
        if self.chunks < 1 or self.clips_per_chunk < 1:
            raise ValueError(f"need >= 1 chunk and clip, got chunks={self.chunks}, clips={self.clips_per_chunk}")
        if self.width % 2 or self.height % 2 or self.width < 32 or self.height < 32:
            raise ValueError(f"width and height must be even and >= 32 (H.264 4:2:0), got {self.width}x{self.height}")
        if self.seconds < 8.0:
            raise ValueError(f"seconds={self.seconds}: a clip needs >= 8 s for one 1.6 s + 6.4 s window")
        if self.split not in ("", BENCHMARK_SPLIT):
            raise ValueError(f"split={self.split!r}: leave it empty (train/val/test by position) or "
                             f"{BENCHMARK_SPLIT!r} (the benchmark set)")
        unknown = [c for c in self.other_cameras if c not in OTHER_CAMERAS]
        if unknown or len(set(self.other_cameras)) != len(self.other_cameras):
            raise ValueError(f"other_cameras={list(self.other_cameras)}: the twin renders each of "
                             f"{list(OTHER_CAMERAS)} at most once besides {L.FRONT_CAMERA}")
        if (self.seed == BENCHMARK_SEED) != (self.split == BENCHMARK_SPLIT):
            raise ValueError(f"seed={self.seed}, split={self.split!r}: seed {BENCHMARK_SEED} is reserved for the "
                             f"benchmark set and the {BENCHMARK_SPLIT!r} split for it; choose another seed "
                             "(FLYWHEEL_TWIN_SEED) for training data")

    def stamp(self) -> dict[str, object]:
        """The config as recorded and hashed; `split` only when set, so twins written before it keep their hash."""
        d = asdict(self)
        for key in ("split", "other_cameras"):  # recorded only when set: older twins keep their hash
            if not d[key]:
                del d[key]
            elif key == "other_cameras":
                d[key] = sorted(d[key])
        return d

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.stamp(), sort_keys=True).encode()).hexdigest()[:16]

    def clip_seed(self, chunk_id: int, index: int) -> int:
        return int.from_bytes(hashlib.sha256(f"{self.seed}/{chunk_id}/{index}".encode()).digest()[:8], "little")


# Chunks acquired on request (transforms/twin/acquire.py) are numbered from here: growing the twin's
# `chunks` never reaches them, and real PAI's chunk ids (0..~3150) stay apart from them too.
ACQUIRED_BASE = 10_000
ACQUIRED_DIR = f"{TWIN_DIR}/acquired"


def acquired_plan_path(chunk_id: int) -> str:
    return f"{ACQUIRED_DIR}/chunk_{chunk_id:05d}.json"


def acquired_plans(root: Path) -> dict[int, list[str]]:
    """chunk id -> the scenario of each clip, for every chunk acquired into the twin at `root`."""
    folder = Path(root) / ACQUIRED_DIR
    plans = {}
    for path in sorted(folder.glob("chunk_*.json")) if folder.is_dir() else []:
        plan = json.loads(path.read_text())
        unknown = [s for s in plan["scenarios"] if s not in SCENARIOS]
        if unknown or int(plan["chunk"]) < ACQUIRED_BASE:
            raise ValueError(f"{path}: scenarios {unknown} are not the twin's {list(SCENARIOS)}, or chunk "
                             f"{plan['chunk']} < {ACQUIRED_BASE}; delete the file and acquire again")
        plans[int(plan["chunk"])] = list(plan["scenarios"])
    return plans


def _clip_id(cfg: TwinConfig, chunk_id: int, index: int) -> str:
    return str(uuid.UUID(int=cfg.clip_seed(chunk_id, index) << 64 | cfg.clip_seed(chunk_id, index + 10_000), version=4))


def clip_ids(cfg: TwinConfig, plans: dict[int, list[str]] | None = None) -> dict[int, list[str]]:
    """Deterministic UUID4-shaped clip ids per chunk (the acquired chunks' after the twin's own)."""
    sizes = {c: cfg.clips_per_chunk for c in range(cfg.chunks)} | {c: len(p) for c, p in (plans or {}).items()}
    return {c: [_clip_id(cfg, c, i) for i in range(n)] for c, n in sizes.items()}


def scenario_of(cfg: TwinConfig, chunk_id: int, index: int, plans: dict[int, list[str]] | None = None) -> str:
    # scenarios cycle through the chunk (offset per chunk), so even a small twin shows every
    # behaviour a Commander names; everything else about the clip comes from its seed. An acquired
    # chunk holds the scenarios its request chose.
    if plans and chunk_id in plans:
        return plans[chunk_id][index]
    return SCENARIOS[(chunk_id * cfg.clips_per_chunk + index) % len(SCENARIOS)]


def split_of(chunk_id: int, index: int) -> str:
    # Every chunk gets val and test clips as soon as it has 4 clips, so a small twin still splits.
    # The val/test positions rotate with the chunk: scenarios cycle through a chunk's clips, and a
    # fixed position would put one scenario in val (or test) in every chunk and never in train.
    return {1: "val", 3: "test"}.get((index + chunk_id) % 10, "train")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def _parquet_bytes(df: pd.DataFrame | pa.Table) -> bytes:
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _zip_bytes(members: Iterator[tuple[str, bytes, bool]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, compress in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            zf.writestr(info, data)
    return buf.getvalue()


def write_metadata(root: Path, cfg: TwinConfig) -> None:
    """features.csv, clip_index.parquet and metadata/*.parquet for all chunks of the twin."""
    root = Path(root)
    plans = acquired_plans(root)
    ids = clip_ids(cfg, plans)
    rows = [(cid, c, i) for c, lst in ids.items() for i, cid in enumerate(lst)]
    index = pd.Index([r[0] for r in rows], name="clip_id")
    _atomic_write(root / "features.csv", pd.DataFrame(L.features_csv_rows()).to_csv(index=False).encode())
    clip_index = pd.DataFrame(
        {"clip_is_valid": True, "chunk": np.array([r[1] for r in rows], np.int64),
         "split": [cfg.split or split_of(r[1], r[2]) for r in rows]}, index=index)
    _atomic_write(root / "clip_index.parquet", _parquet_bytes(clip_index))
    present = set(L.REQUIRED_FEATURES) | set(cfg.other_cameras)
    presence = pd.DataFrame({f: f in present for f in L.FEATURES}, index=index)
    _atomic_write(root / "metadata/feature_presence.parquet", _parquet_bytes(presence))
    own = sum(c < ACQUIRED_BASE for _, c, _ in rows)
    # the acquired clips draw from a generator of their own: the twin's own clips keep their values
    collection = pd.concat([_collection(np.random.default_rng(cfg.seed), own),
                            _collection(np.random.default_rng([cfg.seed, ACQUIRED_BASE]), len(rows) - own)])
    collection.index = index
    _atomic_write(root / "metadata/data_collection.parquet", _parquet_bytes(collection))
    _atomic_write(root / TWIN_DIR / "README.md", TWIN_README.encode())
    _atomic_write(root / TWIN_DIR / "config.json", json.dumps(cfg.stamp(), indent=2, sort_keys=True).encode())


def _collection(rng: np.random.Generator, n: int) -> pd.DataFrame:
    countries = ["United States", "Germany", "France", "Italy", "Spain", "Sweden", "Poland"]
    return pd.DataFrame(
        {"country": [countries[int(k)] for k in rng.integers(0, len(countries), n)],
         "month": rng.integers(1, 13, n).astype(np.int64),
         "hour_of_day": rng.integers(6, 21, n).astype(np.int64),
         "platform_class": rng.choice(["hyperion_8", "hyperion_8.1"], n),
         "radar_config": rng.choice(["NA", "low", "med", "high"], n)})


def encode_mp4(frames: Iterator[np.ndarray], width: int, height: int, fps: float) -> bytes:
    """H.264 in MP4, constant frame rate, pts from 0, no B-frames (as SeekVideoReader expects)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # one thread: x264's output then depends on nothing but the frames (byte-reproducible)
        stream.options = {"preset": "veryfast", "crf": "23", "bf": "0", "g": str(round(fps)), "threads": "1"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def _yaw_quat(yaw: np.ndarray) -> np.ndarray:
    return Rotation.from_euler("z", yaw[:, None]).as_quat()  # (T, 4) scalar-last


def _egomotion_table(world: World) -> pa.Table:
    e = world.ego
    q = _yaw_quat(e.yaw_rad)
    z = np.zeros_like(e.x_m)
    return pa.table({
        "timestamp": pa.array(e.t_us, pa.int64()),
        "qx": q[:, 0], "qy": q[:, 1], "qz": q[:, 2], "qw": q[:, 3],
        "x": e.x_m, "y": e.y_m, "z": z,
        "vx": e.vx_mps, "vy": e.vy_mps, "vz": z,
        "ax": e.ax_mps2, "ay": e.ay_mps2, "az": z,
        "curvature": e.curvature_1pm,
    })


def _ten_hz(world: World) -> np.ndarray:
    """Indices of the sim grid nearest to every 100 ms tick inside the clip's egomotion."""
    t = world.ego.t_us
    ticks = np.arange(int(np.ceil(t[0] / 1e5)) * 100_000, t[-1] + 1, 100_000)
    return np.clip(np.searchsorted(t, ticks), 0, len(t) - 1)


def _ground_truth(clip_id: str, world: World) -> dict[str, pd.DataFrame]:
    r, e = world.road, world.ego
    idx = _ten_hz(world)
    scenario = pd.DataFrame([{
        "clip_id": clip_id, "scenario": world.scenario, "desired_speed_mps": world.desired_speed_mps,
        "n_lanes": r.n_lanes, "oncoming_lanes": r.oncoming_lanes, "lane_width_m": r.lane_width_m,
        "stop_lines_s_m": list(r.stop_lines_s_m), "clip_seed": str(world.clip_seed)}])
    road = pd.DataFrame({"clip_id": clip_id, "s_m": r.s_m, "x_m": r.x_m, "y_m": r.y_m,
                         "heading_rad": r.heading_rad, "curvature_1pm": r.curvature_1pm})
    agents = pd.concat([pd.DataFrame({
        "clip_id": clip_id, "timestamp": e.t_us[idx], "track_id": tr.track_id, "label_class": tr.label_class,
        "length_m": tr.length_m, "width_m": tr.width_m, "height_m": tr.height_m,
        "x_m": tr.x_m[idx], "y_m": tr.y_m[idx], "yaw_rad": tr.yaw_rad[idx], "s_m": tr.s_m[idx],
        "d_m": tr.d_m[idx], "speed_mps": tr.speed_mps[idx]}) for tr in world.tracks], ignore_index=True)
    intent = pd.DataFrame({
        "clip_id": clip_id, "timestamp": e.t_us[idx], "intent": e.intent[idx], "lane": e.lane[idx],
        "s_m": e.s_m[idx], "d_m": e.d_m[idx], "speed_mps": e.speed_mps[idx],
        "lead_track_id": e.lead_track_id[idx], "lead_gap_m": e.lead_gap_m[idx],
        "stop_line_dist_m": e.stop_line_dist_m[idx]})
    return {"scenario": scenario, "road": road, "agents": agents, "intent": intent}


TWIN_GT_TABLES = ("scenario", "road", "agents", "intent")


def twin_gt_paths(chunk_id: int) -> dict[str, str]:
    """Repo-relative paths of a chunk's twin ground-truth tables."""
    return {name: f"{TWIN_DIR}/{name}/{name}.chunk_{chunk_id:04d}.parquet" for name in TWIN_GT_TABLES}


def chunk_is_written(root: Path, chunk_id: int) -> bool:
    return all((Path(root) / L.FEATURES[f].path(chunk_id)).exists() for f in L.REQUIRED_FEATURES)


def write_chunk(root: Path, cfg: TwinConfig, chunk_id: int) -> list[Path]:
    """Simulate, render and write one chunk's feature files (the front camera, and the others the
    config asks for); returns the paths written."""
    root = Path(root)
    plans = acquired_plans(root)
    if not (0 <= chunk_id < cfg.chunks or chunk_id in plans):
        raise ValueError(f"chunk {chunk_id} is outside the twin's chunks 0..{cfg.chunks - 1} and was not acquired "
                         f"({sorted(plans)})")
    ids = clip_ids(cfg, plans)[chunk_id]
    cam_members: dict[str, list[tuple[str, bytes, bool]]] = {c: [] for c in (L.FRONT_CAMERA, *cfg.other_cameras)}
    ego_members: list[tuple[str, bytes, bool]] = []
    intrinsics, extrinsics, dims = [], [], []
    truth: dict[str, list[pd.DataFrame]] = {}
    cam_feature, ego_feature = L.FEATURES[L.FRONT_CAMERA], L.FEATURES[L.EGOMOTION]
    for i, clip_id in enumerate(ids):
        seed = cfg.clip_seed(chunk_id, i)
        world = simulate(seed, cfg.seconds, scenario_of(cfg, chunk_id, i, plans))
        rng = np.random.default_rng(seed ^ 0x5EED)
        cam = FThetaCamera.front_wide(cfg.width, cfg.height, rng)
        # camera frames start a few ms before the clip, like the real 605-frame clips
        n_frames = int((cfg.seconds + 0.12) * cfg.fps) + 1
        t_frames = -int(rng.integers(5_000, 20_000)) + np.round(np.arange(n_frames) * 1e6 / cfg.fps).astype(np.int64)
        cams = {L.FRONT_CAMERA: cam}
        for k, name in enumerate(cfg.other_cameras):  # own draws: the front camera's stay as they were
            cams[name] = FThetaCamera.other(name, cfg.width, cfg.height, np.random.default_rng([seed, 7, k]))
        for name, c in cams.items():
            mp4 = encode_mp4(render_frames(world, c, t_frames), cfg.width, cfg.height, cfg.fps)
            cam_members[name] += _camera_members(L.FEATURES[name].members(clip_id), mp4, t_frames)
            intrinsics.append({"clip_id": clip_id, "camera_name": name, "width": cfg.width,
                               "height": cfg.height, "cx": c.cx, "cy": c.cy,
                               **{f"fw_poly_{j}": c.fw_poly[j] for j in range(5)},
                               **{f"bw_poly_{j}": c.bw_poly[j] for j in range(5)}})
            qx, qy, qz, qw = c.quat_xyzw
            extrinsics.append({"clip_id": clip_id, "sensor_name": name, "qx": qx, "qy": qy, "qz": qz,
                               "qw": qw, "x": c.xyz_m[0], "y": c.xyz_m[1], "z": c.xyz_m[2]})
        ego_members.append((ego_feature.members(clip_id)["egomotion"], _parquet_bytes(_egomotion_table(world)), True))
        platform_81 = rng.random() < 0.5
        dims.append({"clip_id": clip_id, "length": 4.9, "width": 1.95, "height": 1.5,
                     "rear_axle_to_bbox_center": 1.45, "wheelbase": 3.165 if platform_81 else 2.85,
                     "track_width": 1.65})
        for name, df in _ground_truth(clip_id, world).items():
            truth.setdefault(name, []).append(df)

    written = []

    def put(rel: str, data: bytes) -> None:
        _atomic_write(root / rel, data)
        written.append(root / rel)

    put(L.FEATURES[L.CAMERA_INTRINSICS].path(chunk_id),
        _parquet_bytes(pd.DataFrame(intrinsics).set_index(["clip_id", "camera_name"])))
    put(L.FEATURES[L.SENSOR_EXTRINSICS].path(chunk_id),
        _parquet_bytes(pd.DataFrame(extrinsics).set_index(["clip_id", "sensor_name"])))
    put(L.FEATURES[L.VEHICLE_DIMENSIONS].path(chunk_id), _parquet_bytes(pd.DataFrame(dims).set_index("clip_id")))
    for name, dfs in truth.items():
        put(twin_gt_paths(chunk_id)[name], _parquet_bytes(pd.concat(dfs, ignore_index=True)))
    # the zips last: `chunk_is_written` keys on them, so a crash never leaves a chunk looking complete
    put(ego_feature.path(chunk_id), _zip_bytes(iter(ego_members)))
    for name in cfg.other_cameras:
        put(L.FEATURES[name].path(chunk_id), _zip_bytes(iter(cam_members[name])))
    put(cam_feature.path(chunk_id), _zip_bytes(iter(cam_members[L.FRONT_CAMERA])))
    return written


def _camera_members(names: dict[str, str], mp4: bytes, t_frames: np.ndarray) -> list[tuple[str, bytes, bool]]:
    no_boxes = pa.table({"timestamp": pa.array([], pa.int64()), **{k: pa.array([], pa.float32())
                                                                   for k in ("x_min", "y_min", "x_max", "y_max")}})
    return [(names["video"], mp4, False),
            (names["frame_timestamps"], _parquet_bytes(pa.table({"timestamp": pa.array(t_frames, pa.int64())})), True),
            (names["blurred_boxes"], _parquet_bytes(no_boxes), True)]


def write_twin(root: Path, cfg: TwinConfig, *, chunks: list[int] | None = None, overwrite: bool = False,
               log: Callable[[str], None] | None = None) -> Path:
    """Write the metadata and the requested chunks (default: all); finished chunks are kept. `log` gets
    progress lines (core/progress.py), one per chunk.

    A twin that differs only in its number of chunks is grown (or shrunk) in place: a chunk's
    clips depend on the seed, the chunk and the clip's index, never on how many chunks there are.
    """
    root = Path(root)
    stamp = root / TWIN_DIR / "config.json"
    have = json.loads(stamp.read_text()) if stamp.exists() else None
    if have is not None and have != cfg.stamp() and {**have, "chunks": cfg.chunks} != cfg.stamp():
        if not overwrite:
            raise FileExistsError(
                f"{root} holds a twin written with another config ({stamp}); "
                "choose another --out or pass overwrite=True / --overwrite to replace it")
        shutil.rmtree(root)
    write_metadata(root, cfg)
    todo = [c for c in (range(cfg.chunks) if chunks is None else chunks) if not chunk_is_written(root, c)]
    progress = Progress(log, "twin_chunks", len(todo), every_s=0.0) if log else None
    for c in todo:
        write_chunk(root, cfg, c)
        if progress:
            progress.update()
    return root
