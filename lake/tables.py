"""The lakehouse's tables: one pyarrow schema constant each, partitioned by chunk.

Timestamps are int64 microseconds (PAI's own convention); a timezone-naive pa.timestamp would
silently upgrade the Delta protocol to reader 3 / writer 7, which older delta-spark cannot read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

Layer = Literal["bronze", "silver", "gold", "eval", "qa"]


@dataclass(frozen=True)
class Table:
    name: str
    layer: Layer
    schema: pa.Schema
    partition_by: tuple[str, ...] = ("chunk",)
    key: tuple[str, ...] = ()  # unique per row: checked on write, used to sort for comparisons

    def __post_init__(self) -> None:
        missing = [c for c in (*self.partition_by, *self.key) if c not in self.schema.names]
        assert not missing, f"{self.name}: partition/key columns {missing} not in schema"


def _s(*fields: tuple[str, pa.DataType] | pa.Field) -> pa.Schema:
    return pa.schema([f if isinstance(f, pa.Field) else pa.field(f[0], f[1], nullable=True) for f in fields])


def _req(name: str, typ: pa.DataType) -> pa.Field:
    return pa.field(name, typ, nullable=False)


CHUNKS = Table(
    "chunks", "bronze",
    _s(_req("chunk", pa.string()), _req("feature", pa.string()), _req("path", pa.string()),
       ("local_path", pa.string()), _req("bytes", pa.int64()), _req("sha256", pa.string()),
       _req("source", pa.string()), ("revision", pa.string())),
    key=("chunk", "path"),
)

CLIPS = Table(
    "clips", "silver",
    _s(_req("chunk", pa.string()), _req("clip_id", pa.string()), ("split", pa.string()),
       ("country", pa.string()), ("platform_class", pa.string()), ("month", pa.int64()),
       ("hour_of_day", pa.int64()), ("duration_s", pa.float64()), ("frame_count", pa.int64()),
       ("fps", pa.float64()), ("egomotion_hz", pa.float64()), ("egomotion_start_us", pa.int64()),
       ("egomotion_end_us", pa.int64()), ("camera_start_us", pa.int64()), ("camera_end_us", pa.int64()),
       ("image_width", pa.int64()), ("image_height", pa.int64()),
       ("has_front_camera", pa.bool_()), ("has_egomotion", pa.bool_()), ("has_calibration", pa.bool_()),
       ("has_lidar", pa.bool_()), ("has_radar", pa.bool_()),
       _req("status", pa.string()), ("status_reason", pa.string())),
    key=("clip_id",),
)

EGOMOTION = Table(
    "egomotion", "silver",
    _s(_req("chunk", pa.string()), _req("clip_id", pa.string()), _req("timestamp", pa.int64()),
       ("qx", pa.float64()), ("qy", pa.float64()), ("qz", pa.float64()), ("qw", pa.float64()),
       ("x", pa.float64()), ("y", pa.float64()), ("z", pa.float64()),
       ("vx", pa.float64()), ("vy", pa.float64()), ("vz", pa.float64()),
       ("ax", pa.float64()), ("ay", pa.float64()), ("az", pa.float64()), ("curvature", pa.float64())),
    key=("clip_id", "timestamp"),
)

FRAMES = Table(
    "frames", "silver",
    _s(_req("chunk", pa.string()), _req("clip_id", pa.string()), _req("frame_index", pa.int64()),
       _req("timestamp_us", pa.int64()), ("x_m", pa.float64()), ("y_m", pa.float64()),
       ("yaw_rad", pa.float64()), ("speed_mps", pa.float64())),
    key=("clip_id", "frame_index"),
)

_F64S = pa.list_(pa.float64())

UNICYCLE_TARGETS = Table(
    "unicycle_targets", "gold",
    # per window (clip_id, t0): controls in physical units and normalised, and the poses they fit,
    # in the ego frame at t0; xyz lists are row-major (16 x 3 history, 64 x 3 future)
    _s(_req("chunk", pa.string()), _req("clip_id", pa.string()), _req("t0_us", pa.int64()), ("split", pa.string()),
       ("accel_mps2", _F64S), ("curvature_1pm", _F64S), ("accel_norm", _F64S), ("curvature_norm", _F64S),
       ("v0_mps", pa.float64()), ("history_xyz", _F64S), ("history_yaw", _F64S), ("future_xyz", _F64S),
       ("future_yaw", _F64S), ("rt_mean_err_m", pa.float64()), ("rt_max_err_m", pa.float64()),
       ("low_speed", pa.bool_()), ("reversing", pa.bool_()), ("clipped", pa.bool_()), ("params", pa.string())),
    key=("clip_id", "t0_us"),
)

COMMANDER_LABELS = Table(
    "commander_labels", "gold",
    # a new labeler version adds rows beside the old ones: writes replace (chunk, labeler, version)
    _s(_req("chunk", pa.string()), _req("clip_id", pa.string()), _req("t0_us", pa.int64()),
       _req("labeler", pa.string()), _req("labeler_version", pa.string()), _req("meta_action", pa.string()),
       _req("command", pa.string()), _req("trace", pa.string()), ("confidence", pa.float64())),
    key=("clip_id", "t0_us", "labeler", "labeler_version"),
)

SHARD_MANIFEST = Table(
    "shard_manifest", "gold",
    # one row per WebDataset shard; paths are relative to the lake's shards/ folder
    _s(_req("chunk", pa.string()), _req("path", pa.string()), _req("split", pa.string()),
       _req("samples", pa.int64()), _req("bytes", pa.int64()), _req("sha256", pa.string()),
       ("first_key", pa.string()), ("last_key", pa.string()), _req("dataset_version", pa.string()),
       ("labeler", pa.string()), ("labeler_version", pa.string()), ("config", pa.string())),
    key=("path",),
)

QUARANTINE = Table(
    "quarantine", "qa",
    # one schema for every stage's set-aside clips and windows; rows are built by `quarantine_rows`
    _s(_req("chunk", pa.string()), _req("clip_id", pa.string()), _req("stage", pa.string()),
       _req("kind", pa.string()), _req("reason", pa.string())),
)


def quarantine_rows(chunk: str, stage: str, rows: Sequence[tuple[str, str, str]]) -> pa.Table:
    """`quarantine` rows of one chunk and stage from (clip_id, kind, reason) triples."""
    return pa.table({"chunk": [chunk] * len(rows), "clip_id": [r[0] for r in rows], "stage": [stage] * len(rows),
                     "kind": [r[1] for r in rows], "reason": [r[2] for r in rows]}, schema=QUARANTINE.schema)


def window_reason(t0_us: int, reason: str) -> str:
    """A window's quarantine reason: its t0 within the clip, then why."""
    return f"t0={t0_us / 1e6:.1f} s: {reason}"

