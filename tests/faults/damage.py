"""Damage a copy of a PAI-layout twin the way real downloads and hostile mirrors do.

Each function edits one clip (or one metadata file) in place and leaves the others as they were,
so a test can check that only that clip is lost.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import rewrite_zip
from transforms import pai_layout as L


def clip_index(root: Path) -> pd.DataFrame:
    return pd.read_parquet(root / "clip_index.parquet")


def edit_clip_index(root: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    edit(clip_index(root)).to_parquet(root / "clip_index.parquet")


def clips_of(root: Path, chunk_id: int = 0) -> list[str]:
    ci = clip_index(root)
    return sorted(ci.index[ci["chunk"] == chunk_id])


def _zip_path(root: Path, feature: str, chunk_id: int = 0) -> Path:
    return root / L.FEATURES[feature].path(chunk_id)


def edit_member_parquet(root: Path, feature: str, clip: str, alias: str, edit: Callable[[pa.Table], pa.Table]) -> None:
    name = L.FEATURES[feature].members(clip)[alias]

    def change(members: dict[str, bytes]) -> dict[str, bytes]:
        buf = io.BytesIO()
        pq.write_table(edit(pq.read_table(io.BytesIO(members[name]))), buf)
        return {**members, name: buf.getvalue()}

    rewrite_zip(_zip_path(root, feature), change)


def set_split(root: Path, clip: str, split: str) -> None:
    def edit(ci: pd.DataFrame) -> pd.DataFrame:
        ci.loc[clip, "split"] = split
        return ci

    edit_clip_index(root, edit)


def rename_clip(root: Path, clip: str, new_id: str) -> None:
    """Give a clip another id everywhere the dataset names it (index, zip members, calibration)."""
    edit_clip_index(root, lambda ci: ci.rename(index={clip: new_id}))
    for feature in (L.FRONT_CAMERA, L.EGOMOTION):
        rewrite_zip(_zip_path(root, feature), lambda m: {k.replace(clip, new_id): v for k, v in m.items()})
    for feature in (L.CAMERA_INTRINSICS, L.SENSOR_EXTRINSICS, L.VEHICLE_DIMENSIONS):
        path = root / L.FEATURES[feature].path(0)
        df = pd.read_parquet(path)
        df.rename(index={clip: new_id}, level=0 if df.index.nlevels > 1 else None).to_parquet(path)
    for meta in ("metadata/feature_presence.parquet", "metadata/data_collection.parquet"):
        if (root / meta).is_file():
            pd.read_parquet(root / meta).rename(index={clip: new_id}).to_parquet(root / meta)


def remove_clip_files(root: Path, clip: str) -> None:
    """The clip stays in clip_index.parquet; its zip members and calibration rows are gone."""
    for feature in (L.FRONT_CAMERA, L.EGOMOTION):
        rewrite_zip(_zip_path(root, feature), lambda m: {k: v for k, v in m.items() if clip not in k})
    for feature in (L.CAMERA_INTRINSICS, L.SENSOR_EXTRINSICS):
        path = root / L.FEATURES[feature].path(0)
        df = pd.read_parquet(path)
        df[df.index.get_level_values(0) != clip].to_parquet(path)


def egomotion_gap(root: Path, clip: str, start_s: float = 3.0, seconds: float = 5.0) -> None:
    def cut(t: pa.Table) -> pa.Table:
        ts = t.column("timestamp").to_numpy()
        keep = (ts < start_s * 1e6) | (ts >= (start_s + seconds) * 1e6)
        return t.filter(pa.array(keep))

    edit_member_parquet(root, L.EGOMOTION, clip, "egomotion", cut)


def egomotion_column_as_strings(root: Path, clip: str, column: str = "x") -> None:
    def to_str(t: pa.Table) -> pa.Table:
        i = t.schema.get_field_index(column)
        return t.set_column(i, column, pa.array([f"{v:.3f}" for v in t.column(column).to_pylist()]))

    edit_member_parquet(root, L.EGOMOTION, clip, "egomotion", to_str)


def frame_timestamps(root: Path, clip: str, rows: int) -> None:
    """Keep the first `rows` frame times (fewer than the video), or extend them at the same rate (more)."""
    def change(t: pa.Table) -> pa.Table:
        ts = t.column("timestamp").to_numpy()
        if rows <= len(ts):
            return t.slice(0, rows)
        step = int(ts[1] - ts[0])
        more = ts[-1] + step * pa.array(range(1, rows - len(ts) + 1)).to_numpy()
        return pa.table({"timestamp": pa.array(list(ts) + list(more), t.schema.field("timestamp").type)})

    edit_member_parquet(root, L.FRONT_CAMERA, clip, "frame_timestamps", change)


def files_outside(top: Path, allowed: list[Path]) -> set[str]:
    """Every file under `top` that is not under one of `allowed` (to diff before and after a run)."""
    allowed = [a.resolve() for a in allowed]
    out = set()
    for dirpath, _dirs, files in os.walk(top):
        for f in files:
            p = Path(dirpath, f).resolve()
            if not any(a == p or a in p.parents for a in allowed):
                out.add(str(p))
    return out


def chain_assets() -> list:
    from dagster_project.assets import ingest, labels, shards, targets

    return [ingest.raw_chunks, ingest.chunk_index, targets.unicycle_targets, labels.commander_labels,
            shards.webdataset_shards]


def chain_checks(assets: list) -> list:
    """The blocking QA checks of these assets, so a run is gated as in the deployed code location."""
    from dagster_project.checks import qa_checks

    keys = {k for a in assets for k in a.keys}
    return [c for c in qa_checks if all(ck.asset_key in keys for ck in c.check_keys)]
