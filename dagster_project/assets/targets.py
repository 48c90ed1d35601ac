"""Gold: per-window (a, κ) ground truth from egomotion (the unicycle fit)."""

import dagster as dg
import numpy as np

from dagster_project.assets._meta import png, preview, quarantine_rows
from dagster_project.partitions import chunks
from dagster_project.resources import EngineResource, LakeResource
from engines import Input
from lake import tables as T
from transforms.plots import histograms_png
from transforms.unicycle import WINDOW_QUARANTINE, TargetsPlan, UnicycleParams, targets_part

STAGE = "unicycle_targets"


@dg.asset(partitions_def=chunks, group_name="targets", kinds={"delta"}, deps=["clip_index", "egomotion"])
def unicycle_targets(context: dg.AssetExecutionContext, lake: LakeResource,
                     engine: EngineResource) -> dg.MaterializeResult:
    """Per window (clip, t0 every 0.5 s): 64 (a, κ) at 10 Hz fitted as Alpamayo-R1 does, and the poses."""
    key = context.partition_key
    clips = lake.read(T.CLIPS, chunk=key, where={"status": "ok"}, columns=["clip_id"])
    eng = engine.engine()
    context.log.info(f"engine: {eng.describe()}")
    out = eng.map_parts(targets_part, TargetsPlan(key, UnicycleParams()), sorted(clips.column("clip_id").to_pylist()),
                        {"egomotion": Input(T.EGOMOTION, key), "clips": Input(T.CLIPS, key)},
                        {"targets": T.UNICYCLE_TARGETS.schema, "quarantine": WINDOW_QUARANTINE}, root=lake.root)
    t = out["targets"]
    q = [(r["clip_id"], "unusable_window", f"t0={r['t0_us'] / 1e6:.1f} s: {r['reason']}")
         for r in out["quarantine"].to_pylist()]
    for row in q:
        context.log.warning(f"{key}: quarantined window of clip {row[0]}: {row[2]}")
    lake.overwrite_partition(T.QUARANTINE, quarantine_rows(key, STAGE, q), chunk=key, extra={"stage": STAGE}, engine=eng)
    version = lake.overwrite_partition(T.UNICYCLE_TARGETS, t, chunk=key, engine=eng)
    err = t.column("rt_mean_err_m").to_numpy() if t.num_rows else np.zeros(0)
    flat = {c: np.concatenate(t.column(c).to_numpy(zero_copy_only=False)) if t.num_rows else np.zeros(0)
            for c in ("accel_mps2", "curvature_1pm")}
    return dg.MaterializeResult(metadata={
        "windows": t.num_rows, "windows_quarantined": len(q), "delta_version": version,
        "rt_mean_err_m_median": float(np.median(err)) if len(err) else float("nan"),
        "rt_mean_err_m_p95": float(np.percentile(err, 95)) if len(err) else float("nan"),
        **{f"flag_{f}": int(np.sum(t.column(f).to_numpy(zero_copy_only=False))) for f in ("low_speed", "reversing", "clipped")},
        "histograms": png(histograms_png({"a [m/s²]": flat["accel_mps2"], "κ [1/m]": flat["curvature_1pm"],
                                          "round-trip mean error [m]": err}, title=key), "a, κ and error histograms"),
        "preview": preview(t, 5, ["clip_id", "t0_us", "v0_mps", "rt_mean_err_m", "low_speed", "clipped"]),
    })
