"""navsim_eval, pure: score policies on held-out windows the way NAVSIM scores a planner.

Per window and policy: ADE/FDE at 1, 2, 3 and 6.4 s; comfort C (the 4 s plan, PDMS v1), HC (the
logged 1.5 s history padded with the plan) and EC (against the same policy's plan 0.5 s earlier,
the previous window of the clip); and where the twin's ground truth is known, NC, DAC, DDC,
TLC, TTC, EP and LK (evals/pdm_twin.py), the human penalty filter (a sub-score the logged
driver fails is set to 1 for the policies) and the aggregates PDMS and EPDMS (evals/pdm.py).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import webdataset as wds
from PIL import Image

from evals.comfort import extended_comfort, history_comfort, kinematics_from_poses
from evals.displacement import displacement_errors
from evals.pdm import epdms, pdms
from evals.pdm_twin import HORIZON_STEPS, ego_progress, human_filter, score_rollouts, to_anchor
from evals.scene import ClipScene
from transforms.index import frame_poses

LOGGED = "logged"
EC_SHIFT_STEPS = 5  # consecutive NAVSIM frames are 0.5 s apart; windows are too
WINDOW_STEP_US = 500_000
FILTERED_SCORES = ("nc", "dac", "ddc", "tlc", "ttc", "ep", "lk", "hc", "c", "ec")
METRICS = ("ade_1s", "fde_1s", "ade_2s", "fde_2s", "ade_3s", "fde_3s", "ade_6p4s", "fde_6p4s", "nc", "dac", "ddc",
           "tlc", "ttc", "ep", "lk", "c", "hc", "ec", "pdms", "epdms", "progress_m")


@dataclass(frozen=True)
class EvalWindow:
    """One held-out window: what the agent sees (from the shards) and what happened (unicycle_targets)."""

    chunk: str
    clip_id: str
    t0_us: int
    split: str
    command: str
    meta_action: str
    image: np.ndarray  # (H, W, 3) uint8, the front camera at t0
    state: np.ndarray  # (4,) v, a, κ, yaw rate at t0
    future_xy: np.ndarray  # (64, 2) ego frame at t0
    future_yaw: np.ndarray  # (64,)
    history_xy: np.ndarray  # (16, 2), t0 - 1.5 .. t0
    history_yaw: np.ndarray  # (16,)


@dataclass(frozen=True)
class Plans:
    xy: np.ndarray  # (B, 64, 2)
    yaw: np.ndarray  # (B, 64)


def _lists(col: pa.ChunkedArray, width: int) -> np.ndarray:
    flat = pa.concat_arrays([c.flatten() for c in col.chunks]) if col.num_chunks else pa.array([], pa.float64())
    return flat.to_numpy(zero_copy_only=False).reshape(-1, width)


def read_windows(urls: Sequence[str], targets: pa.Table, *, max_windows: int = 0) -> tuple[list[EvalWindow], int]:
    """The shards' samples joined with their unicycle_targets rows, in shard order.

    Returns the windows and how many samples had no targets row (left out).
    """
    keys = list(zip(targets.column("clip_id").to_pylist(), targets.column("t0_us").to_pylist(), strict=True))
    row_of = {k: i for i, k in enumerate(keys)}
    fut = _lists(targets.column("future_xyz"), 192).reshape(-1, 64, 3)
    fut_yaw = _lists(targets.column("future_yaw"), 64)
    hist = _lists(targets.column("history_xyz"), 48).reshape(-1, 16, 3)
    hist_yaw = _lists(targets.column("history_yaw"), 16)
    out, missing = [], 0
    for sample in wds.DataPipeline(wds.SimpleShardList(list(urls)), wds.tarfile_to_samples()):
        meta = json.loads(sample["json"])
        i = row_of.get((meta["clip_id"], int(meta["t0_us"])))
        if i is None:
            missing += 1
            continue
        s = meta["state"]
        out.append(EvalWindow(
            meta["chunk"], meta["clip_id"], int(meta["t0_us"]), meta["split"], meta["command"], meta["meta_action"],
            np.asarray(Image.open(io.BytesIO(sample["jpg"])).convert("RGB"), dtype=np.uint8),
            np.array([s["v_mps"], s["a_mps2"], s["kappa_1pm"], s["yaw_rate_radps"]]),
            fut[i, :, :2], fut_yaw[i], hist[i, :, :2], hist_yaw[i]))
        if max_windows and len(out) >= max_windows:
            break
    return out, missing


AgentFn = Callable[[list[np.ndarray], list[str], list[np.ndarray]], tuple[np.ndarray, np.ndarray]]


def run_agent(act: AgentFn, windows: list[EvalWindow], commands: Sequence[str], batch: int = 16) -> Plans:
    """The agent's plans for the windows under the given commands, in batches."""
    xys, yaws = [], []
    for i in range(0, len(windows), batch):
        ws = windows[i:i + batch]
        xy, yaw = act([w.image for w in ws], list(commands[i:i + batch]), [w.state for w in ws])
        xys.append(xy)
        yaws.append(yaw)
    return Plans(np.concatenate(xys), np.concatenate(yaws))


