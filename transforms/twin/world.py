"""The twin's world: a road with lanes and curves, other traffic, stop lines, and a driver model.

Everything is simulated in Frenet coordinates (s along the reference line, d to the left of it)
and turned into Cartesian poses at the end, so lane keeping, following, stopping and lane changes
are simple one-dimensional rules, yet the resulting ego motion is smooth and physical: speed
comes from an Intelligent Driver Model (IDM) with a first-order acceleration lag, lateral motion
from quintic lane-change profiles. The driver model records its intent at every step: that is the
ground truth a Commander labeler is checked against.

Frames: the reference line is the centre of lane 0, the rightmost lane of the ego's direction;
lane i's centre is at d = i·w, the oncoming lane at d = n_lanes·w. The final poses are expressed
in PAI's anchor frame (ego rear axle at clip t = 0 is the origin, yaw 0 there).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline

from labelers.trace import META_ACTIONS

SIM_DT_S = 0.01  # 100 Hz, the rate of PAI's egomotion
GO_DONE_MPS = 6.0  # "go" (pulling away from a stop) ends here
ROAD_DS_M = 0.5

# the driver model records its intent in the Commander vocabulary itself
INTENTS = META_ACTIONS

SCENARIOS = (
    "cruise",
    "follow",
    "stop_and_go",
    "lane_change_left",
    "lane_change_right",
    "overtake_left",
    "turn",
    "speed_change",
)

VEHICLE_CLASSES = {
    # label: (length, width, height) in metres
    "car": (4.6, 1.85, 1.5),
    "van": (5.2, 2.0, 2.1),
    "truck": (10.0, 2.5, 3.4),
}


@dataclass(frozen=True)
class Road:
    """A reference polyline sampled every ROAD_DS_M metres, with its lanes and stop lines."""

    s_m: np.ndarray  # (N,)
    x_m: np.ndarray  # (N,) anchor frame once `to_anchor` was applied
    y_m: np.ndarray  # (N,)
    heading_rad: np.ndarray  # (N,) unwrapped
    curvature_1pm: np.ndarray  # (N,)
    n_lanes: int
    oncoming_lanes: int
    lane_width_m: float
    stop_lines_s_m: tuple[float, ...]

    def __post_init__(self) -> None:
        # A C2 spline through the samples: linear interpolation would kink the ego's velocity at
        # every sample and show up as acceleration spikes in the egomotion.
        object.__setattr__(self, "_xy", CubicSpline(self.s_m, np.c_[self.x_m, self.y_m], extrapolate=True))

    def at(self, s_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, heading) of the reference line at arc lengths s."""
        xy = self._xy(s_m)
        return xy[..., 0], xy[..., 1], np.interp(s_m, self.s_m, self.heading_rad)

    def curvature_at(self, s_m: np.ndarray | float) -> np.ndarray:
        return np.interp(s_m, self.s_m, self.curvature_1pm)

    def frenet_to_xy(self, s_m: np.ndarray, d_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y, h = self.at(s_m)
        return x - d_m * np.sin(h), y + d_m * np.cos(h)

    def xy_to_frenet(
        self, x_m: np.ndarray, y_m: np.ndarray, s_guess_m: np.ndarray, iterations: int = 3
    ) -> tuple[np.ndarray, np.ndarray]:
        """Project points onto the reference line by Newton steps from a nearby guess."""
        s = np.clip(s_guess_m, self.s_m[0], self.s_m[-1])
        for _ in range(iterations):
            rx, ry, h = self.at(s)
            s = np.clip(s + (x_m - rx) * np.cos(h) + (y_m - ry) * np.sin(h), self.s_m[0], self.s_m[-1])
        rx, ry, h = self.at(s)
        return s, -(x_m - rx) * np.sin(h) + (y_m - ry) * np.cos(h)

    def lane_center_d(self, lane: int) -> float:
        return lane * self.lane_width_m

    @property
    def right_edge_d(self) -> float:
        return -0.5 * self.lane_width_m

    @property
    def left_edge_d(self) -> float:
        return (self.n_lanes + self.oncoming_lanes - 0.5) * self.lane_width_m

    @property
    def divider_d(self) -> float:
        return (self.n_lanes - 0.5) * self.lane_width_m


@dataclass(frozen=True)
class Track:
    """One vehicle's motion on the simulation grid (Frenet and anchor-frame Cartesian)."""

    track_id: int
    label_class: str
    length_m: float
    width_m: float
    height_m: float
    color_rgb: tuple[int, int, int]
    s_m: np.ndarray
    d_m: np.ndarray
    speed_mps: np.ndarray  # signed along +s: oncoming traffic is negative
    x_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    yaw_rad: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass(frozen=True)
class EgoMotion:
    """Ego rear-axle motion on the simulation grid, anchor frame."""

    t_us: np.ndarray  # (T,) int64, the egomotion timestamps
    x_m: np.ndarray
    y_m: np.ndarray
    yaw_rad: np.ndarray
    vx_mps: np.ndarray  # velocity vector, anchor frame
    vy_mps: np.ndarray
    ax_mps2: np.ndarray
    ay_mps2: np.ndarray
    speed_mps: np.ndarray
    curvature_1pm: np.ndarray
    s_m: np.ndarray
    d_m: np.ndarray
    lane: np.ndarray  # (T,) int, lane the ego is in (nearest centre)
    intent: np.ndarray  # (T,) str, from INTENTS
    lead_track_id: np.ndarray  # (T,) int, -1 when none constrains the ego
    lead_gap_m: np.ndarray  # (T,) float, nan when none
    stop_line_dist_m: np.ndarray  # (T,) float, nan when no stop line ahead within 150 m


@dataclass(frozen=True)
class World:
    clip_seed: int
    scenario: str
    road: Road
    ego: EgoMotion
    tracks: tuple[Track, ...]
    desired_speed_mps: float


# ---------------------------------------------------------------- road


def _build_road(rng: np.random.Generator, scenario: str, length_m: float, speed_mps: float) -> Road:
    """Curvature profile of straights, gentle curves and clothoid ramps; one sharp turn if asked."""
    s = np.arange(-150.0, length_m + 1e-9, ROAD_DS_M)
    kappa = np.zeros_like(s)
    pos = -150.0
    while pos < length_m:
        seg = rng.uniform(60, 220)
        if rng.random() < 0.5:
            radius = np.inf
        else:
            # gentler curves at speed: lateral acceleration below ~1.5 m/s^2
            radius = max(rng.uniform(150, 900), speed_mps**2 / 1.5)
        k = 0.0 if np.isinf(radius) else rng.choice([-1.0, 1.0]) / radius
        ramp = 25.0
        m = (s >= pos) & (s < pos + seg + 2 * ramp)
        # trapezoid: ramp up, hold, ramp down (a clothoid in, an arc, a clothoid out)
        local = s[m] - pos
        prof = np.clip(np.minimum(local / ramp, (seg + 2 * ramp - local) / ramp), 0.0, 1.0)
        kappa[m] += k * prof
        pos += seg + 2 * ramp
    if scenario == "turn":
        # a sharp bend (an intersection-like turn) a few seconds ahead of the ego
        start, radius, arc = speed_mps * rng.uniform(3, 7), rng.uniform(25, 40), rng.uniform(25, 45)
        local = s - start
        prof = np.clip(np.minimum(local / 12.0, (arc + 24.0 - local) / 12.0), 0.0, 1.0)
        kappa = np.where(prof > 0, rng.choice([-1.0, 1.0]) / radius * prof, kappa)
    heading = np.concatenate([[0.0], np.cumsum(0.5 * (kappa[1:] + kappa[:-1]) * ROAD_DS_M)])
    x = np.concatenate([[0.0], np.cumsum(0.5 * (np.cos(heading[1:]) + np.cos(heading[:-1])) * ROAD_DS_M)])
    y = np.concatenate([[0.0], np.cumsum(0.5 * (np.sin(heading[1:]) + np.sin(heading[:-1])) * ROAD_DS_M)])
    n_lanes = 3 if rng.random() < 0.35 else 2
    stop_lines: tuple[float, ...] = ()
    return Road(s, x, y, heading, kappa, n_lanes, 1, float(rng.uniform(3.3, 3.7)), stop_lines)


# ---------------------------------------------------------------- driver model


@dataclass
class _LaneChange:
    t0_s: float
    duration_s: float
    d_from_m: float
    d_to_m: float
    intent: str

    def d_at(self, t_s: float) -> tuple[float, bool]:
        u = np.clip((t_s - self.t0_s) / self.duration_s, 0.0, 1.0)
        q = 10 * u**3 - 15 * u**4 + 6 * u**5  # quintic: zero lateral speed and acceleration at both ends
        return self.d_from_m + (self.d_to_m - self.d_from_m) * q, 0.0 < u < 1.0


def _idm_accel(v: float, v_des: float, gap: float, dv: float) -> float:
    a_max, b_comf, s0, headway = 1.6, 2.2, 3.0, 1.4
    v_des = max(v_des, 0.1)
    free = max(1.0 - (v / v_des) ** 4, -0.8)  # above the desired speed, brake gently, not in a panic
    if not np.isfinite(gap):
        return a_max * free
    s_star = s0 + max(0.0, v * headway + v * dv / (2 * np.sqrt(a_max * b_comf)))
    return a_max * (free - (s_star / max(gap, 0.1)) ** 2)


def simulate(clip_seed: int, seconds: float, scenario: str | None = None, speed_mps: float | None = None) -> World:
    """Simulate one clip deterministically from its seed (optionally forcing scenario and speed).

    Returns the world in the anchor frame: the ego at t = 0 sits at the origin with yaw 0.
    """
    rng = np.random.default_rng(clip_seed)
    scenario = scenario or str(rng.choice(SCENARIOS))
    highway = scenario in ("cruise", "lane_change_left", "lane_change_right", "speed_change") and rng.random() < 0.6
    v_des = float(rng.uniform(24, 32) if highway else rng.uniform(8, 15))
    if scenario == "overtake_left":
        v_des = float(rng.uniform(14, 22))
    if speed_mps is not None:
        v_des = float(speed_mps)
    # egomotion begins ~0.2 s before the clip and runs past its end (docs §2: never exactly 0..20 s)
    t_start_us = -int(rng.integers(150_000, 260_000))
    n_steps = int(np.ceil((seconds + 1.0 - t_start_us / 1e6) / SIM_DT_S)) + 1
    t_us = t_start_us + np.arange(n_steps, dtype=np.int64) * int(SIM_DT_S * 1e6)
    t_s = t_us / 1e6

    road_len = v_des * (seconds + 2) + 400.0
    road = _build_road(rng, scenario, road_len, v_des)
    w = road.lane_width_m
    ego_lane = 0 if scenario in ("lane_change_left", "overtake_left") else int(rng.integers(0, road.n_lanes))
    if scenario == "lane_change_right":
        ego_lane = road.n_lanes - 1
    if road.n_lanes == 1 and scenario.startswith("lane_change"):
        scenario = "cruise"

    # -- other traffic, as constant-speed-ish Frenet tracks (computed on the full grid up front)
    tracks: list[Track] = []

    def add_track(label: str, s0: float, lane_d: float, speed: float, wobble: float = 0.3) -> int:
        tid = len(tracks) + 1
        length, width, height = VEHICLE_CLASSES[label]
        phase = rng.uniform(0, 2 * np.pi)
        v = speed + wobble * np.sin(0.3 * t_s + phase)
        s = s0 + np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * SIM_DT_S)])
        color = tuple(int(c) for c in rng.integers(40, 230, size=3))
        if label == "truck":
            color = (235, 235, 230) if rng.random() < 0.5 else (200, 110, 40)
        tracks.append(Track(tid, label, length, width, height, color, s, np.full(n_steps, lane_d), v))
        return tid

    stop_lines: list[float] = []
    speed_change_at = np.inf
    v_des_after = v_des
    if scenario == "follow":
        add_track(str(rng.choice(["car", "van", "truck"])), float(rng.uniform(25, 45)), road.lane_center_d(ego_lane),
                  v_des * float(rng.uniform(0.55, 0.8)))
    elif scenario == "overtake_left":
        add_track("truck", float(rng.uniform(60, 80)), road.lane_center_d(0), v_des * float(rng.uniform(0.4, 0.55)), 0.1)
    elif scenario == "stop_and_go":
        stop_lines.append(float(v_des * rng.uniform(2.5, 4.0) + 15.0))
    elif scenario == "speed_change":
        speed_change_at = float(rng.uniform(4.0, max(4.5, seconds - 8.0)))
        v_des_after = v_des * float(rng.choice([0.55, 1.35]))
    # oncoming traffic and a neighbour in another lane, for realism
    for _ in range(int(rng.integers(1, 4))):
        add_track(str(rng.choice(["car", "car", "van", "truck"])), float(rng.uniform(60, road_len - 50)),
                  road.lane_center_d(road.n_lanes), -float(rng.uniform(8, 20)))
    if road.n_lanes > 1 and scenario not in ("overtake_left", "lane_change_left", "lane_change_right"):
        other = [lane for lane in range(road.n_lanes) if lane != ego_lane]
        add_track("car", float(rng.uniform(-40, 80)), road.lane_center_d(int(rng.choice(other))),
                  v_des * float(rng.uniform(0.9, 1.15)))
    road = Road(road.s_m, road.x_m, road.y_m, road.heading_rad, road.curvature_1pm, road.n_lanes,
                road.oncoming_lanes, road.lane_width_m, tuple(stop_lines))

    # -- the ego, step by step
    s, d, v, a = 0.0, road.lane_center_d(ego_lane), float(v_des * rng.uniform(0.9, 1.0)), 0.0
    if scenario == "speed_change" and v_des_after > v_des:
        v = v_des
    # human lane-keeping sway along the road (so it stops when the car stops)
    lat_phase, lat_amp, lat_wave = rng.uniform(0, 2 * np.pi), rng.uniform(0.03, 0.12), rng.uniform(150, 300)
    change: _LaneChange | None = None
    overtake_state = "none"  # none -> out -> passing -> back -> done
    planned_change_t = float(rng.uniform(3.0, max(3.5, seconds - 9.0)))
    stop_state = "none" if stop_lines else "done"  # none -> stopping -> waiting -> go -> done
    wait_until = 0.0
    out = {k: np.zeros(n_steps) for k in ("s", "d", "v", "a", "gap", "stopd")}
    intent = np.empty(n_steps, dtype=object)
    lead_ids = np.full(n_steps, -1, dtype=np.int64)
    ego_len_front = 3.8  # rear axle to front bumper
    for k in range(n_steps):
        tk = t_s[k]
        cur_v_des = v_des if tk < speed_change_at else v_des_after
        # curve speed: keep lateral acceleration under 2 m/s^2 for the sharpest curvature ahead
        look = s + np.linspace(0, max(v, 5) * 5.0 + 30, 16)
        kmax = float(np.max(np.abs(road.curvature_at(look))))
        curve_cap = np.sqrt(2.0 / kmax) if kmax > 1e-6 else np.inf
        v_target = min(cur_v_des, curve_cap)
        # the lane(s) that matter for following: where the ego is and where it is going
        lanes_d = [d] if change is None else [d, change.d_to_m]
        gap, dv, lead = np.inf, 0.0, -1
        for tr in tracks:
            if tr.speed_mps[k] <= 0:
                continue
            if min(abs(tr.d_m[k] - ld) for ld in lanes_d) > 0.6 * w:
                continue
            g = tr.s_m[k] - 0.5 * tr.length_m - (s + ego_len_front)
            if -tr.length_m < g < gap and tr.s_m[k] > s:
                gap, dv, lead = max(g, 0.1), v - tr.speed_mps[k], tr.track_id
        stop_dist = np.nan
        if stop_state in ("none", "stopping", "waiting"):
            stop_dist = stop_lines[0] - (s + ego_len_front)
            if stop_state == "none" and stop_dist < v * v / (2 * 1.2) + 25:
                stop_state = "stopping"
            if stop_state == "stopping" and v < 0.05 and stop_dist < 6.0:
                stop_state, wait_until = "waiting", tk + float(rng.uniform(1.5, 3.0))
            if stop_state == "waiting" and tk >= wait_until:
                stop_state = "go"
            if stop_state in ("stopping", "waiting") and stop_dist + 1.0 < gap:
                gap, dv, lead = max(stop_dist + 1.0, 0.1), v, -1
        elif stop_state == "go" and v > min(0.85 * v_target, GO_DONE_MPS):
            stop_state = "done"  # pulled away: from here on it is ordinary speeding up

        # lateral decisions
        if change is None:
            if scenario in ("lane_change_left", "lane_change_right") and tk >= planned_change_t and planned_change_t >= 0:
                step = 1 if scenario == "lane_change_left" else -1
                target = int(np.clip(round(d / w) + step, 0, road.n_lanes - 1))
                intent_name = scenario.replace("lane_change", "change_lane")
                change = _LaneChange(tk, float(rng.uniform(3.5, 5.0)), d, road.lane_center_d(target), intent_name)
                planned_change_t = -1.0
            elif scenario == "overtake_left" and overtake_state == "none" and lead > 0 and gap < max(25.0, 2.2 * v) and tk > 1.0:
                change = _LaneChange(tk, 4.0, d, road.lane_center_d(1), "overtake_left")
                overtake_state = "out"
            elif scenario == "overtake_left" and overtake_state == "passing":
                truck = tracks[0]
                if s - ego_len_front - 12.0 > truck.s_m[k]:
                    change = _LaneChange(tk, 4.0, d, road.lane_center_d(0), "overtake_left")
                    overtake_state = "back"
        d_nom = d if change is None else change.d_at(tk)[0]
        if change is not None and tk >= change.t0_s + change.duration_s:
            d_nom = change.d_to_m
            change = None
            if overtake_state == "out":
                overtake_state = "passing"
            elif overtake_state == "back":
                overtake_state = "done"

        # longitudinal: IDM with a first-order lag on acceleration (drivers do not step-change a)
        a_cmd = _idm_accel(v, v_target, gap, dv)
        if overtake_state in ("out", "passing") and lead == tracks[0].track_id:
            a_cmd = max(a_cmd, 0.3)  # committed to the overtake: the truck is in the other lane
        a_cmd = float(np.clip(a_cmd, -6.0, 2.5))
        a += (a_cmd - a) * SIM_DT_S / 0.35
        v_next = max(0.0, v + a * SIM_DT_S)
        if v_next == 0.0:
            a = min(a, 0.0) if v > 0 else 0.0
        s += 0.5 * (v + v_next) * SIM_DT_S
        v = v_next
        d = d_nom

        # intent, by priority: what a Commander would have said at this moment
        if overtake_state in ("out", "passing", "back"):
            intent[k] = "overtake_left"
        elif change is not None:
            intent[k] = change.intent
        elif stop_state in ("stopping", "waiting"):
            intent[k] = "stop"
        elif stop_state == "go":
            intent[k] = "go"
        elif abs(float(road.curvature_at(s + 2.0 * v))) > 1 / 80 or abs(float(road.curvature_at(s))) > 1 / 80:
            intent[k] = "turn_left" if float(road.curvature_at(s + v)) + float(road.curvature_at(s)) > 0 else "turn_right"
        elif lead > 0 and gap < 2.5 * v + 12:
            intent[k] = "follow_lead"
        elif a > 0.4:
            intent[k] = "speed_up"
        elif a < -0.4:
            intent[k] = "slow_down"
        else:
            intent[k] = "keep_lane"
        out["s"][k], out["d"][k], out["v"][k], out["a"][k] = s, d, v, a
        out["gap"][k] = gap if lead != -1 or np.isfinite(gap) else np.nan
        out["stopd"][k] = stop_dist
        lead_ids[k] = lead

    # lane-keeping sway: tiny, smooth, and zero-mean, so it never reads as a lane change
    d_arr = out["d"] + lat_amp * np.sin(2 * np.pi * out["s"] / lat_wave + lat_phase)
    ego = _ego_cartesian(road, t_us, out["s"], d_arr, out["v"], out["a"])
    ego_lane_arr = np.clip(np.round(d_arr / w), 0, road.n_lanes - 1).astype(np.int64)
    gaps = np.where(np.isfinite(out["gap"]), out["gap"], np.nan)
    ego = EgoMotion(**{**ego, "lane": ego_lane_arr, "intent": intent.astype(str), "lead_track_id": lead_ids,
                       "lead_gap_m": gaps, "stop_line_dist_m": out["stopd"], "s_m": out["s"], "d_m": d_arr})
    return _to_anchor(World(clip_seed, scenario, road, ego, tuple(tracks), v_des))


