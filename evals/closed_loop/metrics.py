"""Closed-loop metrics per route, and per scenario with intervals over routes.

Per route (CARLA leaderboard's definitions where it has one, on the twin's road):
- route completion RC: progress of the ego's centre along the road over the route's length (where
  the logged driver got to), counting no progress made off the road or in the oncoming lane
  (CARLA's OutsideRouteLanesTest takes that share out of RC the same way);
- infractions: at-fault collisions (nuPlan's classification, evals/pdm_twin.py), off-road and
  wrong-way driving (the shares of distance), stop lines run (crossed without standing at them);
- driving score DS = RC × 0.60^collisions × 0.80^stop lines run (CARLA's penalties for hitting a
  vehicle and running a stop sign; off-road and wrong way already cost RC);
- command success: the share of the Commander's maneuver commands (runs of one meta-action other
  than keep_lane) whose maneuver happened within its time window; undecided ones (the route reached
  its time or goal first) are left out, and a route that left the road fails its open ones;
- comfort: the share of 4 s windows (one per second) that pass NAVSIM's comfort bounds;
- shield interventions, stale steps and planning latency.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.stats import clip_bootstrap
from core.windows import DT_S
from evals.boxes import PACIFICA, boxes_intersect, ego_corners
from evals.closed_loop.commander import STOPPED_MPS
from evals.closed_loop.runner import RouteRecord
from evals.comfort import comfort, plan_states
from evals.pdm_twin import EgoRollout, agent_boxes, collision_events, ego_areas
from evals.scene import TICK_US, ClipScene

COLLISION_PENALTY, STOP_PENALTY = 0.60, 0.80  # CARLA leaderboard: collision with a vehicle, running a stop sign
STOP_ZONE_M = 8.0  # standing with the front bumper this close before the line counts as having stopped
WINDOWS_S = {"change_lane_left": 10.0, "change_lane_right": 10.0, "overtake_left": 25.0, "stop": 15.0, "go": 8.0,
             "turn_left": 0.0, "turn_right": 0.0, "follow_lead": 0.0, "speed_up": 10.0, "slow_down": 10.0}
SPEED_CHANGE_DONE_MPS = 1.0
TURN_LANE_TOLERANCE_M = 1.0
COMFORT_WINDOW_STEPS, COMFORT_EVERY_STEPS = 40, 10
SUMMARY_METRICS = ("driving_score", "route_completion", "collisions", "offroad_share", "wrong_way_share",
                   "stop_lines_run", "command_success", "comfort", "interventions_per_min", "stale_share")
HIGHER_IS_BETTER = {"driving_score", "route_completion", "command_success", "comfort"}


@dataclass(frozen=True)
class Episode:
    meta_action: str
    start_s: float
    end_s: float  # the last tick it was said


def episodes(record: RouteRecord) -> list[Episode]:
    """Runs of one meta-action in the Commander's 1 Hz commands."""
    out: list[Episode] = []
    for c in record.commands:
        if out and out[-1].meta_action == c.meta_action:
            out[-1] = Episode(c.meta_action, out[-1].start_s, c.t_s)
        else:
            out.append(Episode(c.meta_action, c.t_s, c.t_s))
    return out


def _scene(record: RouteRecord) -> ClipScene:
    agents = record.agents.transpose(1, 0, 2) if record.agents.size else np.zeros((0, len(record.ego), 6))
    return ClipScene(record.route.route_id, record.route.world.road, 0, agents, np.arange(agents.shape[0]),
                     record.route.scenario)


def _rollout(record: RouteRecord) -> EgoRollout:
    e = record.ego
    return EgoRollout(e[None, :, 0], e[None, :, 1], e[None, :, 2], e[None, :, 3])


@dataclass(frozen=True)
class _Drive:
    """The driven route as the scorer sees it: per state (T+1,)."""

    t_s: np.ndarray
    center_s: np.ndarray
    center_d: np.ndarray
    off_road: np.ndarray
    wrong_way: np.ndarray
    lane: np.ndarray
    v: np.ndarray
    front_s: np.ndarray
    collisions: list[tuple[int, int, bool]]


def _drive(record: RouteRecord) -> _Drive:
    scene, ego = _scene(record), _rollout(record)
    areas = ego_areas(scene, ego)
    corners = ego_corners(ego.x, ego.y, ego.yaw)
    n = ego.x.shape[1]
    if scene.agents.shape[0]:
        a_corners, a_state = agent_boxes(scene, np.arange(n) * TICK_US)
        initially = set(np.flatnonzero(boxes_intersect(corners[0, 0][None], a_corners[0])))
        events = collision_events(ego, areas, corners, a_corners, a_state, initially)[0]
    else:
        events = []
    cd = areas.center_d[0]
    return _Drive(np.arange(n) * DT_S, areas.center_s[0], cd, ~scene.on_road(cd), cd > scene.road.divider_d,
                  scene.lane_of(cd), record.ego[:, 3], record.ego[:, 6] + PACIFICA.front_m, events)


