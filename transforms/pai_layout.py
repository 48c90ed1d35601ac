"""The on-disk layout of NVIDIA's PhysicalAI-Autonomous-Vehicles dataset (PAI).

One place for the 36 features, their chunk paths and zip member templates, so the twin writer,
the sources and the index all agree with `features.csv` (docs/references.md, *PAI layout*).
Readers resolve paths through `features.csv` of the dataset at hand; these constants are what the
twin writes and what a reader falls back to when listing a mirror.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from transforms.ids import relative_path_problem

REPO_ID = "nvidia/PhysicalAI-Autonomous-Vehicles"
REPO_TYPE = "dataset"

FRONT_CAMERA = "camera_front_wide_120fov"
EGOMOTION = "egomotion"
CAMERA_INTRINSICS = "camera_intrinsics"
SENSOR_EXTRINSICS = "sensor_extrinsics"
VEHICLE_DIMENSIONS = "vehicle_dimensions"

CAMERAS = (
    "camera_cross_left_120fov",
    "camera_cross_right_120fov",
    "camera_front_tele_30fov",
    FRONT_CAMERA,
    "camera_rear_left_70fov",
    "camera_rear_right_70fov",
    "camera_rear_tele_30fov",
)
CALIBRATION = (
    CAMERA_INTRINSICS,
    SENSOR_EXTRINSICS,
    VEHICLE_DIMENSIONS,
    "camera_intrinsics.offline",
    "sensor_extrinsics.offline",
    "lidar_intrinsics.offline",
)
LABELS = (EGOMOTION, "egomotion.offline", "obstacle.offline")
LIDAR = ("lidar_top_360fov",)
RADARS = tuple(
    [f"radar_corner_{fr}_{lr}_srr_{n}" for fr in ("front", "rear") for lr in ("left", "right") for n in (0, 3)]
    + ["radar_front_center_imaging_lrr_1", "radar_front_center_mrr_2", "radar_front_center_srr_0"]
    + [f"radar_rear_{lr}_{kind}" for lr in ("left", "right") for kind in ("mrr_2", "srr_0")]
    + [f"radar_side_{lr}_srr_{n}" for lr in ("left", "right") for n in (0, 3)]
)

# The features the flywheel needs from every chunk; everything else is optional.
REQUIRED_FEATURES = (FRONT_CAMERA, EGOMOTION, CAMERA_INTRINSICS, SENSOR_EXTRINSICS, VEHICLE_DIMENSIONS)

METADATA_FILES = (
    "features.csv",
    "clip_index.parquet",
    "metadata/feature_presence.parquet",
    "metadata/data_collection.parquet",
)
# Releases before 26.03 ship this instead of feature_presence (booleans beside other columns).
LEGACY_PRESENCE = "metadata/sensor_presence.parquet"
# Where present, the official split of every clip; physical-ai-av reads it over clip_index's `split`.
SPLITS_FILE = "splits/default.parquet"
OPTIONAL_METADATA = (LEGACY_PRESENCE, SPLITS_FILE)


@dataclass(frozen=True)
class Feature:
    name: str
    directory: str  # camera | calibration | labels | lidar | radar
    chunk_path: str  # "{directory}/{name}/{name}.chunk_{chunk_id:04d}.{zip|parquet}"
    clip_files_in_zip: dict[str, str] | None  # alias -> member template with {clip_id}

    @property
    def is_zip(self) -> bool:
        return self.clip_files_in_zip is not None

    def path(self, chunk_id: int) -> str:
        return self.chunk_path.format(chunk_id=chunk_id)

    def members(self, clip_id: str) -> dict[str, str]:
        if self.clip_files_in_zip is None:
            raise ValueError(f"feature {self.name!r} is a parquet file, not a zip of clip members")
        return {alias: tpl.format(clip_id=clip_id) for alias, tpl in self.clip_files_in_zip.items()}


def _zip(directory: str, name: str, members: dict[str, str]) -> Feature:
    return Feature(name, directory, f"{directory}/{name}/{name}.chunk_{{chunk_id:04d}}.zip", members)


def _parquet(directory: str, name: str) -> Feature:
    return Feature(name, directory, f"{directory}/{name}/{name}.chunk_{{chunk_id:04d}}.parquet", None)


def _all_features() -> dict[str, Feature]:
    feats: list[Feature] = []
    for cam in CAMERAS:
        feats.append(
            _zip(
                "camera",
                cam,
                {
                    "video": f"{{clip_id}}.{cam}.mp4",
                    "frame_timestamps": f"{{clip_id}}.{cam}.timestamps.parquet",
                    "blurred_boxes": f"{{clip_id}}.{cam}.blurred_boxes.parquet",
                },
            )
        )
    feats += [_parquet("calibration", name) for name in CALIBRATION]
    feats += [_zip("labels", name, {name.replace(".", "_"): f"{{clip_id}}.{name}.parquet"}) for name in LABELS]
    feats += [_zip("lidar", name, {"lidar": f"{{clip_id}}.{name}.parquet"}) for name in LIDAR]
    feats += [_zip("radar", name, {"scans": f"{{clip_id}}.{name}.parquet"}) for name in RADARS]
    out = {f.name: f for f in feats}
    # The official reader addresses the egomotion member by the alias "egomotion".
    out[EGOMOTION] = _zip("labels", EGOMOTION, {"egomotion": "{clip_id}.egomotion.parquet"})
    return out


FEATURES: dict[str, Feature] = _all_features()
assert len(FEATURES) == 36, len(FEATURES)


def features_csv_rows() -> list[dict[str, str]]:
    """Rows of `features.csv` as the dataset ships it (JSON member templates, empty for parquet)."""
    return [
        {
            "feature": f.name,
            "directory": f.directory,
            "chunk_path": f.chunk_path,
            "clip_files_in_zip": json.dumps(f.clip_files_in_zip) if f.is_zip else "",
        }
        for f in FEATURES.values()
    ]


def load_features_csv(path: str) -> dict[str, Feature]:
    """Parse a dataset's own `features.csv`: the authoritative map of paths and member names."""
    import pandas as pd

    df = pd.read_csv(path, keep_default_na=False)
    missing = {"feature", "directory", "chunk_path", "clip_files_in_zip"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: features.csv lacks columns {sorted(missing)}; is this a PAI dataset root?")
    out = {}
    for row in df.itertuples(index=False):
        members = json.loads(row.clip_files_in_zip) if row.clip_files_in_zip else None
        feat = Feature(row.feature, row.directory, row.chunk_path, members)
        # the paths this file names are opened below the dataset root: none may leave it
        for what, rel in (("chunk_path", feat.path(0)),
                          *((f"member {k}", feat.members(_PROBE_CLIP)[k]) for k in (members or {}))):
            if (why := relative_path_problem(rel)) is not None:
                raise ValueError(f"{path}: feature {row.feature!r} {what}: {why}; this features.csv is damaged or "
                                 "hostile: restore the dataset's own")
        out[row.feature] = feat
    return out


_PROBE_CLIP = "00000000-0000-4000-8000-000000000000"


def chunk_key(chunk_id: int) -> str:
    """Dagster partition key and lake `chunk` value of a chunk."""
    return f"chunk_{chunk_id:04d}"


def chunk_id_of(key: str) -> int:
    """The chunk id of a partition key in its one canonical form: 'chunk_0' or 'chunk_00000' would
    alias chunk_0000 and index its clips twice under two partitions."""
    digits = key[6:] if key.startswith("chunk_") else ""
    if not (digits.isascii() and digits.isdigit()) or chunk_key(int(digits)) != key:
        hint = f" (did you mean {chunk_key(int(digits))!r}?)" if digits.isascii() and digits.isdigit() else ""
        raise ValueError(f"bad chunk partition key {key!r}: expected 'chunk_NNNN' with at least 4 digits and no "
                         f"extra leading zeros, e.g. 'chunk_0000'{hint}")
    return int(digits)