def _ego_cartesian(
    road: Road, t_us: np.ndarray, s: np.ndarray, d: np.ndarray, v: np.ndarray, a: np.ndarray
) -> dict[str, np.ndarray]:
    """Cartesian pose, velocity, acceleration and curvature of the rear axle from its Frenet path."""
    x, y = road.frenet_to_xy(s, d)
    t_s = (t_us - t_us[0]) / 1e6
    ds = np.gradient(s, t_s)
    dd = np.gradient(d, t_s)
    kref = road.curvature_at(s)
    _, _, h = road.at(s)
    # heading of the motion; at standstill the car keeps the heading of its lane
    yaw = h + np.arctan2(dd, np.maximum(ds * (1 - kref * d), 1e-3))
    vx, vy = np.gradient(x, t_s), np.gradient(y, t_s)
    speed = np.hypot(vx, vy)
    ax, ay = np.gradient(vx, t_s), np.gradient(vy, t_s)
    yaw_rate = np.gradient(np.unwrap(yaw), t_s)
    curvature = np.where(speed > 0.5, yaw_rate / np.maximum(speed, 0.5), kref)
    return {"t_us": t_us, "x_m": x, "y_m": y, "yaw_rad": yaw, "vx_mps": vx, "vy_mps": vy, "ax_mps2": ax,
            "ay_mps2": ay, "speed_mps": speed, "curvature_1pm": curvature}