def _with_origin(xy: np.ndarray, yaw: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, T, 2), (B, T) from t0 + 0.1 s -> the first `steps` poses with the t0 pose (origin) in front."""
    b = xy.shape[0]
    return (np.concatenate([np.zeros((b, 1, 2)), xy[:, :steps]], 1),
            np.concatenate([np.zeros((b, 1)), yaw[:, :steps]], 1))


def comfort_scores(windows: list[EvalWindow], plans: Plans) -> dict[str, np.ndarray]:
    """C (the plan from t0, 4 s), HC (history + plan) and EC (vs the previous window's plan; NaN without one)."""
    pxy, pyaw = _with_origin(plans.xy, plans.yaw, HORIZON_STEPS)
    c, _ = history_comfort(kinematics_from_poses(pxy, pyaw))
    hxy = np.stack([w.history_xy for w in windows])
    hyaw = np.stack([w.history_yaw for w in windows])
    hc, _ = history_comfort(kinematics_from_poses(np.concatenate([hxy, plans.xy[:, :HORIZON_STEPS]], 1),
                                                  np.concatenate([hyaw, plans.yaw[:, :HORIZON_STEPS]], 1)))
    index = {(w.clip_id, w.t0_us): i for i, w in enumerate(windows)}
    prev = np.array([index.get((w.clip_id, w.t0_us - WINDOW_STEP_US), -1) for w in windows])
    ec = np.full(len(windows), np.nan)
    has = prev >= 0
    if has.any():
        cur_k = kinematics_from_poses(pxy[has], pyaw[has])
        prev_k = kinematics_from_poses(pxy[prev[has]], pyaw[prev[has]])
        ec[has] = extended_comfort(prev_k, cur_k, EC_SHIFT_STEPS)
    return {"c": c, "hc": hc, "ec": ec}


def score(windows: list[EvalWindow], plans: dict[str, Plans], scenes: dict[str, ClipScene] | None,
          poses0: dict[tuple[str, int], np.ndarray] | None) -> list[dict[str, object]]:
    """One row per (window, policy): every metric (None where it cannot be computed) and the plan.

    `plans` must include LOGGED: it is EP's reference plan and the human filter's driver.
    """
    if LOGGED not in plans:
        raise ValueError(f"plans need the {LOGGED!r} trajectories (EP's reference, the human filter); got {list(plans)}")
    names = list(plans)
    true_xy = np.stack([w.future_xy for w in windows])
    per: dict[str, dict[str, np.ndarray]] = {}
    for name, p in plans.items():
        if p.xy.shape != true_xy.shape:
            raise ValueError(f"policy {name}: plans {p.xy.shape} do not match the {true_xy.shape} windows")
        per[name] = {**displacement_errors(p.xy, true_xy), **comfort_scores(windows, p)}
        for k in ("nc", "dac", "ddc", "tlc", "ttc", "lk", "progress_m", "ep", "pdms", "epdms"):
            per[name][k] = np.full(len(windows), np.nan)
    filtered: list[list[str]] = [[] for _ in windows]
    for i, w in enumerate(windows):
        scene = (scenes or {}).get(w.clip_id)
        pose0 = (poses0 or {}).get((w.clip_id, w.t0_us))
        if scene is None or pose0 is None:
            continue
        ego = to_anchor(pose0, np.stack([plans[n].xy[i] for n in names]), np.stack([plans[n].yaw[i] for n in names]),
                        float(w.state[0]))
        sub = score_rollouts(scene, w.t0_us, ego)
        for k, v in sub.items():
            for j, n in enumerate(names):
                per[n][k][i] = v[j]
        _aggregate_window(per, names, i, filtered)
    rows = []
    for name in names:
        for i, w in enumerate(windows):
            vals = {k: (None if np.isnan(v[i]) else float(v[i])) for k, v in per[name].items()}
            rows.append({"policy": name, "chunk": w.chunk, "clip_id": w.clip_id, "t0_us": w.t0_us, "split": w.split,
                         "command": w.command, "meta_action": w.meta_action, **vals,
                         "human_filtered": ",".join(filtered[i]) if name != LOGGED else "",
                         "pred_xy": plans[name].xy[i].ravel().tolist(), "pred_yaw": plans[name].yaw[i].tolist()})
    return rows


def _aggregate_window(per: dict[str, dict[str, np.ndarray]], names: list[str], i: int,
                      filtered: list[list[str]]) -> None:
    """EP, the human filter, PDMS and EPDMS of window i for every policy (in place)."""
    def mult(n: str) -> float:
        return float(per[n]["nc"][i] * per[n]["dac"][i] * per[n]["ddc"][i] * per[n]["tlc"][i])

    ref = per[LOGGED]
    for n in names:
        per[n]["ep"][i] = ego_progress(np.array([per[n]["progress_m"][i]]), np.array([mult(n)]),
                                       float(ref["progress_m"][i]), mult(LOGGED))[0]
    human = {k: float(ref[k][i]) for k in FILTERED_SCORES if not np.isnan(ref[k][i])}
    for n in names:
        s = {k: np.array([per[n][k][i]]) for k in FILTERED_SCORES}
        if n != LOGGED:  # the driver is the filter: it is reported as it scores
            s, filtered[i] = human_filter(s, human)
            for k in FILTERED_SCORES:
                per[n][k][i] = s[k][0]
        ec = 1.0 if np.isnan(per[n]["ec"][i]) else per[n]["ec"][i]  # no earlier plan: nothing inconsistent
        g = {k: per[n][k][i] for k in ("nc", "dac", "ddc", "tlc", "ttc", "ep", "lk", "hc", "c")}
        per[n]["pdms"][i] = pdms(g["nc"], g["dac"], g["ttc"], g["ep"], g["c"])
        per[n]["epdms"][i] = epdms(g["nc"], g["dac"], g["ddc"], g["tlc"], g["ep"], g["ttc"], g["lk"], g["hc"], ec)


def summarize(rows: list[dict[str, object]], splits: Sequence[str] | None = None) -> list[dict[str, object]]:
    """Mean of every metric per (policy, split), plus split "all"; None where no window has the metric."""
    out = []
    policies = list(dict.fromkeys(str(r["policy"]) for r in rows))
    splits = list(splits or sorted({str(r["split"]) for r in rows}))
    for p in policies:
        for sp in [*splits, "all"]:
            sel = [r for r in rows if r["policy"] == p and (sp == "all" or r["split"] == sp)]
            if not sel:
                continue
            agg: dict[str, object] = {"policy": p, "split": sp, "windows": len(sel),
                                      "scored_windows": sum(r["epdms"] is not None for r in sel)}
            for m in METRICS:
                vals = [float(r[m]) for r in sel if r[m] is not None]
                agg[m] = float(np.mean(vals)) if vals else None
            out.append(agg)
    return out


def poses_at(egomotion: pa.Table, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], np.ndarray]:
    """Ego rear-axle poses (x, y, yaw) in the clip's anchor frame at each (clip_id, t0_us)."""
    out: dict[tuple[str, int], np.ndarray] = {}
    by_clip: dict[str, list[int]] = {}
    for c, t in keys:
        by_clip.setdefault(c, []).append(t)
    clip_col = egomotion.column("clip_id")
    for clip, ts in by_clip.items():
        rows = egomotion.filter(pc.equal(clip_col, clip)).sort_by("timestamp")
        if rows.num_rows < 2:
            continue
        cols = {c: rows.column(c).to_numpy() for c in ("timestamp", "x", "y", "qx", "qy", "qz", "qw", "vx", "vy", "vz")}
        poses = frame_poses(cols, np.asarray(ts, np.int64))
        for t, pose in zip(ts, poses, strict=True):
            if np.isfinite(pose[:3]).all():
                out[(clip, int(t))] = pose[:3]
    return out