TRAINING_METRICS = Table(
    "training_metrics", "eval",
    # one row per (run, step, split, metric): train loss/lr/grad norm every step, val loss and
    # displacement errors (agent and constant velocity) every val_every steps
    _s(_req("run_id", pa.string()), _req("step", pa.int64()), _req("split", pa.string()), _req("name", pa.string()),
       _req("value", pa.float64()), ("wall_s", pa.float64())),
    partition_by=("run_id",),
    key=("run_id", "step", "split", "name"),
)

TRAINING_RUNS = Table(
    "training_runs", "eval",
    # one row per training run: where its checkpoint is and what it was trained on
    _s(_req("run_id", pa.string()), _req("checkpoint", pa.string()), _req("profile", pa.string()),
       _req("data_version", pa.string()), _req("steps", pa.int64()), ("val_ade_6p4s_m", pa.float64()),
       ("cv_ade_6p4s_m", pa.float64()), ("val_windows", pa.int64()), ("train_wall_s", pa.float64()),
       ("samples_per_s", pa.float64()), ("trainable_params", pa.int64()), ("total_params", pa.int64()),
       _req("config", pa.string()), _req("finished_us", pa.int64())),
    partition_by=("run_id",),
    key=("run_id",),
)

EVAL_METRICS = ("ade_1s", "fde_1s", "ade_2s", "fde_2s", "ade_3s", "fde_3s", "ade_6p4s", "fde_6p4s", "nc", "dac",
                 "ddc", "tlc", "ttc", "ep", "lk", "c", "hc", "ec", "pdms", "epdms", "progress_m")

EVAL_WINDOWS = Table(
    "eval_windows", "eval",
    # one row per (evaluated run, policy, window): NAVSIM-style metrics (null where they cannot be
    # computed: no twin ground truth, no earlier window for EC) and the policy's 10 Hz plan, ego frame
    # at t0, row-major (64 x 2)
    _s(_req("run_id", pa.string()), _req("policy", pa.string()), _req("chunk", pa.string()),
       _req("clip_id", pa.string()), _req("t0_us", pa.int64()), _req("split", pa.string()),
       ("command", pa.string()), ("meta_action", pa.string()), *((m, pa.float64()) for m in EVAL_METRICS),
       ("human_filtered", pa.string()), ("pred_xy", _F64S), ("pred_yaw", _F64S)),
    partition_by=("run_id",),
    key=("run_id", "policy", "clip_id", "t0_us"),
)

