"""Rerun recordings (the viewer LeRobot's dataset visualizer is built on; .rrd files open offline with
`rerun FILE`) of what a policy saw and did.

- `record_windows`: per window, in sync on the `t0` timeline: the front camera, the command, the ego
  state, the (a, κ) targets beside every policy's (a, κ), and a bird's-eye view of the history, the
  logged future and every policy's plan, with each policy's scores as text.
- `record_route`: a closed-loop route on the `sim_time` timeline: the camera from the pose reached,
  the bird's-eye view, the command in force, speed and controls, shield interventions as log lines.

Bird's-eye coordinates are the ego frame at t0 (x ahead, y left) drawn with ahead up: view (−y, −x).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.windows import DT_S

# One colour per policy, the same in every view (RGB), named in each window's text.
COLORS = {"logged": (210, 30, 30), "field_agent": (40, 140, 255), "constant_velocity": (250, 170, 40),
          "constant_controls": (60, 200, 90), "wrong_command": (230, 70, 200), "history": (150, 150, 150)}
COLOR_NAMES = {"logged": "red", "field_agent": "blue", "constant_velocity": "orange", "constant_controls": "green",
               "wrong_command": "magenta", "history": "grey"}
STATE_NAMES = ("v_mps", "a_mps2", "kappa_1pm", "yaw_rate_radps")


@dataclass(frozen=True)
class WindowView:
    """One window to record: what the agent saw, what happened, and what each policy planned."""

    clip_id: str
    t0_us: int
    command: str
    image: np.ndarray  # (H, W, 3) uint8
    state: np.ndarray  # (4,) STATE_NAMES
    history_xy: np.ndarray  # (16, 2)
    plans: Mapping[str, np.ndarray]  # policy -> (64, 2) ego frame at t0; "logged" is what happened
    controls: Mapping[str, np.ndarray]  # policy -> (64, 2) (a, κ); "logged" is the fitted targets
    note: str = ""  # scores, why it was picked


def _bev(xy: np.ndarray) -> np.ndarray:
    return np.stack([-xy[..., 1], -xy[..., 0]], axis=-1)


def _stream(app: str, path: Path, blueprint: object):  # noqa: ANN202 (rerun.RecordingStream, imported lazily)
    import rerun as rr

    path.parent.mkdir(parents=True, exist_ok=True)
    rec = rr.RecordingStream(app, recording_id=path.stem)
    rec.save(str(path), default_blueprint=blueprint)
    return rec


def _window_blueprint() -> object:
    import rerun.blueprint as rrb

    return rrb.Blueprint(rrb.Horizontal(
        rrb.Vertical(rrb.Spatial2DView(origin="camera", name="front camera"),
                     rrb.TextDocumentView(origin="command", name="command and scores")),
        rrb.Spatial2DView(origin="bev", name="bird's-eye: history, logged future, plans (ego frame, ahead up)"),
        rrb.Vertical(rrb.TimeSeriesView(origin="ego", name="ego state at t0"),
                     rrb.Spatial2DView(origin="controls/accel", name="a over the plan (x: step 1..64, y: 5 × m/s²)"),
                     rrb.Spatial2DView(origin="controls/curvature", name="κ over the plan (x: step 1..64, y: 500 × 1/m)")),
        column_shares=[2, 2, 2]), collapse_panels=True)


def record_windows(windows: Sequence[WindowView], path: str | Path, *, app: str = "av_flywheel") -> Path:
    """Write the windows (in the order given: a clip's in time order, or the worst first) to `path`."""
    import rerun as rr

    path = Path(path)
    rec = _stream(app, path, _window_blueprint())
    # the (a, κ) plots are 2D views: steps across, values scaled up so a few m/s² are not a flat line
    steps = np.arange(1, 65, dtype=np.float64)
    scale = {"accel": 5.0, "curvature": 500.0}
    legend = ", ".join(f"{p} {c}" for p, c in COLOR_NAMES.items())
    for i, w in enumerate(windows):
        rec.set_time("window", sequence=i)
        rec.set_time("t0", duration=w.t0_us / 1e6)
        rec.log("camera", rr.Image(w.image))
        rec.log("command", rr.TextDocument(
            f"## \"{w.command}\"\n\nclip `{w.clip_id}` at t0 = {w.t0_us / 1e6:.1f} s, v = {w.state[0]:.1f} m/s\n\n"
            f"colours: {legend}\n\n{w.note}",
            media_type="text/markdown"))
        for name, v in zip(STATE_NAMES, w.state, strict=True):
            rec.log(f"ego/{name}", rr.Scalars(float(v)))
        rec.log("bev/history", rr.LineStrips2D([_bev(w.history_xy)], colors=[COLORS["history"]], radii=0.15))
        for policy, xy in w.plans.items():
            rec.log(f"bev/{policy}", rr.LineStrips2D([_bev(np.asarray(xy))], colors=[COLORS.get(policy, (200, 200, 200))],
                                                     radii=0.3))
        for k, (what, s) in enumerate(scale.items()):
            rec.log(f"controls/{what}/zero", rr.LineStrips2D([[[0.0, 0.0], [65.0, 0.0]]], colors=[(120, 120, 120)]))
            for policy, ac in w.controls.items():  # y down in a 2D view: minus puts positive values up
                rec.log(f"controls/{what}/{policy}", rr.LineStrips2D(
                    [np.stack([steps, -s * np.asarray(ac)[:, k]], 1)], colors=[COLORS.get(policy, (200, 200, 200))]))
    rec.flush()
    rec.disconnect()
    return path


def _route_blueprint() -> object:
    import rerun.blueprint as rrb

    return rrb.Blueprint(rrb.Horizontal(
        rrb.Vertical(rrb.Spatial2DView(origin="camera", name="front camera (rendered from the pose reached)"),
                     rrb.TextLogView(origin="events", name="commands and shield interventions")),
        rrb.Spatial2DView(origin="bev", name="bird's-eye view"),
        rrb.TimeSeriesView(origin="ego", name="speed and controls")), collapse_panels=True)


def record_route(record: object, path: str | Path, *, app: str = "av_flywheel", every: int = 2,
                 width: int = 256, height: int = 144, collided_track_ids: Sequence[int] = ()) -> Path:
    """Write a closed-loop RouteRecord (evals.closed_loop.runner) to `path`, one camera frame every `every` steps."""
    import rerun as rr

    from evals.closed_loop.video import bev_image, camera_frames

    path = Path(path)
    rec = _stream(app, path, _route_blueprint())
    r = record  # a RouteRecord: imported lazily by the caller, duck-typed here
    said = {round(c.t_s / DT_S): c for c in r.commands}  # type: ignore[attr-defined]
    hits = {iv.step: iv for iv in r.interventions}  # type: ignore[attr-defined]
    frames = dict(camera_frames(r, range(0, len(r.ego), every), width, height))  # type: ignore[attr-defined]
    for i, e in enumerate(r.ego):  # type: ignore[attr-defined]
        rec.set_time("sim_time", duration=i * DT_S)
        rec.log("ego/speed_mps", rr.Scalars(float(e[3])))
        rec.log("ego/a_mps2", rr.Scalars(float(e[4])))
        rec.log("ego/kappa_x100_1pm", rr.Scalars(float(100 * e[5])))
        if i in said:
            rec.log("events", rr.TextLog(f"Commander: \"{said[i].text}\"", level="INFO"))
        if i in hits:
            rec.log("events", rr.TextLog(f"shield: {', '.join(hits[i].reasons)} → {hits[i].fallback}", level="WARN"))
        if i in frames:
            rec.log("camera", rr.Image(frames[i]))
            rec.log("bev", rr.Image(np.asarray(bev_image(r, i, collided_track_ids))))
    rec.flush()
    rec.disconnect()
    return path


def implied_controls(xy: np.ndarray, yaw: np.ndarray, v0: float) -> np.ndarray:
    """The (a, κ) a plan of poses implies (64, 2): speed from the step lengths, a its change, κ the turn per
    metre. For plans given as poses (the agent's rollout, a baseline's); the logged future has its fit."""
    pts = np.concatenate([np.zeros((1, 2)), np.asarray(xy)])
    ds = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    v = ds / DT_S
    a = np.diff(np.concatenate([[v0], v])) / DT_S
    dyaw = np.diff(np.concatenate([[0.0], np.asarray(yaw)]))
    kappa = np.divide(dyaw, ds, out=np.zeros_like(ds), where=ds > 1e-3)
    return np.stack([a, kappa], axis=-1)


def window_views(windows: Sequence[object], plans: Mapping[str, object], picked: Sequence[int],
                 notes: Mapping[int, str] | None = None, controls: Mapping[str, np.ndarray] | None = None,
                 ) -> list[WindowView]:
    """WindowViews of windows[i] for i in `picked` (EvalWindows, navsim_eval's Plans per policy). `controls`
    gives a policy's own (a, κ) (B, 64, 2) where it has them; the logged future shows its fitted targets, the
    rest the (a, κ) their poses imply."""
    from evals.navsim_eval import LOGGED

    views = []
    for i in picked:
        w = windows[i]
        ctl = {}
        for p, pl in plans.items():
            if p == LOGGED:
                ctl[p] = w.targets  # type: ignore[attr-defined]
            elif controls and p in controls:
                ctl[p] = controls[p][i]
            else:
                ctl[p] = implied_controls(pl.xy[i], pl.yaw[i], float(w.state[0]))  # type: ignore[attr-defined]
        views.append(WindowView(w.clip_id, w.t0_us, w.command, w.image, w.state, w.history_xy,  # type: ignore[attr-defined]
                                {p: pl.xy[i] for p, pl in plans.items()}, ctl, (notes or {}).get(i, "")))  # type: ignore[attr-defined]
    return views


def score_notes(rows: Sequence[Mapping[str, object]], windows: Sequence[object]) -> dict[int, str]:
    """Per window index, a markdown table of every policy's scores in navsim_eval's rows (eval_windows)."""
    cols = ("ade_6p4s", "nc", "dac", "ttc", "ep", "c", "epdms")
    index = {(w.clip_id, w.t0_us): i for i, w in enumerate(windows)}  # type: ignore[attr-defined]
    by: dict[int, list[str]] = {}
    for r in rows:
        i = index.get((r["clip_id"], r["t0_us"]))
        if i is not None:
            cells = " | ".join("–" if r.get(c) is None else f"{r[c]:.2f}" for c in cols)
            by.setdefault(i, []).append(f"| {r['policy']} | {cells} |")
    head = "| policy | ADE 6.4 s | NC | DAC | TTC | EP | C | EPDMS |\n|---|" + "---:|" * len(cols) + "\n"
    return {i: head + "\n".join(lines) for i, lines in by.items()}


@dataclass(frozen=True)
class ClipRecording:
    path: Path
    clip_id: str
    windows: int
    run_id: str | None  # the agent's run drawn, None: baselines only


def _find_clip(lake_root: Path, clip: str) -> tuple[Path, dict]:
    """The lake (training or benchmark) and silver.clips row of a clip id or a unique prefix of one."""
    from evals.benchmark import BENCHMARK_DIR
    from lake import io
    from lake import tables as T

    seen: list[str] = []
    for root in (lake_root, lake_root / BENCHMARK_DIR):
        rows = io.read(root, T.CLIPS, columns=["clip_id", "chunk", "split", "status"]).to_pylist()
        seen += [r["clip_id"] for r in rows]
        match = [r for r in rows if r["clip_id"].startswith(clip)] if clip else []
        if len(match) == 1 or any(r["clip_id"] == clip for r in match):
            return root, next((r for r in match if r["clip_id"] == clip), match[0])
        if len(match) > 1:
            raise ValueError(f"clip {clip!r} matches {len(match)} clips ({[r['clip_id'] for r in match[:4]]}...): "
                             "give more of it")
    if not seen:
        raise ValueError(f"{lake_root} holds no silver.clips: set FLYWHEEL_LAKE to a lake root or run `flywheel demo` first")
    raise ValueError(f"clip {clip!r} is in neither {lake_root} nor its benchmark lake; some that are: {sorted(seen)[:4]}")


def clip_recording(lake_root: str | Path, clip: str, *, run_id: str = "", out: str | Path | None = None,
                   agent: bool = True, device: str = "cpu") -> ClipRecording:
    """Every window of a clip in time order, with the baselines' plans and, when a run is trained (`run_id`,
    else the latest), the agent's; scores from that run's navsim_eval where it scored the clip."""
    from evals.navsim_eval import FIELD_AGENT, LOGGED, Plans, eval_shards, pick_run, read_windows
    from evals.scorecard import BASELINES
    from lake import io
    from lake import tables as T
    from transforms.baselines import constant_controls, constant_velocity
    from transforms.ids import inside

    lake_root = Path(lake_root)
    root, row = _find_clip(lake_root, clip)
    clip_id = row["clip_id"]
    manifest = io.read(root, T.SHARD_MANIFEST, where={"chunk": row["chunk"]})
    urls = eval_shards(manifest, str(root / "shards"), splits=[row["split"]])
    windows, _ = read_windows(urls, io.read(root, T.UNICYCLE_TARGETS, chunk=row["chunk"]), clip_ids={clip_id})
    if not windows:
        raise ValueError(f"clip {clip_id} ({row['status']}) has no windows in the {row['split']} shards of {row['chunk']}: "
                         "materialize webdataset_shards for it")
    windows.sort(key=lambda w: w.t0_us)
    st = np.stack([w.state for w in windows])
    plans = {LOGGED: Plans(np.stack([w.future_xy for w in windows]), np.stack([w.future_yaw for w in windows])),
             BASELINES[0]: Plans(*constant_velocity(st[:, 0])),
             BASELINES[1]: Plans(*constant_controls(st[:, 0], st[:, 1], st[:, 2]))}
    controls = {BASELINES[0]: np.zeros((len(windows), 64, 2)),
                BASELINES[1]: np.repeat(st[:, None, 1:3], 64, axis=1)}
    runs = io.read(lake_root, T.TRAINING_RUNS).to_pylist()
    run = pick_run(runs, run_id) if agent and (runs or run_id) else None
    notes: dict[int, str] = {}
    if run is not None:
        from trainers.agent import FieldAgent

        fa = FieldAgent.load(str(run["checkpoint"]), device=device)
        outs = [fa.act_batch([w.image for w in windows[i:i + 16]], [w.command for w in windows[i:i + 16]],
                             [tuple(map(float, w.state)) for w in windows[i:i + 16]], seed=0)
                for i in range(0, len(windows), 16)]
        plans[FIELD_AGENT] = Plans(np.concatenate([o.xy_m for o in outs]), np.concatenate([o.yaw_rad for o in outs]))
        controls[FIELD_AGENT] = np.concatenate([np.stack([o.accel_mps2, o.curvature_1pm], -1) for o in outs])
        scored = io.read(lake_root, T.EVAL_WINDOWS, where={"run_id": str(run["run_id"]), "clip_id": clip_id})
        notes = score_notes(scored.to_pylist(), windows)
    name = f"{clip_id}-{run['run_id'] if run else 'baselines'}.rrd"
    path = Path(out) if out else inside(lake_root / "viewer", name)
    record_windows(window_views(windows, plans, range(len(windows)), notes, controls), path)
    return ClipRecording(path, clip_id, len(windows), str(run["run_id"]) if run else None)


def worst_windows_recording(rows: Sequence[Mapping[str, object]], plans: Mapping[str, object], windows: Sequence[object],
                            path: str | Path, n: int = 8) -> Path:
    """navsim_eval's n worst windows of the agent (of the logged future without one), worst first."""
    from evals.navsim_eval import FIELD_AGENT, LOGGED, extremes

    policy = FIELD_AGENT if FIELD_AGENT in plans else LOGGED
    index = {(w.clip_id, w.t0_us): i for i, w in enumerate(windows)}  # type: ignore[attr-defined]
    _, worst = extremes(list(rows), policy, n)
    picked = [index[(r["clip_id"], r["t0_us"])] for r in worst]
    return record_windows(window_views(windows, plans, picked, score_notes(rows, windows)), path)
