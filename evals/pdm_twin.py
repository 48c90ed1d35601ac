"""NAVSIM's PDM sub-scores (NC, DAC, DDC, TLC, TTC, EP, LK) for trajectories driven in a twin scene.

The rules follow NAVSIM's `PDMScorer` (docs/references.md, *NAVSIM*) over its 4 s horizon at 10 Hz, with the
twin standing in for the nuPlan map and the logged agents:
- drivable area = the road between its edges; lanes = the twin's lane strips; oncoming traffic =
  the ego's box centre beyond the divider;
- NC: the first contact with each agent is classified like nuPlan's `get_collision_type`
  (stopped ego: not at fault; stopped agent: at fault; agent behind: not at fault; front bumper
  contact: at fault; otherwise lateral, at fault only while in several lanes or off the road);
  tracks already touching the ego at t0 are ignored;
- TTC: the ego box pushed ahead at its speed by 0, 0.3, 0.6 and 0.9 s against the agents at those
  times; a hit counts when the agent is ahead (±30°), or when the ego is in several lanes or off
  the road and the agent is not behind it;
- DDC: metres driven with the box centre in the oncoming lane over any 1 s: < 2 m → 1, < 6 m → ½;
- EP: progress of the box centre along the road, divided by the larger of it and the reference
  plan's progress (each times its multiplier product); 1 when that maximum is ≤ 5 m;
- LK: 0 when the box centre is more than 0.5 m from the centre of its lane for 2 s on end;
- TLC: the twin has no traffic lights, so it is 1.
What is not reproduced: NAVSIM first tracks the plan with an LQR controller on a kinematic
bicycle model; here the plan's own poses are scored (the field agent emits 10 Hz (a, κ) that a
unicycle integrates, which is already a kinematically feasible path).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from core.windows import DT_S
from evals.boxes import (
    PACIFICA,
    VehicleShape,
    box_corners,
    boxes_intersect,
    ego_center,
    ego_corners,
    front_bumper,
    is_ahead,
    is_behind,
)
from evals.scene import ClipScene

HORIZON_STEPS = 40  # NAVSIM simulates 4 s at 10 Hz
STOPPED_EGO_MPS = 5e-2  # nuPlan's collision classification
TTC_STOPPED_MPS = 5e-3  # NAVSIM's TTC skips a standing ego
TTC_OFFSETS = (0, 3, 6, 9)  # steps of 0.1 s: the box pushed ahead by 0 .. 0.9 s
DDC_WINDOW_STEPS = 10
DDC_THRESHOLDS_M = (2.0, 6.0)
EP_MIN_PROGRESS_M = 5.0
LK_DEVIATION_M = 0.5
LK_STEPS = 21  # 2 s on end: 21 samples 0.1 s apart
SUB_SCORES = ("nc", "dac", "ddc", "tlc", "ttc", "lk")


@dataclass(frozen=True)
class EgoRollout:
    """Proposals (P) as rear-axle states over the horizon, t0 included: (P, 41) each, anchor frame."""

    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    speed: np.ndarray


def to_anchor(pose0: np.ndarray, xy: np.ndarray, yaw: np.ndarray, v0: float,
              steps: int = HORIZON_STEPS) -> EgoRollout:
    """Plans in the ego frame at t0 ((P, T, 2), (P, T), step i at t0 + 0.1 (i+1) s) -> EgoRollout from t0.

    Speeds are central differences of the poses, the measured v0 at t0.
    """
    xy, yaw = np.asarray(xy, np.float64)[:, :steps], np.asarray(yaw, np.float64)[:, :steps]
    if xy.ndim != 3 or xy.shape[1] < steps or yaw.shape != xy.shape[:2]:
        raise ValueError(f"need plans (P, >= {steps}, 2) and headings (P, >= {steps}), got {xy.shape}, {yaw.shape}")
    p = xy.shape[0]
    xy = np.concatenate([np.zeros((p, 1, 2)), xy], 1)
    yaw = np.concatenate([np.zeros((p, 1)), yaw], 1)
    x0, y0, h0 = (float(v) for v in pose0)
    c, s = np.cos(h0), np.sin(h0)
    ax, ay = x0 + c * xy[..., 0] - s * xy[..., 1], y0 + s * xy[..., 0] + c * xy[..., 1]
    speed = np.linalg.norm(np.gradient(xy, DT_S, axis=1), axis=-1)
    speed[:, 0] = v0
    return EgoRollout(ax, ay, yaw + h0, speed)


class _Frenet:
    """Projection of points onto a road's reference line: nearest sample, then Newton steps."""

    def __init__(self, scene: ClipScene) -> None:
        self.road = scene.road
        self.tree = cKDTree(np.c_[self.road.x_m, self.road.y_m])

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shape = np.shape(x)
        x, y = np.ravel(x), np.ravel(y)
        _, i = self.tree.query(np.c_[x, y])
        s, d = self.road.xy_to_frenet(x, y, self.road.s_m[i], iterations=2)
        return s.reshape(shape), d.reshape(shape)


