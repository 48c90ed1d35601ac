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

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.interpolate import CubicSpline

from core.vocab import META_ACTIONS
from transforms.twin.driver import SIM_DT_S, Driver, Plan

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
    plan: Plan | None = None  # what the driver was asked to do: the closed loop's Commander and driver read it


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


# ---------------------------------------------------------------- traffic and the drive


@dataclass(frozen=True)
class _Grid:
    t_us: np.ndarray  # (T,) the simulation clock
    t_s: np.ndarray

    @property
    def n(self) -> int:
        return len(self.t_us)


def _draw_plan(rng: np.random.Generator, scenario: str | None, seconds: float,
               speed_mps: float | None) -> tuple[str, float, _Grid]:
    """The scenario, the desired speed and the clock, drawn in the twin's fixed order."""
    scenario = scenario or str(rng.choice(SCENARIOS))
    highway = scenario in ("cruise", "lane_change_left", "lane_change_right", "speed_change") and rng.random() < 0.6
    v_des = float(rng.uniform(24, 32) if highway else rng.uniform(8, 15))
    if scenario == "overtake_left":
        v_des = float(rng.uniform(14, 22))
    if speed_mps is not None:
        v_des = float(speed_mps)
    # egomotion begins ~0.2 s before the clip and runs past its end (docs/references.md, *PAI layout*: never exactly 0..20 s)
    t_start_us = -int(rng.integers(150_000, 260_000))
    n_steps = int(np.ceil((seconds + 1.0 - t_start_us / 1e6) / SIM_DT_S)) + 1
    t_us = t_start_us + np.arange(n_steps, dtype=np.int64) * int(SIM_DT_S * 1e6)
    return scenario, v_des, _Grid(t_us, t_us / 1e6)


def _add_track(rng: np.random.Generator, tracks: list[Track], grid: _Grid, label: str, s0: float, lane_d: float,
               speed: float, wobble: float = 0.3) -> None:
    """A constant-speed-ish Frenet track on the whole grid."""
    length, width, height = VEHICLE_CLASSES[label]
    phase = rng.uniform(0, 2 * np.pi)
    v = speed + wobble * np.sin(0.3 * grid.t_s + phase)
    s = s0 + np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * SIM_DT_S)])
    color = tuple(int(c) for c in rng.integers(40, 230, size=3))
    if label == "truck":
        color = (235, 235, 230) if rng.random() < 0.5 else (200, 110, 40)
    tracks.append(Track(len(tracks) + 1, label, length, width, height, color, s, np.full(grid.n, lane_d), v))


def _spawn(rng: np.random.Generator, scenario: str, road: Road, ego_lane: int, v_des: float, seconds: float,
           road_len: float, grid: _Grid) -> tuple[Road, tuple[Track, ...], Plan]:
    """The scenario's vehicles and stop lines, its speed change, then traffic for realism."""
    tracks: list[Track] = []
    stop_lines: list[float] = []
    speed_change_at, v_des_after = np.inf, v_des
    if scenario == "follow":
        _add_track(rng, tracks, grid, str(rng.choice(["car", "van", "truck"])), float(rng.uniform(25, 45)),
                   road.lane_center_d(ego_lane), v_des * float(rng.uniform(0.55, 0.8)))
    elif scenario == "overtake_left":  # the truck is track 1: the driver overtakes it
        _add_track(rng, tracks, grid, "truck", float(rng.uniform(60, 80)), road.lane_center_d(0),
                   v_des * float(rng.uniform(0.4, 0.55)), 0.1)
    elif scenario == "stop_and_go":
        stop_lines.append(float(v_des * rng.uniform(2.5, 4.0) + 15.0))
    elif scenario == "speed_change":
        speed_change_at = float(rng.uniform(4.0, max(4.5, seconds - 8.0)))
        v_des_after = v_des * float(rng.choice([0.55, 1.35]))
    for _ in range(int(rng.integers(1, 4))):  # oncoming traffic
        _add_track(rng, tracks, grid, str(rng.choice(["car", "car", "van", "truck"])),
                   float(rng.uniform(60, road_len - 50)), road.lane_center_d(road.n_lanes), -float(rng.uniform(8, 20)))
    if road.n_lanes > 1 and scenario not in ("overtake_left", "lane_change_left", "lane_change_right"):
        other = [lane for lane in range(road.n_lanes) if lane != ego_lane]  # a neighbour in another lane
        _add_track(rng, tracks, grid, "car", float(rng.uniform(-40, 80)), road.lane_center_d(int(rng.choice(other))),
                   v_des * float(rng.uniform(0.9, 1.15)))
    road = Road(road.s_m, road.x_m, road.y_m, road.heading_rad, road.curvature_1pm, road.n_lanes,
                road.oncoming_lanes, road.lane_width_m, tuple(stop_lines))
    return road, tuple(tracks), Plan(scenario, v_des, v_des_after, speed_change_at, np.nan)