EVAL_RUNS = Table(
    "eval_runs", "eval",
    # one row per (evaluated run, policy, split, with "all" over the splits): mean metrics
    _s(_req("run_id", pa.string()), _req("policy", pa.string()), _req("split", pa.string()),
       ("checkpoint", pa.string()), _req("data_version", pa.string()), _req("windows", pa.int64()),
       ("scored_windows", pa.int64()), *((m, pa.float64()) for m in EVAL_METRICS),
       ("config", pa.string()), _req("finished_us", pa.int64())),
    partition_by=("run_id",),
    key=("run_id", "policy", "split"),
)

EVAL_STATS = Table(
    "eval_stats", "eval",
    # one row per (evaluated run, split, group, policy, metric): the mean over the group's windows with
    # a 95% interval resampling clips; for the agent (vs the strongest baseline on that metric in that
    # group) and the wrong-command ablation (vs the agent), the paired difference this policy − `vs`
    # (`diff_*`) over the same windows; group_kind: all | scenario | meta_action
    _s(_req("run_id", pa.string()), _req("split", pa.string()), _req("group_kind", pa.string()),
       _req("group", pa.string()), _req("policy", pa.string()), _req("metric", pa.string()),
       _req("mean", pa.float64()), ("lo", pa.float64()), ("hi", pa.float64()), _req("windows", pa.int64()),
       _req("clips", pa.int64()), ("vs", pa.string()), ("diff_mean", pa.float64()), ("diff_lo", pa.float64()),
       ("diff_hi", pa.float64()), _req("finished_us", pa.int64())),
    partition_by=("run_id",),
    key=("run_id", "split", "group_kind", "group", "policy", "metric"),
)

QA_RESULTS = Table(
    "qa_results", "qa",
    # one row per expectation of the latest data-QA validation of a (table, partition): what the
    # asset checks found, what data_qa_report renders and what training consults before it reads
    # shards; `partition_key` is the chunk, or "all" for tables validated whole
    _s(_req("table_name", pa.string()), _req("partition_key", pa.string()), _req("check", pa.string()),
       _req("expectation", pa.string()), ("column", pa.string()), _req("success", pa.bool_()),
       ("element_count", pa.int64()), ("unexpected_count", pa.int64()), ("observed", pa.string()),
       _req("blocking", pa.bool_()), _req("rows", pa.int64()), _req("validated_us", pa.int64()),
       ("run_id", pa.string())),
    partition_by=("table_name",),
    key=("table_name", "partition_key", "check"),
)

HARD_EXAMPLES = Table(
    "hard_examples", "gold",
    # one row per window of an evaluated run where the agent does worse than the strongest baseline
    # or fails an EPDMS multiplier or sub-score (evals/mining.py): why, and how badly
    _s(_req("run_id", pa.string()), _req("request_id", pa.string()), _req("split", pa.string()),
       _req("chunk", pa.string()), _req("clip_id", pa.string()), _req("t0_us", pa.int64()), ("scenario", pa.string()),
       ("meta_action", pa.string()), ("command", pa.string()), ("v0_mps", pa.float64()), ("speed_band", pa.string()),
       _req("baseline", pa.string()), ("agent_epdms", pa.float64()), ("baseline_epdms", pa.float64()),
       ("agent_ade_6p4s", pa.float64()), ("baseline_ade_6p4s", pa.float64()), _req("reasons", pa.string()),
       ("failed", pa.string()), _req("severity", pa.float64())),
    partition_by=("run_id",),
    key=("run_id", "split", "clip_id", "t0_us"),
)

DATA_REQUESTS = Table(
    "data_requests", "gold",
    # one row per evaluated run: the data request mined from its hard examples (core/request.py JSON)
    _s(_req("request_id", pa.string()), _req("run_id", pa.string()), _req("windows", pa.int64()),
       _req("request", pa.string()), _req("hard_windows", pa.int64()), _req("evaluated_windows", pa.int64()),
       _req("created_us", pa.int64())),
    partition_by=("run_id",),
    key=("run_id",),
)