def stop_lines_run(record: RouteRecord, drive: _Drive) -> int:
    """Stop lines the front bumper crossed without the ego having stood within STOP_ZONE_M before them."""
    runs = 0
    for line in record.route.world.road.stop_lines_s_m:
        crossed = np.flatnonzero(drive.front_s > line)
        if not len(crossed) or crossed[0] == 0:
            continue
        before = slice(0, crossed[0])
        stood = (drive.v[before] < STOPPED_MPS) & (drive.front_s[before] > line - STOP_ZONE_M)
        runs += int(not stood.any())
    return runs


def _achieved(ep: Episode, record: RouteRecord, drive: _Drive) -> bool | None:
    """Did the episode's maneuver happen within its window? None: undecided (the route ended first)."""
    i0 = round(ep.start_s / DT_S)
    end_s = ep.start_s + WINDOWS_S[ep.meta_action] if WINDOWS_S[ep.meta_action] else ep.end_s + 1.0
    i1 = min(round(end_s / DT_S), len(drive.t_s) - 1)
    span = slice(i0, i1 + 1)
    m = ep.meta_action
    if m.startswith("change_lane"):
        step = 1 if m.endswith("left") else -1
        ok = bool(np.any(drive.lane[span] == drive.lane[i0] + step))
    elif m == "overtake_left":
        if not record.agents_s.shape[1]:
            return None  # nothing to overtake (a labeler Commander may say it anyway)
        truck = record.agents_s[span, 0] + record.route.world.tracks[0].length_m / 2
        rear = drive.center_s[span] - PACIFICA.length_m / 2
        passed = np.flatnonzero(rear > truck)
        back = np.flatnonzero(drive.lane[span] == drive.lane[i0])
        back = back[back > passed[0]] if len(passed) else back[:0]
        on_lanes = len(back) and not np.any((drive.off_road | drive.wrong_way)[span][: back[0] + 1])
        ok = bool(on_lanes)  # past the truck and back in its lane, on the ego's side of the road throughout
    elif m == "stop":
        lines = record.route.world.road.stop_lines_s_m
        ok = bool(lines and np.any((drive.v[span] < STOPPED_MPS) & (drive.front_s[span] > lines[0] - STOP_ZONE_M)
                                    & (drive.front_s[span] < lines[0] + 1.0)))
    elif m == "go":
        ok = bool(np.any(drive.v[span] > 3.0))
    elif m in ("turn_left", "turn_right"):
        centre = drive.lane[span] * record.route.world.road.lane_width_m
        ok = bool(not np.any(drive.off_road[span] | drive.wrong_way[span])
                  and np.all(np.abs(drive.center_d[span] - centre) < TURN_LANE_TOLERANCE_M))
    elif m == "follow_lead":
        ok = not any(at_fault and i0 <= k <= i1 for k, _, at_fault in drive.collisions)
    elif m in ("speed_up", "slow_down"):
        change = drive.v[span] - drive.v[i0]
        ok = bool(np.any(change > SPEED_CHANGE_DONE_MPS) if m == "speed_up" else np.any(change < -SPEED_CHANGE_DONE_MPS))
    else:
        return None
    if not ok and end_s > drive.t_s[-1] + 1e-9 and record.terminated != "route_deviation":
        return None  # the route ended in time before the window closed: undecided
    return ok


def comfort_share(record: RouteRecord) -> float | None:
    """Share of the 4 s windows (one per second) within NAVSIM's comfort bounds."""
    e = record.ego
    starts = range(0, len(e) - COMFORT_WINDOW_STEPS, COMFORT_EVERY_STEPS)
    if not len(starts):
        return None
    xy = np.stack([e[s:s + COMFORT_WINDOW_STEPS + 1, :2] for s in starts])
    yaw = np.stack([e[s:s + COMFORT_WINDOW_STEPS + 1, 2] for s in starts])
    c, _ = comfort(plan_states(xy, yaw))
    return float(c.mean())