def _to_anchor(world: World) -> World:
    """Re-express everything so that the ego's rear axle at t = 0 is the origin with yaw 0."""
    e = world.ego
    t = e.t_us.astype(np.float64)
    x0, y0 = np.interp(0.0, t, e.x_m), np.interp(0.0, t, e.y_m)
    yaw0 = np.interp(0.0, t, np.unwrap(e.yaw_rad))
    c, s = np.cos(-yaw0), np.sin(-yaw0)

    def pts(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return c * (x - x0) - s * (y - y0), s * (x - x0) + c * (y - y0)

    def vec(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return c * x - s * y, s * x + c * y

    r = world.road
    rx, ry = pts(r.x_m, r.y_m)
    road = Road(r.s_m, rx, ry, r.heading_rad - yaw0, r.curvature_1pm, r.n_lanes, r.oncoming_lanes,
                r.lane_width_m, r.stop_lines_s_m)
    ex, ey = pts(e.x_m, e.y_m)
    evx, evy = vec(e.vx_mps, e.vy_mps)
    eax, eay = vec(e.ax_mps2, e.ay_mps2)
    ego = EgoMotion(e.t_us, ex, ey, e.yaw_rad - yaw0, evx, evy, eax, eay, e.speed_mps, e.curvature_1pm, e.s_m,
                    e.d_m, e.lane, e.intent, e.lead_track_id, e.lead_gap_m, e.stop_line_dist_m)
    tracks = []
    for tr in world.tracks:
        x, y = road.frenet_to_xy(tr.s_m, tr.d_m)
        _, _, h = road.at(tr.s_m)
        yaw = np.where(tr.speed_mps < 0, h + np.pi, h)
        tracks.append(Track(tr.track_id, tr.label_class, tr.length_m, tr.width_m, tr.height_m, tr.color_rgb,
                            tr.s_m, tr.d_m, tr.speed_mps, x, y, yaw))
    return World(world.clip_seed, world.scenario, road, ego, tuple(tracks), world.desired_speed_mps)