ACQUISITIONS = Table(
    "acquisitions", "gold",
    # lineage: one row per clip acquired to answer a request (twin chunk by request, or PAI triage),
    # or per reweighting of a request; which request and evaluated run caused it, and what it cost
    _s(_req("request_id", pa.string()), _req("run_id", pa.string()), _req("method", pa.string()),
       _req("source", pa.string()), ("chunk", pa.string()), ("clip_id", pa.string()), ("scenario", pa.string()),
       ("meta_actions", pa.string()), ("match_score", pa.float64()), ("windows", pa.int64()),
       ("bytes_fetched", pa.int64()), ("bytes_whole", pa.int64()), ("note", pa.string()),
       _req("acquired_us", pa.int64())),
    partition_by=("request_id",),
    key=("request_id", "method", "chunk", "clip_id"),
)

CLOSED_LOOP_ROUTES = Table(
    "closed_loop_routes", "eval",
    # one row per (evaluated run, policy, route) of the closed-loop evaluation (evals/closed_loop/):
    # route completion, infractions, the CARLA-style driving score, command success, comfort, shield
    # interventions (JSON log), stale steps and planning latency; `video` is the route's GIF, if made;
    # `clip_seed` is the route world's seed in decimal (a 64-bit unsigned hash: it does not fit int64)
    _s(_req("run_id", pa.string()), _req("policy", pa.string()), _req("route_id", pa.string()),
       _req("scenario", pa.string()), _req("clip_seed", pa.string()), ("mission", pa.string()),
       _req("seconds", pa.float64()), _req("terminated", pa.string()), _req("route_completion", pa.float64()),
       _req("infraction_penalty", pa.float64()), _req("driving_score", pa.float64()), _req("collisions", pa.int64()),
       ("collided_track_ids", pa.string()), _req("offroad_share", pa.float64()), _req("wrong_way_share", pa.float64()),
       _req("stop_lines_run", pa.int64()), ("commands", pa.string()), _req("maneuvers", pa.int64()),
       _req("maneuvers_done", pa.int64()), ("command_success", pa.float64()), ("comfort", pa.float64()),
       _req("interventions", pa.int64()), _req("interventions_per_min", pa.float64()), ("intervention_log", pa.string()),
       _req("steps", pa.int64()), _req("stale_steps", pa.int64()), _req("stale_share", pa.float64()),
       _req("plans", pa.int64()), ("plan_p50_ms", pa.float64()), ("plan_p95_ms", pa.float64()),
       ("render_ms", pa.float64()), _req("distance_m", pa.float64()), ("video", pa.string()),
       _req("config", pa.string()), _req("finished_us", pa.int64())),
    partition_by=("run_id",),
    key=("run_id", "policy", "route_id"),
)

RUNS = Table(
    "runs", "eval",
    # the leaderboard, one row per (evaluated run, policy), rebuilt whole from the eval tables by the
    # `runs` asset: NAVSIM-style scores on the run's headline split with 95% intervals over clips, the
    # closed loop's driving score with its interval over routes, and what the run trained on
    _s(_req("run_id", pa.string()), _req("policy", pa.string()), ("split", pa.string()), ("windows", pa.int64()),
       ("clips", pa.int64()), ("epdms", pa.float64()), ("epdms_lo", pa.float64()), ("epdms_hi", pa.float64()),
       ("pdms", pa.float64()), ("ade_6p4s", pa.float64()), ("ade_6p4s_lo", pa.float64()), ("ade_6p4s_hi", pa.float64()),
       ("driving_score", pa.float64()), ("driving_score_lo", pa.float64()), ("driving_score_hi", pa.float64()),
       ("routes", pa.int64()), ("profile", pa.string()), ("steps", pa.int64()), ("train_samples", pa.int64()),
       ("data_version", pa.string()), _req("evaluated_us", pa.int64())),
    partition_by=("run_id",),
    key=("run_id", "policy"),
)

ALL_TABLES = (CHUNKS, CLIPS, EGOMOTION, FRAMES, UNICYCLE_TARGETS, COMMANDER_LABELS, SHARD_MANIFEST, QUARANTINE,
              TRAINING_METRICS, TRAINING_RUNS, EVAL_WINDOWS, EVAL_RUNS, EVAL_STATS, QA_RESULTS, HARD_EXAMPLES,
              DATA_REQUESTS, ACQUISITIONS, CLOSED_LOOP_ROUTES, RUNS)
