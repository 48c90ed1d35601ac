"""Data-QA suites: what each lake table must satisfy, declared as great-expectations 1.x expectations.

A suite is declared here without importing GE (its import takes 5-15 s); `qa.validate` builds the
expectations when it runs. Each check runs on a *view* of the table: its rows ("rows", with list
columns replaced by their lengths) or a derived frame for what GE cannot say about raw rows:
timestamp order within a clip, frame coverage per clip, the sample count inside each shard file.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.request import SPEED_BANDS
from core.vocab import META_ACTIONS
from lake import tables as T
from lake.tables import Table
from transforms.ids import DATA_SPLITS as SPLITS
from transforms.index import (
    CAMERA_HZ,
    DURATION_S,
    EGOMOTION_HZ,
    MAX_ACCEL_MPS2,
    MAX_EGO_GAP_US,
    MAX_SPEED_MPS,
    MIN_CAMERA_SPAN,
    MIN_FRAME_COVERAGE,
)
from transforms.unicycle import UnicycleParams

MAX_FIT_MEAN_ERR_M = 0.5  # the (a, κ) fit must retrace the logged poses (typical: millimetres)
MAX_FIT_MAX_ERR_M = 2.0
MIN_V0_MPS = -1.0  # slow reversing at t0 is real driving (flagged `reversing`), faster is a sign error
_PARAMS = UnicycleParams()


@dataclass(frozen=True)
class Inputs:
    """What a view may need beyond the table itself."""

    related: Mapping[str, pa.Table] = field(default_factory=dict)  # other tables, by name
    shard_root: Path | None = None  # the lake's shards/ folder


View = Callable[[pa.Table, Inputs], pd.DataFrame]


@dataclass(frozen=True)
class Check:
    name: str  # what a reader of the report sees
    expectation: str  # a GE 1.x expectation class in great_expectations.expectations
    kwargs: Mapping[str, object]
    view: str = "rows"


@dataclass(frozen=True)
class Suite:
    table: Table
    checks: tuple[Check, ...]
    blocking: bool  # a failure must stop the downstream assets of the run (bad data never reaches training)
    views: Mapping[str, View] = field(default_factory=dict)  # beyond "rows"
    inputs: tuple[Table, ...] = ()  # tables the views read besides this one

    def __post_init__(self) -> None:
        unknown = {c.view for c in self.checks} - {"rows", "table", *self.views}
        assert not unknown, f"{self.table.name}: checks on undefined views {unknown}"
        names = [c.name for c in self.checks]
        assert len(names) == len(set(names)), f"{self.table.name}: duplicate check names"


# ---------------------------------------------------------------- building blocks


def rows_view(data: pa.Table) -> pd.DataFrame:
    """The table as a frame, list columns replaced by their lengths (GE checks scalars)."""
    cols = {}
    for name in data.column_names:
        col = data.column(name)
        cols[name] = pc.list_value_length(col) if pa.types.is_list(col.type) else col
    return pa.table(cols).to_pandas() if cols else pd.DataFrame()


def schema_checks(table: Table) -> tuple[Check, ...]:
    """Columns in order, required columns non-null, the key unique."""
    checks = [Check("columns match the schema", "ExpectTableColumnsToMatchOrderedList",
                    {"column_list": list(table.schema.names)}, view="table")]
    checks += [Check(f"{f.name} not null", "ExpectColumnValuesToNotBeNull", {"column": f.name})
               for f in table.schema if not f.nullable and f.name not in table.partition_by]
    if len(table.key) == 1:
        checks.append(Check(f"{table.key[0]} unique", "ExpectColumnValuesToBeUnique", {"column": table.key[0]}))
    elif table.key:
        checks.append(Check(f"key ({', '.join(table.key)}) unique", "ExpectCompoundColumnsToBeUnique",
                            {"column_list": list(table.key)}))
    return tuple(checks)


def between(column: str, lo: float | None, hi: float | None, name: str, *, view: str = "rows",
            mostly: float | None = None) -> Check:
    kwargs: dict[str, object] = {"column": column, "min_value": lo, "max_value": hi}
    if mostly is not None:
        kwargs["mostly"] = mostly
    return Check(name, "ExpectColumnValuesToBeBetween", kwargs, view)


def in_set(column: str, values: tuple[object, ...], name: str, *, view: str = "rows") -> Check:
    return Check(name, "ExpectColumnValuesToBeInSet", {"column": column, "value_set": list(values)}, view)


def not_null(columns: tuple[str, ...], *, view: str = "rows") -> tuple[Check, ...]:
    # pandas reads NaN as missing: this also catches NaN physics
    return tuple(Check(f"{c} present (not null/NaN)", "ExpectColumnValuesToNotBeNull", {"column": c}, view)
                 for c in columns)


def _steps_within_clip(df: pd.DataFrame, time_col: str) -> pd.Series:
    """Time step to the previous row of the same clip, in table order (NaN on a clip's first row)."""
    return df.groupby("clip_id", sort=False)[time_col].diff()


# ---------------------------------------------------------------- views


def _egomotion_rows(data: pa.Table, _: Inputs) -> pd.DataFrame:
    df = rows_view(data)
    df["speed_mps"] = np.hypot(df["vx"], df["vy"])
    df["q_norm"] = np.sqrt(df["qx"] ** 2 + df["qy"] ** 2 + df["qz"] ** 2 + df["qw"] ** 2)
    df["dt_us"] = _steps_within_clip(df, "timestamp")
    return df


def _frames_rows(data: pa.Table, _: Inputs) -> pd.DataFrame:
    df = rows_view(data)
    df["dt_us"] = _steps_within_clip(df, "timestamp_us")
    return df


def _frame_coverage(data: pa.Table, inputs: Inputs) -> pd.DataFrame:
    """Per usable clip of the chunk: frames present / frames its camera span implies at its rate.

    A clip the index kept but whose frames are missing gets coverage 0, not a silent pass.
    """
    clips = inputs.related["clips"].to_pandas()
    clips = clips[clips["status"] == "ok"]
    counts = data.group_by("clip_id").aggregate([([], "count_all")]).to_pandas()
    df = clips[["clip_id", "camera_start_us", "camera_end_us", "fps"]].merge(counts, on="clip_id", how="left")
    expected = (df["camera_end_us"] - df["camera_start_us"]) / 1e6 * df["fps"] + 1
    df["coverage"] = df["count_all"].fillna(0) / expected
    return df


def _usable_clips(data: pa.Table, _: Inputs) -> pd.DataFrame:
    df = rows_view(data)
    df = df[df["status"] == "ok"].copy()
    df["camera_span_ratio"] = ((df["camera_end_us"] - df["camera_start_us"])
                               / (df["egomotion_end_us"] - df["egomotion_start_us"]))
    return df


def _list_stats(col: pa.ChunkedArray) -> pd.DataFrame:
    """Per row of a list column: min, max and the count of non-finite values (NaN rows for empty lists)."""
    flat = pa.table({"row": pc.list_parent_indices(col), "v": pc.list_flatten(col)})
    flat = flat.append_column("bad", pc.cast(pc.invert(pc.is_finite(flat.column("v"))), pa.int64()))
    agg = flat.group_by("row").aggregate([("v", "min"), ("v", "max"), ("bad", "sum")]).to_pandas()
    return agg.set_index("row").reindex(range(len(col)))


def _target_rows(data: pa.Table, _: Inputs) -> pd.DataFrame:
    df = rows_view(data)
    for col in ("accel_mps2", "curvature_1pm"):
        stats = _list_stats(data.column(col))
        df[f"{col}_min"], df[f"{col}_max"] = stats["v_min"].to_numpy(), stats["v_max"].to_numpy()
        df[f"{col}_nonfinite"] = stats["bad_sum"].fillna(0).astype(int).to_numpy()
    return df


def _shard_files(data: pa.Table, inputs: Inputs) -> pd.DataFrame:
    """Per shard of the manifest: is the file there, its size, and how many samples it really holds."""
    if inputs.shard_root is None:
        raise ValueError("shard_manifest QA needs Inputs.shard_root (the lake's shards/ folder)")
    rows = []
    for rec in data.select(["path", "samples", "bytes"]).to_pylist():
        path = inputs.shard_root / rec["path"]
        found, size, in_tar = path.is_file(), -1, -1
        if found:
            size = path.stat().st_size
            try:
                with tarfile.open(path) as tar:
                    # a sample is the files sharing a key: "<key>.jpg", "<key>.json", ...
                    in_tar = len({m.name.split(".", 1)[0] for m in tar.getmembers() if m.isfile()})
            except tarfile.TarError:
                in_tar = -1
        rows.append({**rec, "file_found": found, "bytes_on_disk": size, "samples_in_tar": in_tar})
    return pd.DataFrame(rows, columns=["path", "samples", "bytes", "file_found", "bytes_on_disk", "samples_in_tar"])


# ---------------------------------------------------------------- suites

_EVAL_SCORES = ("nc", "dac", "ddc", "tlc", "ttc", "ep", "lk", "c", "hc", "ec", "pdms", "epdms")

SUITES: dict[str, Suite] = {s.table.name: s for s in (
    Suite(T.CHUNKS, (
        *schema_checks(T.CHUNKS),
        between("bytes", 1, None, "files not empty"),
        Check("sha256 is 64 hex", "ExpectColumnValuesToMatchRegex", {"column": "sha256", "regex": "^[0-9a-f]{64}$"}),
        in_set("source", ("twin", "mirror", "hub"), "known source"),
    ), blocking=True),
    Suite(T.CLIPS, (
        *schema_checks(T.CLIPS),
        in_set("status", ("ok", "quarantined"), "status vocabulary"),
        # a quarantined clip keeps the split it was listed with, the evidence of why
        in_set("split", SPLITS, "split vocabulary", view="usable"),
        Check("at least one usable clip", "ExpectTableRowCountToBeBetween", {"min_value": 1}, "usable"),
        between("duration_s", *DURATION_S, f"duration {DURATION_S[0]:g}..{DURATION_S[1]:g} s", view="usable"),
        between("fps", *CAMERA_HZ, f"camera rate {CAMERA_HZ[0]:g}..{CAMERA_HZ[1]:g} Hz", view="usable"),
        between("egomotion_hz", *EGOMOTION_HZ, f"egomotion rate {EGOMOTION_HZ[0]:g}..{EGOMOTION_HZ[1]:g} Hz",
                view="usable"),
        between("camera_span_ratio", MIN_CAMERA_SPAN, None, f"camera covers >= {MIN_CAMERA_SPAN:.0%} of the egomotion span",
                view="usable"),
        in_set("has_front_camera", (True,), "usable clips have the front camera", view="usable"),
        in_set("has_egomotion", (True,), "usable clips have egomotion", view="usable"),
    ), blocking=True, views={"usable": _usable_clips}),
    Suite(T.EGOMOTION, (
        *schema_checks(T.EGOMOTION),
        *not_null(("x", "y", "qw", "vx", "vy", "ax", "curvature")),
        between("dt_us", 1, MAX_EGO_GAP_US, f"timestamps strictly increasing per clip, gaps < {MAX_EGO_GAP_US / 1e6:g} s"),
        between("speed_mps", 0.0, MAX_SPEED_MPS, f"speed 0..{MAX_SPEED_MPS:g} m/s"),
        between("ax", -MAX_ACCEL_MPS2, MAX_ACCEL_MPS2, f"longitudinal accel within ±{MAX_ACCEL_MPS2:g} m/s²"),
        # curvature is ill-conditioned at a standstill: a few spikes are tolerated
        between("curvature", -1.0, 1.0, "curvature within ±1 1/m", mostly=0.999),
        between("q_norm", 0.99, 1.01, "orientation quaternions are unit"),
    ), blocking=True, views={"rows": _egomotion_rows}),
    Suite(T.FRAMES, (
        *schema_checks(T.FRAMES),
        between("dt_us", 1, None, "frame timestamps strictly increasing per clip"),
        between("speed_mps", 0.0, MAX_SPEED_MPS, f"speed at the frame 0..{MAX_SPEED_MPS:g} m/s"),
        between("coverage", MIN_FRAME_COVERAGE, 1.05, f"front-camera frame coverage >= {MIN_FRAME_COVERAGE:.0%} per clip",
                view="coverage"),
    ), blocking=True, views={"rows": _frames_rows, "coverage": _frame_coverage}, inputs=(T.CLIPS,)),
    Suite(T.UNICYCLE_TARGETS, (
        *schema_checks(T.UNICYCLE_TARGETS),
        in_set("split", SPLITS, "split vocabulary"),
        *(in_set(c, (n,), f"{c} holds {n} values") for c, n in (
            ("accel_mps2", 64), ("curvature_1pm", 64), ("future_yaw", 64), ("history_yaw", 16),
            ("future_xyz", 192), ("history_xyz", 48))),
        in_set("accel_mps2_nonfinite", (0,), "accelerations finite"),
        in_set("curvature_1pm_nonfinite", (0,), "curvatures finite"),
        between("accel_mps2_min", -_PARAMS.accel_bound, None, f"accel >= -{_PARAMS.accel_bound:g} m/s²"),
        between("accel_mps2_max", None, _PARAMS.accel_bound, f"accel <= {_PARAMS.accel_bound:g} m/s²"),
        between("curvature_1pm_min", -_PARAMS.curvature_bound, None, f"curvature >= -{_PARAMS.curvature_bound:g} 1/m"),
        between("curvature_1pm_max", None, _PARAMS.curvature_bound, f"curvature <= {_PARAMS.curvature_bound:g} 1/m"),
        between("v0_mps", MIN_V0_MPS, MAX_SPEED_MPS, f"speed at t0 {MIN_V0_MPS:g}..{MAX_SPEED_MPS:g} m/s"),
        between("rt_mean_err_m", 0.0, MAX_FIT_MEAN_ERR_M, f"fit mean error <= {MAX_FIT_MEAN_ERR_M:g} m"),
        between("rt_max_err_m", 0.0, MAX_FIT_MAX_ERR_M, f"fit max error <= {MAX_FIT_MAX_ERR_M:g} m"),
    ), blocking=True, views={"rows": _target_rows}),
    Suite(T.COMMANDER_LABELS, (
        *schema_checks(T.COMMANDER_LABELS),
        in_set("meta_action", META_ACTIONS, "meta-action vocabulary"),
        Check("command 2..200 characters", "ExpectColumnValueLengthsToBeBetween",  # "Go" is a command
              {"column": "command", "min_value": 2, "max_value": 200}),
        Check("trace is JSON", "ExpectColumnValuesToBeJsonParseable", {"column": "trace"}),
        between("confidence", 0.0, 1.0, "confidence 0..1"),
    ), blocking=True),
    Suite(T.SHARD_MANIFEST, (
        *schema_checks(T.SHARD_MANIFEST),
        in_set("split", SPLITS, "split vocabulary"),
        between("samples", 1, None, "shards not empty"),
        Check("sha256 is 64 hex", "ExpectColumnValuesToMatchRegex", {"column": "sha256", "regex": "^[0-9a-f]{64}$"}),
        in_set("file_found", (True,), "shard files exist", view="files"),
        Check("samples in each tar equal the manifest", "ExpectColumnPairValuesToBeEqual",
              {"column_A": "samples", "column_B": "samples_in_tar"}, "files"),
        Check("file sizes equal the manifest", "ExpectColumnPairValuesToBeEqual",
              {"column_A": "bytes", "column_B": "bytes_on_disk"}, "files"),
    ), blocking=True, views={"files": _shard_files}),
    Suite(T.QUARANTINE, (
        *schema_checks(T.QUARANTINE),
        in_set("stage", ("clip_index", "unicycle_targets", "webdataset_shards", "commander_labels"), "stage vocabulary"),
    ), blocking=False),
    Suite(T.TRAINING_RUNS, (
        *schema_checks(T.TRAINING_RUNS),
        between("steps", 1, None, "trained at least one step"),
        *not_null(("val_ade_6p4s_m",)),
        between("val_ade_6p4s_m", 0.0, 100.0, "val ADE@6.4 s 0..100 m"),
    ), blocking=False),
    Suite(T.TRAINING_METRICS, (
        *schema_checks(T.TRAINING_METRICS),
        *not_null(("value",)),
    ), blocking=False),
    Suite(T.EVAL_WINDOWS, (
        *schema_checks(T.EVAL_WINDOWS),
        *(between(m, 0.0, 1.0, f"{m} in 0..1") for m in _EVAL_SCORES),
        between("ade_6p4s", 0.0, None, "ADE >= 0"),
        in_set("pred_xy", (128,), "plans hold 64 (x, y)"),
    ), blocking=False),
    Suite(T.EVAL_RUNS, (
        *schema_checks(T.EVAL_RUNS),
        between("windows", 1, None, "scored at least one window"),
        *(between(m, 0.0, 1.0, f"{m} in 0..1") for m in ("pdms", "epdms")),
    ), blocking=False),
    Suite(T.EVAL_STATS, (
        *schema_checks(T.EVAL_STATS),
        *not_null(("mean", "lo", "hi")),
        between("clips", 1, None, "every estimate has a clip"),
        in_set("group_kind", ("all", "scenario", "meta_action"), "group kinds"),
    ), blocking=False),
    Suite(T.HARD_EXAMPLES, (
        *schema_checks(T.HARD_EXAMPLES),
        between("severity", 0.0, None, "severity >= 0"),
        in_set("speed_band", tuple(name for name, _, _ in SPEED_BANDS), "speed bands"),
        in_set("baseline", ("constant_velocity", "constant_controls"), "judged against a baseline"),
        *(between(m, 0.0, 1.0, f"{m} in 0..1") for m in ("agent_epdms", "baseline_epdms")),
    ), blocking=False),
    Suite(T.DATA_REQUESTS, (
        *schema_checks(T.DATA_REQUESTS),
        between("windows", 1, None, "asks for at least one window"),
        between("hard_windows", 0, None, "hard windows >= 0"),
    ), blocking=False),
    Suite(T.ACQUISITIONS, (
        *schema_checks(T.ACQUISITIONS),
        in_set("method", ("twin", "triage", "reweight"), "acquisition methods"),
        between("bytes_fetched", 0, None, "bytes fetched >= 0"),
    ), blocking=False),
    Suite(T.CLOSED_LOOP_ROUTES, (
        *schema_checks(T.CLOSED_LOOP_ROUTES),
        *(between(m, 0.0, 1.0, f"{m} in 0..1") for m in ("route_completion", "infraction_penalty", "driving_score",
                                                          "offroad_share", "wrong_way_share", "command_success",
                                                          "comfort", "stale_share")),
        between("steps", 1, None, "every route ran at least one step"),
        in_set("terminated", ("time", "goal", "route_deviation"), "how a route ends"),
    ), blocking=False),
    Suite(T.RUNS, (
        *schema_checks(T.RUNS),
        *(between(m, 0.0, 1.0, f"{m} in 0..1") for m in ("epdms", "epdms_lo", "epdms_hi", "pdms", "driving_score")),
        between("ade_6p4s", 0.0, None, "ADE >= 0"),
    ), blocking=False),
)}
