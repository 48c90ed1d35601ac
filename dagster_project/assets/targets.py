"""Gold: per-window (a, κ) ground truth from egomotion (the unicycle fit)."""

from typing import Any

import dagster as dg
import numpy as np

from dagster_project.assets._meta import png, preview
from dagster_project.resources import LakeResource
from dagster_project.stages import chunk_asset
from engines import Engine
from engines.stage import StageJob, StageRun
from lake import tables as T
from transforms.plots import histograms_png
from transforms.unicycle import TARGETS_STAGE, TargetsPlan, UnicycleParams


def _job(context: dg.AssetExecutionContext, lake: LakeResource, key: str, config: Any) -> tuple[StageJob, Engine | None]:
    clips = lake.read(T.CLIPS, chunk=key, where={"status": "ok"}, columns=["clip_id"])
    return StageJob(TargetsPlan(key, UnicycleParams()), clips.column("clip_id").to_pylist()), None


def _summary(key: str, run: StageRun, job: StageJob) -> dict[str, Any]:
    t = run.outputs["targets"]
    err = t.column("rt_mean_err_m").to_numpy() if t.num_rows else np.zeros(0)
    flat = {c: np.concatenate(t.column(c).to_numpy(zero_copy_only=False)) if t.num_rows else np.zeros(0)
            for c in ("accel_mps2", "curvature_1pm")}
    return {
        "windows": t.num_rows, "windows_quarantined": run.quarantine.num_rows,
        "delta_version": run.versions[T.UNICYCLE_TARGETS.name],
        "rt_mean_err_m_median": float(np.median(err)) if len(err) else float("nan"),
        "rt_mean_err_m_p95": float(np.percentile(err, 95)) if len(err) else float("nan"),
        **{f"flag_{f}": int(np.sum(t.column(f).to_numpy(zero_copy_only=False))) for f in ("low_speed", "reversing", "clipped")},
        "histograms": png(histograms_png({"a [m/s²]": flat["accel_mps2"], "κ [1/m]": flat["curvature_1pm"],
                                          "round-trip mean error [m]": err}, title=key), "a, κ and error histograms"),
        "preview": preview(t, 5, ["clip_id", "t0_us", "v0_mps", "rt_mean_err_m", "low_speed", "clipped"]),
    }


unicycle_targets, unicycle_targets_checks = chunk_asset(
    TARGETS_STAGE, group="targets", deps=["clip_index", "egomotion"], job=_job, summary=_summary,
    description="Per window (clip, t0 every 0.5 s): 64 (a, κ) at 10 Hz fitted as Alpamayo-R1 does, and the poses.")