def simulate(clip_seed: int, seconds: float, scenario: str | None = None, speed_mps: float | None = None) -> World:
    """Simulate one clip deterministically from its seed (optionally forcing scenario and speed).

    Returns the world in the anchor frame: the ego at t = 0 sits at the origin with yaw 0.
    """
    rng = np.random.default_rng(clip_seed)
    scenario, v_des, grid = _draw_plan(rng, scenario, seconds, speed_mps)
    road_len = v_des * (seconds + 2) + 400.0
    road = _build_road(rng, scenario, road_len, v_des)
    ego_lane = 0 if scenario in ("lane_change_left", "overtake_left") else int(rng.integers(0, road.n_lanes))
    if scenario == "lane_change_right":
        ego_lane = road.n_lanes - 1
    if road.n_lanes == 1 and scenario.startswith("lane_change"):
        scenario = "cruise"
    road, tracks, plan = _spawn(rng, scenario, road, ego_lane, v_des, seconds, road_len, grid)

    v0 = float(v_des * rng.uniform(0.9, 1.0))
    if scenario == "speed_change" and plan.v_des_after_mps > v_des:
        v0 = v_des
    # human lane-keeping sway along the road (so it stops when the car stops)
    lat_phase, lat_amp, lat_wave = rng.uniform(0, 2 * np.pi), rng.uniform(0.03, 0.12), rng.uniform(150, 300)
    plan = replace(plan, lane_change_at_s=float(rng.uniform(3.0, max(3.5, seconds - 9.0))))
    driver = Driver(road, tracks, plan, rng, s=0.0, d=road.lane_center_d(ego_lane), v=v0)
    out = {k: np.zeros(grid.n) for k in ("s", "d", "v", "a", "gap", "stopd")}
    intent = np.empty(grid.n, dtype=object)
    lead_ids = np.full(grid.n, -1, dtype=np.int64)
    for k in range(grid.n):
        intent[k], lead, stop_dist = driver.step(k, float(grid.t_s[k]))
        out["s"][k], out["d"][k], out["v"][k], out["a"][k] = driver.s, driver.d, driver.v, driver.a
        out["gap"][k] = lead.gap_m if lead.track_id != -1 or np.isfinite(lead.gap_m) else np.nan
        out["stopd"][k] = stop_dist
        lead_ids[k] = lead.track_id

    # lane-keeping sway: tiny, smooth, and zero-mean, so it never reads as a lane change
    d_arr = out["d"] + lat_amp * np.sin(2 * np.pi * out["s"] / lat_wave + lat_phase)
    ego = _ego_cartesian(road, grid.t_us, out["s"], d_arr, out["v"], out["a"])
    ego_lane_arr = np.clip(np.round(d_arr / road.lane_width_m), 0, road.n_lanes - 1).astype(np.int64)
    gaps = np.where(np.isfinite(out["gap"]), out["gap"], np.nan)
    ego = EgoMotion(**{**ego, "lane": ego_lane_arr, "intent": intent.astype(str), "lead_track_id": lead_ids,
                       "lead_gap_m": gaps, "stop_line_dist_m": out["stopd"], "s_m": out["s"], "d_m": d_arr})
    return _to_anchor(World(clip_seed, scenario, road, ego, tracks, v_des, plan))


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
    return World(world.clip_seed, world.scenario, road, ego, tuple(tracks), world.desired_speed_mps, world.plan)
