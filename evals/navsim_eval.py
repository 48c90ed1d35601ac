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

from core.displacement import displacement_errors
from core.progress import Progress
from evals.comfort import comfort, extended_comfort, history_states, plan_states
from evals.pdm import epdms, pdms
from evals.pdm_twin import HORIZON_STEPS, ego_progress, human_filter, score_rollouts, to_anchor
from evals.policies import wrong_commands
from evals.scene import ClipScene, clip_scenes
from evals.scorecard import BASELINES, FIELD_AGENT, WRONG_COMMAND
from lake.tables import EVAL_METRICS
from transforms.baselines import constant_controls, constant_velocity
from transforms.index import frame_poses
from transforms.windows import read_targets

LOGGED = "logged"
EC_SHIFT_STEPS = 5  # consecutive NAVSIM frames are 0.5 s apart; windows are too
WINDOW_STEP_US = 500_000
FILTERED_SCORES = ("nc", "dac", "ddc", "tlc", "ttc", "lk")  # v2's human filter (see _aggregate_window)
METRICS = EVAL_METRICS  # the eval tables' metric columns


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
    targets: np.ndarray  # (64, 2) the fitted (a, κ) of what happened (unicycle_targets)


@dataclass(frozen=True)
class Plans:
    xy: np.ndarray  # (B, 64, 2)
    yaw: np.ndarray  # (B, 64)


def read_windows(urls: Sequence[str], targets: pa.Table, *, max_windows: int = 0,
                 clip_ids: set[str] | None = None) -> tuple[list[EvalWindow], int]:
    """The shards' samples (of `clip_ids` only, when given) joined with their unicycle_targets rows, in
    shard order. Returns the windows and how many samples had no targets row (left out).
    """
    w = read_targets(targets)
    row_of = {k: i for i, k in enumerate(w.keys())}
    out, missing = [], 0
    for sample in wds.DataPipeline(wds.SimpleShardList(list(urls)), wds.tarfile_to_samples()):
        meta = json.loads(sample["json"])
        if clip_ids is not None and meta["clip_id"] not in clip_ids:
            continue
        i = row_of.get((meta["clip_id"], int(meta["t0_us"])))
        if i is None:
            missing += 1
            continue
        s = meta["state"]
        out.append(EvalWindow(
            meta["chunk"], meta["clip_id"], int(meta["t0_us"]), meta["split"], meta["command"], meta["meta_action"],
            np.asarray(Image.open(io.BytesIO(sample["jpg"])).convert("RGB"), dtype=np.uint8),
            np.array([s["v_mps"], s["a_mps2"], s["kappa_1pm"], s["yaw_rate_radps"]]),
            w.future_xyz[i, :, :2], w.future_yaw[i], w.history_xyz[i, :, :2], w.history_yaw[i],
            np.stack([w.accel_mps2[i], w.curvature_1pm[i]], axis=-1)))
        if max_windows and len(out) >= max_windows:
            break
    return out, missing


AgentFn = Callable[[list[np.ndarray], list[str], list[np.ndarray]], tuple[np.ndarray, np.ndarray]]


def run_agent(act: AgentFn, windows: list[EvalWindow], commands: Sequence[str], batch: int = 16,
              progress: Progress | None = None) -> Plans:
    """The agent's plans for the windows under the given commands, in batches."""
    xys, yaws = [], []
    for i in range(0, len(windows), batch):
        ws = windows[i:i + batch]
        xy, yaw = act([w.image for w in ws], list(commands[i:i + batch]), [w.state for w in ws])
        xys.append(xy)
        yaws.append(yaw)
        if progress:
            progress.update(len(ws))
    return Plans(np.concatenate(xys), np.concatenate(yaws))