@dataclass(frozen=True)
class EgoAreas:
    multiple_lanes: np.ndarray  # (P, T) bool
    off_road: np.ndarray  # (P, T) bool: a corner outside the drivable area
    oncoming: np.ndarray  # (P, T) bool: the box centre in the oncoming lane
    center_s: np.ndarray  # (P, T)
    center_d: np.ndarray  # (P, T)


def ego_areas(scene: ClipScene, ego: EgoRollout, shape: VehicleShape = PACIFICA,
              frenet: _Frenet | None = None) -> EgoAreas:
    frenet = frenet or _Frenet(scene)
    corners = ego_corners(ego.x, ego.y, ego.yaw, shape)
    _, dc = frenet(corners[..., 0], corners[..., 1])
    cx, cy = ego_center(ego.x, ego.y, ego.yaw, shape)
    s, d = frenet(cx, cy)
    on = scene.on_road(dc)
    lanes = scene.lane_of(dc)
    multiple = on.all(-1) & (lanes.max(-1) != lanes.min(-1))
    return EgoAreas(multiple, ~on.all(-1), d > scene.road.divider_d, s, d)


def agent_boxes(scene: ClipScene, t_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Agents at times (K,) -> corners (K, A, 4, 2) and states (K, A, 6)."""
    st = scene.agents_at(t_us).transpose(1, 0, 2)
    return box_corners(st[..., 0], st[..., 1], st[..., 2], st[..., 3], st[..., 4]), st


def score_rollouts(scene: ClipScene, t0_us: int, ego: EgoRollout, shape: VehicleShape = PACIFICA
                   ) -> dict[str, np.ndarray]:
    """Sub-scores (P,) of each proposal: nc, dac, ddc, tlc, ttc, lk, and progress_m (raw, for EP)."""
    p, n = ego.x.shape
    areas = ego_areas(scene, ego, shape)
    corners = ego_corners(ego.x, ego.y, ego.yaw, shape)  # (P, T, 4, 2)
    t_us = t0_us + np.arange(n + max(TTC_OFFSETS)) * round(DT_S * 1e6)
    a_corners, a_state = agent_boxes(scene, t_us)  # (K, A, 4, 2), (K, A, 6)
    n_agents = a_state.shape[1]
    out = {k: np.ones(p) for k in SUB_SCORES}
    initially = set(np.flatnonzero(boxes_intersect(corners[0, 0][None], a_corners[0]))) if n_agents else set()
    if n_agents:
        _collisions(out, ego, areas, corners, a_corners[:n], a_state[:n], initially)
        _ttc(out, ego, areas, corners, a_corners, a_state, initially)
    out["dac"] = np.where(areas.off_road.any(-1), 0.0, 1.0)
    cx, cy = ego_center(ego.x, ego.y, ego.yaw, shape)
    step = np.concatenate([np.zeros((p, 1)), np.hypot(np.diff(cx, axis=1), np.diff(cy, axis=1))], 1)
    onc = np.where(areas.oncoming, step, 0.0)
    csum = np.concatenate([np.zeros((p, 1)), np.cumsum(onc, 1)], 1)
    lo = np.maximum(np.arange(n) - DDC_WINDOW_STEPS, 0)
    worst = (csum[:, 1:] - csum[:, lo]).max(1)  # over [k - 1 s, k]
    out["ddc"] = np.where(worst < DDC_THRESHOLDS_M[0], 1.0, np.where(worst < DDC_THRESHOLDS_M[1], 0.5, 0.0))
    out["lk"] = np.where(_longest_run(_lane_deviation(scene, areas.center_d) > LK_DEVIATION_M) >= LK_STEPS, 0.0, 1.0)
    out["progress_m"] = np.clip(areas.center_s[:, -1] - areas.center_s[:, 0], 0.0, None)
    return out


def _lane_deviation(scene: ClipScene, d: np.ndarray) -> np.ndarray:
    w = scene.road.lane_width_m
    lane = np.clip(np.round(d / w), 0, scene.road.n_lanes - 1)
    return np.abs(d - lane * w)


def _longest_run(mask: np.ndarray) -> np.ndarray:
    """Longest run of consecutive True along the last axis."""
    best = np.zeros(mask.shape[:-1], np.int64)
    run = np.zeros(mask.shape[:-1], np.int64)
    for k in range(mask.shape[-1]):
        run = np.where(mask[..., k], run + 1, 0)
        best = np.maximum(best, run)
    return best


def collision_events(ego: EgoRollout, areas: EgoAreas, corners: np.ndarray, a_corners: np.ndarray,
                     a_state: np.ndarray, initially: set[int]) -> list[list[tuple[int, int, bool]]]:
    """Per proposal, each agent's first counted contact (step, agent, at fault), classified as nuPlan's
    `get_collision_type` does; a contact the ego is not at fault for ignores that agent afterwards."""
    hits = boxes_intersect(corners[:, :, None], a_corners[None])  # (P, T, A)
    bumper = front_bumper(corners)
    events: list[list[tuple[int, int, bool]]] = []
    for pi in range(hits.shape[0]):
        ignored, mine = set(initially), []
        for k, a in zip(*np.nonzero(hits[pi]), strict=True):  # time order
            if a in ignored:
                continue
            ax_, ay_ = a_state[k, a, 0], a_state[k, a, 1]
            if ego.speed[pi, k] <= STOPPED_EGO_MPS:
                at_fault = False  # hit while standing
            elif abs(a_state[k, a, 5]) <= STOPPED_EGO_MPS:
                at_fault = True  # drove into a standing vehicle
            elif is_behind(ego.x[pi, k], ego.y[pi, k], ego.yaw[pi, k], ax_, ay_):
                at_fault = False  # rear-ended by the other
            elif boxes_intersect(bumper[pi, k], a_corners[k, a]):
                at_fault = True  # front collision
            else:  # lateral: at fault when the ego straddles lanes or left the road
                at_fault = bool(areas.multiple_lanes[pi, k] or areas.off_road[pi, k])
            mine.append((int(k), int(a), at_fault))
            ignored.add(a)
        events.append(mine)
    return events


def _collisions(out: dict[str, np.ndarray], ego: EgoRollout, areas: EgoAreas, corners: np.ndarray,
                a_corners: np.ndarray, a_state: np.ndarray, initially: set[int]) -> None:
    for pi, events in enumerate(collision_events(ego, areas, corners, a_corners, a_state, initially)):
        if any(at_fault for _, _, at_fault in events):
            out["nc"][pi] = 0.0


def _ttc(out: dict[str, np.ndarray], ego: EgoRollout, areas: EgoAreas, corners: np.ndarray, a_corners: np.ndarray,
         a_state: np.ndarray, initially: set[int]) -> None:
    p, n = ego.x.shape
    offs = np.array(TTC_OFFSETS)
    velocity = np.stack([np.cos(ego.yaw), np.sin(ego.yaw)], -1) * ego.speed[..., None]  # (P, T, 2)
    moved = corners[:, :, None] + (velocity[:, :, None, None] * (offs * DT_S)[None, None, :, None, None])
    at = np.arange(n)[:, None] + offs[None]  # (T, O): the agents' step for each projection
    hits = boxes_intersect(moved[:, :, :, None], a_corners[at][None])  # (P, T, O, A)
    for pi in range(p):
        ignored = set(initially)
        for k, o, a in zip(*np.nonzero(hits[pi]), strict=True):  # time order, then projection order
            if a in ignored or ego.speed[pi, k] < TTC_STOPPED_MPS:
                continue
            ax_, ay_ = a_state[at[k, o], a, 0], a_state[at[k, o], a, 1]
            x, y, h = ego.x[pi, k], ego.y[pi, k], ego.yaw[pi, k]
            straddling = areas.multiple_lanes[pi, k] or areas.off_road[pi, k]
            if is_ahead(x, y, h, ax_, ay_) or (straddling and not is_behind(x, y, h, ax_, ay_)):
                out["ttc"][pi] = 0.0
                break
            ignored.add(a)


def ego_progress(progress_m: np.ndarray, multipliers: np.ndarray, ref_progress_m: float,
                 ref_multiplier: float) -> np.ndarray:
    """EP (P,): each proposal's progress against the reference plan's, as NAVSIM normalises it."""
    raw = np.asarray(progress_m, np.float64) * multipliers
    best = np.maximum(raw, ref_progress_m * ref_multiplier)
    return np.where(best > EP_MIN_PROGRESS_M, raw / np.where(best > 0, best, 1.0),
                    np.where(np.asarray(multipliers) > 0, 1.0, 0.0))


def human_filter(scores: dict[str, np.ndarray], human: dict[str, float]) -> tuple[dict[str, np.ndarray], list[str]]:
    """NAVSIM's human penalty filter: a sub-score the logged driver fails (0) is set to 1 for everyone."""
    out = dict(scores)
    filtered = [k for k, v in human.items() if k in scores and v == 0.0]
    for k in filtered:
        out[k] = np.ones_like(np.asarray(scores[k], np.float64))
    return out, filtered