def route_metrics(record: RouteRecord) -> dict:
    """One route's row of eval.closed_loop_routes (without run_id, config and time)."""
    drive = _drive(record)
    step_m = np.abs(np.diff(drive.center_s))
    forward = np.clip(np.diff(drive.center_s), 0.0, None)
    counted = ~(drive.off_road[1:] | drive.wrong_way[1:])
    driven = float(step_m.sum())
    rc = float(min(1.0, (forward * counted).sum() / record.route.length_m))
    collided = sorted({a for _, a, at_fault in drive.collisions if at_fault})
    runs = stop_lines_run(record, drive)
    penalty = COLLISION_PENALTY ** len(collided) * STOP_PENALTY ** runs
    decided = [(ep.meta_action, ok) for ep in episodes(record) if ep.meta_action != "keep_lane"
               for ok in [_achieved(ep, record, drive)] if ok is not None]
    steps = len(record.stale)
    lat = np.asarray(record.latencies_s) * 1e3
    minutes = steps * DT_S / 60
    return {
        "policy": record.policy, "route_id": record.route.route_id, "scenario": record.route.scenario,
        "clip_seed": str(record.route.clip_seed), "mission": record.route.mission,
        "seconds": steps * DT_S, "terminated": record.terminated,
        "route_completion": rc, "infraction_penalty": penalty, "driving_score": rc * penalty,
        "collisions": len(collided), "collided_track_ids": json.dumps([int(record.route.world.tracks[a].track_id)
                                                                      for a in collided]),
        "offroad_share": float((step_m * drive.off_road[1:]).sum() / driven) if driven > 0 else 0.0,
        "wrong_way_share": float((step_m * drive.wrong_way[1:]).sum() / driven) if driven > 0 else 0.0,
        "stop_lines_run": runs,
        "commands": json.dumps([[c.t_s, c.meta_action, c.text] for c in record.commands]),
        "maneuvers": len(decided), "maneuvers_done": sum(ok for _, ok in decided),
        "command_success": (sum(ok for _, ok in decided) / len(decided)) if decided else None,
        "comfort": comfort_share(record),
        "interventions": len(record.interventions),
        "interventions_per_min": len(record.interventions) / minutes if minutes else 0.0,
        "intervention_log": json.dumps([[i.t_s, list(i.reasons), i.fallback] for i in record.interventions]),
        "steps": steps, "stale_steps": int(record.stale.sum()),
        "stale_share": float(record.stale.mean()) if steps else 0.0,
        "plans": len(lat),
        "plan_p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "plan_p95_ms": float(np.percentile(lat, 95)) if len(lat) else None,
        "render_ms": float(np.mean(record.render_s) * 1e3) if record.render_s else None,
        "distance_m": driven,
    }


def summarize(rows: Sequence[dict], *, seed: int = 0) -> list[dict]:
    """Mean [95% interval over routes] per (policy, scenario) and per (policy, all) for SUMMARY_METRICS."""
    out = []
    for policy in dict.fromkeys(r["policy"] for r in rows):
        mine = [r for r in rows if r["policy"] == policy]
        for group in ["all", *sorted({r["scenario"] for r in mine})]:
            sel = [r for r in mine if group in ("all", r["scenario"])]
            for m in SUMMARY_METRICS:
                vals = [(r[m], r["route_id"]) for r in sel if r[m] is not None]
                if not vals:
                    continue
                est = clip_bootstrap([v for v, _ in vals], [c for _, c in vals], seed=seed)
                out.append({"policy": policy, "group": group, "metric": m, "mean": est.mean, "lo": est.lo,
                            "hi": est.hi, "routes": est.clips})
    return out


def table_md(summary: Sequence[dict], group: str = "all", metrics: Sequence[str] = SUMMARY_METRICS) -> str:
    """policy × metric, `mean [lo, hi]` over the group's routes."""
    cell = {(s["policy"], s["metric"]): s for s in summary if s["group"] == group}
    policies = list(dict.fromkeys(s["policy"] for s in summary if s["group"] == group))
    routes = {p: max((s["routes"] for s in summary if s["group"] == group and s["policy"] == p), default=0)
              for p in policies}
    head = "| policy | routes | " + " | ".join(metrics) + " |"
    lines = [head, "|" + "---|" * (len(metrics) + 2)]
    for p in policies:
        vals = [f"{cell[p, m]['mean']:.2f} [{cell[p, m]['lo']:.2f}, {cell[p, m]['hi']:.2f}]" if (p, m) in cell else "–"
                for m in metrics]
        lines.append(f"| {p} | {routes[p]} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def scenario_table_md(summary: Sequence[dict], metric: str = "driving_score") -> str:
    """scenario × policy for one metric, `mean [lo, hi]` over routes."""
    policies = list(dict.fromkeys(s["policy"] for s in summary))
    groups = [*sorted({s["group"] for s in summary} - {"all"}), "all"]
    cell = {(s["group"], s["policy"]): s for s in summary if s["metric"] == metric}
    lines = [f"| {metric} | " + " | ".join(policies) + " |", "|" + "---|" * (len(policies) + 1)]
    for g in groups:
        vals = [f"{cell[g, p]['mean']:.2f} [{cell[g, p]['lo']:.2f}, {cell[g, p]['hi']:.2f}]" if (g, p) in cell else "–"
                for p in policies]
        lines.append(f"| {g} | " + " | ".join(vals) + " |")
    return "\n".join(lines)