def _with_origin(xy: np.ndarray, yaw: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, T, 2), (B, T) from t0 + 0.1 s -> the first `steps` poses with the t0 pose (origin) in front."""
    b = xy.shape[0]
    return (np.concatenate([np.zeros((b, 1, 2)), xy[:, :steps]], 1),
            np.concatenate([np.zeros((b, 1)), yaw[:, :steps]], 1))


def comfort_scores(windows: list[EvalWindow], plans: Plans) -> dict[str, np.ndarray]:
    """C (the plan's states from t0 over 4 s, PDMS v1), HC (NAVSIM's interpolated history, then the
    plan's states) and EC (vs the previous window's plan, cropped to the overlap; NaN without one)."""
    pxy, pyaw = _with_origin(plans.xy, plans.yaw, HORIZON_STEPS)
    states = plan_states(pxy, pyaw)  # (B, 41, 11)
    c, _ = comfort(states)
    past = history_states(np.stack([w.history_xy for w in windows]), np.stack([w.history_yaw for w in windows]))
    hc, _ = comfort(np.concatenate([past, states], 1))
    index = {(w.clip_id, w.t0_us): i for i, w in enumerate(windows)}
    prev = np.array([index.get((w.clip_id, w.t0_us - WINDOW_STEP_US), -1) for w in windows])
    ec = np.full(len(windows), np.nan)
    has = prev >= 0
    if has.any():
        ec[has] = extended_comfort(states[prev[has]], states[has], EC_SHIFT_STEPS)
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
    """EP, the human filter, PDMS and EPDMS of window i for every policy (in place).

    PDMS is v1's and v1 had no human filter: it takes the sub-scores as scored. EPDMS takes them
    after v2's filter, whose reference is the logged driver scored without a history (so its HC is
    1) and as the only proposal (so its EP is 1): only NC, DAC, DDC, TLC, TTC and LK can filter.
    EC is NaN for a window with no previous frame, and EPDMS then leaves it out.
    """
    def mult(n: str) -> float:
        return float(per[n]["nc"][i] * per[n]["dac"][i] * per[n]["ddc"][i] * per[n]["tlc"][i])

    ref = per[LOGGED]
    for n in names:
        per[n]["ep"][i] = ego_progress(np.array([per[n]["progress_m"][i]]), np.array([mult(n)]),
                                       float(ref["progress_m"][i]), mult(LOGGED))[0]
    human = {k: float(ref[k][i]) for k in FILTERED_SCORES if not np.isnan(ref[k][i])}
    for n in names:
        g = {k: per[n][k][i] for k in ("nc", "dac", "ttc", "ep", "c")}
        per[n]["pdms"][i] = pdms(g["nc"], g["dac"], g["ttc"], g["ep"], g["c"])
        if n != LOGGED:  # the driver is the filter: it is reported as it scores
            s, filtered[i] = human_filter({k: np.array([per[n][k][i]]) for k in FILTERED_SCORES}, human)
            for k in FILTERED_SCORES:
                per[n][k][i] = s[k][0]
        g = {k: per[n][k][i] for k in ("nc", "dac", "ddc", "tlc", "ttc", "ep", "lk", "hc", "ec")}
        per[n]["epdms"][i] = epdms(g["nc"], g["dac"], g["ddc"], g["tlc"], g["ep"], g["ttc"], g["lk"], g["hc"], g["ec"])


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




def evaluate(windows: list[EvalWindow], act: AgentFn | None, scenes: dict[str, ClipScene] | None,
             poses0: dict[tuple[str, int], np.ndarray] | None, *, wrong_command: bool = True, seed: int = 0,
             batch: int = 16, log: Callable[[str], None] | None = None,
             ) -> tuple[list[dict[str, object]], dict[str, Plans], list[str | None]]:
    """Every policy's plans on the windows, scored: (rows, plans, the wrong commands given).

    `act` is the field agent ((images, commands, states) -> xy, yaw); None scores the baselines only.
    The wrong-command ablation covers the windows that have a partner with another meta-action.
    `log` gets progress lines (core/progress.py) over the agent's windows.
    """
    if not windows:
        raise ValueError("no windows to evaluate: materialize webdataset_shards for the chosen splits first")
    st = np.stack([w.state for w in windows])
    plans = {LOGGED: Plans(np.stack([w.future_xy for w in windows]), np.stack([w.future_yaw for w in windows])),
             BASELINES[0]: Plans(*constant_velocity(st[:, 0])),
             BASELINES[1]: Plans(*constant_controls(st[:, 0], st[:, 1], st[:, 2]))}
    wrong: list[str | None] = [None] * len(windows)
    if act is not None:
        progress = Progress(log, "eval", len(windows) * (1 + wrong_command)) if log else None
        plans[FIELD_AGENT] = run_agent(act, windows, [w.command for w in windows], batch, progress)
        if wrong_command:
            wrong = wrong_commands([w.command for w in windows], [w.meta_action for w in windows], seed)
            # windows without a differing partner keep their own command (and say so in the row)
            given = [c if c is not None else w.command for c, w in zip(wrong, windows, strict=True)]
            plans[WRONG_COMMAND] = run_agent(act, windows, given, batch, progress)
    rows = score(windows, plans, scenes, poses0)
    if WRONG_COMMAND in plans:  # its rows name the command the agent was actually given
        index = {(w.clip_id, w.t0_us): i for i, w in enumerate(windows)}
        for r in rows:
            if r["policy"] == WRONG_COMMAND:
                i = index[(r["clip_id"], r["t0_us"])]
                r["command"] = wrong[i] if wrong[i] is not None else f"{windows[i].command} (no other command)"
    return rows, plans, wrong


def lake_windows(root: str, splits: Sequence[str], *, labeler: str, labeler_version: str, max_windows: int = 0
                 ) -> tuple[list[EvalWindow], dict[str, ClipScene], dict[tuple[str, int], np.ndarray], int]:
    """The held-out windows of these splits in the lake at `root`, the twin's scenes of their clips
    (none for real PAI chunks), the ego poses at each window's t0, and how many shard samples had
    no unicycle_targets row (left out)."""
    from pathlib import Path

    from lake import io as lake_io
    from lake import tables as T
    from transforms.pai_layout import chunk_id_of
    from transforms.source import chunk_files_from_manifest
    from transforms.twin.truth import load_twin_gt

    urls = eval_shards(lake_io.read(root, T.SHARD_MANIFEST), str(Path(root) / "shards"), labeler=labeler,
                       labeler_version=labeler_version, splits=splits)
    windows, unmatched = read_windows(urls, lake_io.read(root, T.UNICYCLE_TARGETS), max_windows=max_windows)
    scenes: dict[str, ClipScene] = {}
    poses: dict[tuple[str, int], np.ndarray] = {}
    for chunk in sorted({w.chunk for w in windows}):
        gt = load_twin_gt(chunk_files_from_manifest(lake_io.read(root, T.CHUNKS, chunk=chunk), chunk_id_of(chunk)))
        if gt is None:
            continue
        scenes |= clip_scenes(gt)
        poses |= poses_at(lake_io.read(root, T.EGOMOTION, chunk=chunk), [(w.clip_id, w.t0_us) for w in windows
                                                                       if w.chunk == chunk])
    return windows, scenes, poses, unmatched


def eval_shards(manifest: pa.Table, shard_root: str, *, labeler: str = "", labeler_version: str = "",
                splits: Sequence[str]) -> list[str]:
    """Shard files of the given splits exported with one label set (empty names: the one the shards
    hold, transforms.label_sets.label_set); all must exist."""
    from pathlib import Path

    from transforms.label_sets import label_set

    held = [r for r in manifest.to_pylist() if r["split"] in splits]
    labels = label_set(held, labeler=labeler, labeler_version=labeler_version,
                       what=f"the {'/'.join(splits)} shards of {shard_root}",
                       hint="materialize webdataset_shards, or choose other splits")
    rows = [r for r in held if (r["labeler"], r["labeler_version"]) == labels]
    missing = [r["path"] for r in rows if not (Path(shard_root) / r["path"]).exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shards in the manifest are missing under {shard_root}, e.g. "
                                f"{missing[0]}: re-materialize webdataset_shards for their chunks")
    return sorted(str(Path(shard_root) / r["path"]) for r in rows)


def extremes(rows: list[dict[str, object]], policy: str, n: int = 3) -> tuple[list[dict], list[dict]]:
    """The policy's n best and n worst windows: by EPDMS where scored, then by ADE@6.4 s."""
    sel = [r for r in rows if r["policy"] == policy]

    def key(r: dict) -> tuple[float, float]:
        return (-(r["epdms"] if r["epdms"] is not None else 0.0), float(r["ade_6p4s"]))

    ranked = sorted(sel, key=key)
    return ranked[:n], ranked[::-1][:n]


def _to_ego(pose0: np.ndarray, xy: np.ndarray) -> np.ndarray:
    c, s = np.cos(pose0[2]), np.sin(pose0[2])
    d = np.asarray(xy) - pose0[:2]
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)


def bev_panel(window: EvalWindow, plans: dict[str, np.ndarray], scene: ClipScene | None,
              pose0: np.ndarray | None, title: str) -> dict[str, object]:
    """What transforms.plots.bev_png draws for one window, in the ego frame at t0."""
    from evals.boxes import PACIFICA, box_corners, ego_corners

    panel: dict[str, object] = {"title": title, "history": window.history_xy, "truth": window.future_xy,
                                "plans": plans, "ego": ego_corners(0.0, 0.0, 0.0, PACIFICA)}
    if scene is not None and pose0 is not None:
        r = scene.road
        s0 = float(r.s_m[np.argmin(np.hypot(r.x_m - pose0[0], r.y_m - pose0[1]))])
        reach = max(60.0, 1.2 * float(np.abs(window.future_xy[:, 0]).max()))
        s = np.linspace(s0 - 20.0, s0 + reach, 120)
        w = r.lane_width_m
        offsets = [r.right_edge_d, *[(k + 0.5) * w for k in range(r.n_lanes + r.oncoming_lanes - 1)], r.left_edge_d]
        panel["lines"] = [_to_ego(pose0, np.stack(r.frenet_to_xy(s, np.full_like(s, d)), -1)) for d in offsets]
        stops = [sl for sl in r.stop_lines_s_m if s[0] <= sl <= s[-1]]
        panel["stops"] = [_to_ego(pose0, np.stack(r.frenet_to_xy(np.full(2, sl), np.array([r.right_edge_d, r.divider_d])),
                                                  -1)) for sl in stops]
        st = scene.agents_at(np.array([window.t0_us]))[:, 0]
        st = st[np.isfinite(st[:, 0])]
        boxes = box_corners(st[:, 0], st[:, 1], st[:, 2], st[:, 3], st[:, 4]) if len(st) else np.zeros((0, 4, 2))
        panel["boxes"] = [_to_ego(pose0, b) for b in boxes]
    return panel


SUBSCORES = ("nc", "dac", "ddc", "tlc", "ttc", "ep", "lk", "hc", "ec")


def failed_subscores(row: dict[str, object]) -> str:
    """The NAVSIM sub-scores below 1 in a window's row, worst first ("fails NC 0.00, TTC 0.00"), or
    "no sub-score failed"; an EPDMS of 0 is then explained by the multiplier that zeroed it."""
    bad = sorted((float(v), k) for k in SUBSCORES if (v := row.get(k)) is not None and float(v) < 1.0)  # type: ignore[arg-type]
    return ("fails " + ", ".join(f"{k.upper()} {v:.2f}" for v, k in bad)) if bad else "no sub-score failed"


def extreme_panels(rows: list[dict[str, object]], plans: dict[str, Plans], windows: list[EvalWindow],
                   scenes: dict[str, ClipScene], poses0: dict[tuple[str, int], np.ndarray],
                   n: int = 3) -> dict[str, tuple[str, list[dict[str, object]]]]:
    """Bird's-eye panels of the agent's (or, without one, the logged) n best and worst windows:
    {"best_windows": (policy, panels), "worst_windows": (...)}, each panel with every plan but the
    logged one (drawn as the truth) and the wrong-command ablation."""
    policy = FIELD_AGENT if FIELD_AGENT in plans else LOGGED
    index = {(w.clip_id, w.t0_us): i for i, w in enumerate(windows)}
    shown = [p for p in plans if p not in (LOGGED, WRONG_COMMAND)]
    out = {}
    for name, picked in zip(("best_windows", "worst_windows"), extremes(rows, policy, n), strict=True):
        panels = []
        for r in picked:
            i = index[(r["clip_id"], r["t0_us"])]
            w = windows[i]
            score = f"EPDMS {r['epdms']:.2f}, " if r["epdms"] is not None else ""
            title = f"{policy}: {score}ADE {r['ade_6p4s']:.2f} m\n{failed_subscores(r)}"
            panel = bev_panel(w, {p: plans[p].xy[i] for p in shown}, scenes.get(w.clip_id),
                              poses0.get((w.clip_id, w.t0_us)), title)
            panels.append(panel | {"image": w.image, "caption": f"{w.clip_id[:8]} t0={w.t0_us / 1e6:.1f} s\n\"{w.command}\""})
        out[name] = (policy, panels)
    return out


def pick_run(runs: list[dict[str, object]], run_id: str) -> dict[str, object]:
    """The training run to score: the one named, or the latest finished."""
    if not runs:
        raise ValueError("eval.training_runs is empty: materialize train_field_agent first")
    if run_id:
        match = [r for r in runs if r["run_id"] == run_id]
        if not match:
            raise ValueError(f"run_id {run_id!r} is not in eval.training_runs (it has "
                             f"{sorted(str(r['run_id']) for r in runs)[:5]}): pick one of those or leave it empty")
        return match[0]
    return max(runs, key=lambda r: int(r["finished_us"]))


SCORE_COLUMNS = (("windows", "windows", "d"), ("ade_1s", "ADE 1 s", ".3f"), ("ade_2s", "ADE 2 s", ".3f"),
                 ("ade_3s", "ADE 3 s", ".3f"), ("ade_6p4s", "ADE 6.4 s", ".3f"), ("fde_6p4s", "FDE 6.4 s", ".3f"),
                 ("nc", "NC", ".3f"), ("dac", "DAC", ".3f"), ("ddc", "DDC", ".3f"), ("ttc", "TTC", ".3f"),
                 ("ep", "EP", ".3f"), ("lk", "LK", ".3f"), ("c", "C", ".3f"), ("hc", "HC", ".3f"),
                 ("ec", "EC", ".3f"), ("pdms", "PDMS", ".3f"), ("epdms", "EPDMS", ".3f"))


def score_table_md(summaries: list[dict[str, object]], split: str = "all") -> str:
    """A markdown table of one split's mean metrics, a row per policy (ADE/FDE in metres)."""
    head = "| policy | " + " | ".join(c[1] for c in SCORE_COLUMNS) + " |"
    lines = [head, "|---|" + "---:|" * len(SCORE_COLUMNS)]
    for s in summaries:
        if s["split"] != split:
            continue
        cells = ["–" if s[k] is None else format(s[k], f) for k, _, f in SCORE_COLUMNS]
        lines.append(f"| {s['policy']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
