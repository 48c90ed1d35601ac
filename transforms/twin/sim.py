"""The twin as a closed-loop simulator: the ego drives by (a, κ), the others react, the camera follows.

`TwinEnv` steps a twin world (transforms/twin/world.py) at 10 Hz:
- the ego integrates the commanded (acceleration, curvature) with the unicycle model the actions are
  defined in (transforms/unicycle.py `integrate_unicycle`), clipped to Alpamayo-R1's action bounds
  and never reversing;
- the other vehicles either replay their log or react: each follows its logged speed unless the
  twin's Intelligent Driver Model (transforms/twin/driver.py) has it brake for what is ahead in its
  lane, the ego included (a car the ego cuts in front of slows down; one the ego stops in front of
  stops);
- the front camera is rendered from the pose the ego actually reached, through the clip's lens.

`DriverPolicy` is the twin's own driver model driving the same ego through the same (a, κ)
interface: the privileged upper bound of the closed-loop evaluation.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from core.windows import DT_S, N_FUT
from transforms.twin.driver import IDM_S0_M, LANE_MATCH, SIM_DT_S, Driver, Plan, idm_accel
from transforms.twin.render import FrameRenderer, FThetaCamera
from transforms.twin.world import Track, World
from transforms.unicycle import UnicycleParams

_BOUNDS = UnicycleParams()
ACCEL_BOUND_MPS2 = _BOUNDS.accel_bound  # Alpamayo-R1's action_space_cfg: |a| <= 9.8 m/s^2
CURVATURE_BOUND_1PM = _BOUNDS.curvature_bound  # |κ| <= 0.33 1/m
# The ego's footprint from its rear axle: nuPlan's Pacifica, which the scoring uses too (evals/boxes.py).
EGO_LENGTH_M, EGO_WIDTH_M, EGO_REAR_AXLE_TO_CENTER_M = 5.176, 2.297, 1.461
SUBSTEPS = round(DT_S / SIM_DT_S)  # the driver model thinks at 100 Hz
PURSUIT_MIN_LOOKAHEAD_M, PURSUIT_LOOKAHEAD_S = 6.0, 0.8


@dataclass(frozen=True)
class EgoState:
    """The ego's rear axle in the world's anchor frame, with the controls it last applied."""

    x_m: float
    y_m: float
    yaw_rad: float
    v_mps: float
    a_mps2: float
    kappa_1pm: float
    s_m: float  # Frenet coordinates on the road's reference line
    d_m: float

    @property
    def center_s_m(self) -> float:
        return self.s_m + EGO_REAR_AXLE_TO_CENTER_M


def unicycle_step(x: float, y: float, yaw: float, v: float, accel: float, kappa: float,
                  dt: float = DT_S) -> tuple[float, float, float, float, float]:
    """One step of the action space's unicycle (the update `integrate_unicycle` makes), stopping at v = 0.

    Returns x, y, yaw, v after the step and the acceleration that was actually applied.
    """
    accel = max(accel, -v / dt)  # brake to a stand, never into reverse
    v1 = v + accel * dt
    yaw1 = yaw + kappa * v * dt + kappa * accel * dt * dt / 2
    x1 = x + 0.5 * dt * (v * np.cos(yaw) + v1 * np.cos(yaw1))
    y1 = y + 0.5 * dt * (v * np.sin(yaw) + v1 * np.sin(yaw1))
    return float(x1), float(y1), float(yaw1), float(v1), float(accel)


def clip_controls(accel: np.ndarray | float, kappa: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    return (np.clip(accel, -ACCEL_BOUND_MPS2, ACCEL_BOUND_MPS2),
            np.clip(kappa, -CURVATURE_BOUND_1PM, CURVATURE_BOUND_1PM))


class TwinEnv:
    """One twin world as a 10 Hz closed-loop simulation starting at the clip's t = 0."""

    def __init__(self, world: World, *, reactive: bool = True, camera: FThetaCamera | None = None) -> None:
        self.world, self.road, self.reactive = world, world.road, reactive
        e = world.ego
        self._t_log = e.t_us.astype(np.float64)
        at = lambda a: float(np.interp(0.0, self._t_log, a))  # noqa: E731 - the log at t = 0
        accel = np.gradient(e.speed_mps, self._t_log / 1e6)  # the speed's rate: the unicycle's a
        self.ego = EgoState(at(e.x_m), at(e.y_m), at(np.unwrap(e.yaw_rad)), at(e.speed_mps), at(accel),
                            at(e.curvature_1pm), at(e.s_m), at(e.d_m))
        self.k, self.t_s = 0, 0.0
        tracks = world.tracks
        self._len = np.array([t.length_m for t in tracks])
        self._wid = np.array([t.width_m for t in tracks])
        self._s = np.array([np.interp(0.0, self._t_log, t.s_m) for t in tracks])
        self._d = np.array([np.interp(0.0, self._t_log, t.d_m) for t in tracks])
        self._v = np.array([np.interp(0.0, self._t_log, t.speed_mps) for t in tracks])
        # each vehicle's direction along the road, from its log: a stopped oncoming car stays oncoming
        self._dir = np.array([1.0 if np.mean(t.speed_mps) >= 0 else -1.0 for t in tracks])
        self.renderer = FrameRenderer(world, camera) if camera is not None else None
        self.render_s: list[float] = []

    # -- the other vehicles

    def agents(self) -> np.ndarray:
        """(A, 6) the other vehicles now: centre x, y, yaw, length, width, signed speed (evals.scene layout)."""
        tracks = self.world.tracks
        if not tracks:
            return np.zeros((0, 6))
        if not self.reactive:
            t = self.t_s * 1e6
            return np.array([[np.interp(t, self._t_log, tr.x_m), np.interp(t, self._t_log, tr.y_m),
                              np.interp(t, self._t_log, np.unwrap(tr.yaw_rad)), tr.length_m, tr.width_m,
                              np.interp(t, self._t_log, tr.speed_mps)] for tr in tracks])
        x, y = self.road.frenet_to_xy(self._s, self._d)
        _, _, h = self.road.at(self._s)
        yaw = np.where(self._dir < 0, h + np.pi, h)
        return np.c_[x, y, yaw, self._len, self._wid, self._v]

    def frenet(self) -> tuple[np.ndarray, np.ndarray]:
        """(A,) s and d of the other vehicles' centres now."""
        if self.reactive or not self.world.tracks:
            return self._s.copy(), self._d.copy()
        t = self.t_s * 1e6
        return (np.array([np.interp(t, self._t_log, tr.s_m) for tr in self.world.tracks]),
                np.array([np.interp(t, self._t_log, tr.d_m) for tr in self.world.tracks]))

    def _react(self) -> None:
        """Advance the reactive vehicles one step: their logged speed, unless IDM brakes for a leader."""
        w = self.road.lane_width_m
        ego_rear, ego_front = self.ego.center_s_m - EGO_LENGTH_M / 2, self.ego.center_s_m + EGO_LENGTH_M / 2
        t1 = (self.t_s + DT_S) * 1e6
        for i, tr in enumerate(self.world.tracks):
            sign = self._dir[i]
            v_abs = abs(self._v[i])
            v_log = abs(float(np.interp(t1, self._t_log, tr.speed_mps)))
            front = self._s[i] + sign * self._len[i] / 2
            gap, dv = np.inf, 0.0
            same = (np.abs(self._d - self._d[i]) < LANE_MATCH * w) & (self._dir == sign)
            for j in np.flatnonzero(same):
                g = sign * (self._s[j] - front) - self._len[j] / 2
                if j != i and 0 < sign * (self._s[j] - self._s[i]) and g < gap:
                    gap, dv = g, v_abs - abs(self._v[j])
            if abs(self.ego.d_m - self._d[i]) < LANE_MATCH * w:
                g = (ego_rear - front) if sign > 0 else (front - ego_front)
                if sign * (self.ego.center_s_m - self._s[i]) > 0 and -self._len[i] < g < gap:
                    gap, dv = max(g, 0.1), v_abs - self.ego.v_mps * sign
            if np.isfinite(gap) and gap < max(IDM_S0_M * 4, 3.0 * v_abs):
                a = idm_accel(v_abs, max(v_log, 0.1), gap, dv)
            else:
                a = (v_log - v_abs) / DT_S
            v1 = max(0.0, v_abs + a * DT_S)
            self._s[i] += sign * 0.5 * (v_abs + v1) * DT_S
            self._v[i] = sign * v1
            self._d[i] = float(np.interp(t1, self._t_log, tr.d_m))

    # -- the ego

    def step(self, accel: float, kappa: float) -> EgoState:
        """Apply (a, κ) for 0.1 s (clipped to the action bounds) and move everyone on."""
        a, k = (float(v) for v in clip_controls(accel, kappa))
        if self.reactive:
            self._react()
        e = self.ego
        x, y, yaw, v, a = unicycle_step(e.x_m, e.y_m, e.yaw_rad, e.v_mps, a, k)
        s, d = self.road.xy_to_frenet(np.array([x]), np.array([y]), np.array([e.s_m + v * DT_S]))
        self.ego = EgoState(x, y, yaw, v, a, k, float(s[0]), float(d[0]))
        self.k += 1
        self.t_s = self.k * DT_S
        return self.ego

    def render(self) -> np.ndarray:
        """The front camera from the ego's actual pose now; its wall time goes to `render_s`."""
        if self.renderer is None:
            raise ValueError("this TwinEnv has no camera: pass camera=FThetaCamera... to render")
        t0 = time.perf_counter()
        agents = self.agents()
        vehicles = ((tr, float(a[0]), float(a[1]), float(a[2])) for tr, a in zip(self.world.tracks, agents, strict=True))
        img = self.renderer.render(self.ego.x_m, self.ego.y_m, self.ego.yaw_rad, self.ego.s_m, vehicles)
        self.render_s.append(time.perf_counter() - t0)
        return img


# ---------------------------------------------------------------- steering along a lateral profile


def pursue(road: World | object, ego: EgoState, accel: np.ndarray, d_of_s: Callable[[np.ndarray], np.ndarray]
           ) -> np.ndarray:
    """Curvatures (T,) that steer the ego along d = d_of_s(s) while it applies `accel` (T,): pure
    pursuit (Coulter 1992) towards a point one look-ahead ahead, rolled through the same unicycle."""
    road = getattr(road, "road", road)
    x, y, yaw, v, s = ego.x_m, ego.y_m, ego.yaw_rad, ego.v_mps, ego.s_m
    kappa = np.zeros(len(accel))
    for i, a in enumerate(accel):
        look = max(PURSUIT_MIN_LOOKAHEAD_M, PURSUIT_LOOKAHEAD_S * v)
        s_t = np.array([s + look])
        tx, ty = road.frenet_to_xy(s_t, d_of_s(s_t))
        dx, dy = float(tx[0]) - x, float(ty[0]) - y
        alpha = np.arctan2(dy, dx) - yaw
        kappa[i] = 2 * np.sin(alpha) / max(np.hypot(dx, dy), 1e-3)
        _, kappa[i] = clip_controls(0.0, kappa[i])
        x, y, yaw, v, _ = unicycle_step(x, y, yaw, v, float(a), float(kappa[i]))
        s += v * DT_S * np.cos(alpha)
    return kappa


# ---------------------------------------------------------------- the twin's driver as a policy


class DriverPolicy:
    """The driver model that drove the log, now driving the closed-loop ego with privileged sight.

    Each plan copies the driver (its stop and overtake state machines and lane change carry over),
    puts it where the ego actually is, and steps it 100 Hz through the horizon against the other
    vehicles predicted at constant speed; its speed profile gives the accelerations and pure pursuit
    along its lateral path gives the curvatures.
    """

    name = "driver_model"

    def __init__(self, world: World, *, horizon: int = N_FUT, seed: int = 0) -> None:
        plan = world.plan or Plan(world.scenario, world.desired_speed_mps, world.desired_speed_mps, np.inf, -1.0)
        self.world, self.horizon = world, horizon
        self.driver = Driver(world.road, world.tracks, plan, np.random.default_rng([world.clip_seed, seed]),
                             s=0.0, d=0.0, v=0.0)

    def _predicted(self, s: np.ndarray, d: np.ndarray, v: np.ndarray, n: int) -> tuple[Track, ...]:
        t = np.arange(n) * SIM_DT_S
        return tuple(replace(tr, s_m=s[i] + v[i] * t, d_m=np.full(n, d[i]), speed_mps=np.full(n, v[i]))
                     for i, tr in enumerate(self.world.tracks))

    def plan(self, env: TwinEnv) -> tuple[np.ndarray, np.ndarray]:
        """(a, κ) (horizon,) from the env's present state."""
        e = env.ego
        s, d = env.frenet()
        v = env.agents()[:, 5] if len(self.world.tracks) else np.zeros(0)
        n = self.horizon * SUBSTEPS + 1
        drv = copy.copy(self.driver)
        drv.rng = copy.deepcopy(self.driver.rng)
        drv.tracks = self._predicted(s, d, v, n)
        drv.s, drv.d, drv.v, drv.a = e.s_m, e.d_m, e.v_mps, e.a_mps2
        speeds, path_s, path_d = [e.v_mps], [e.s_m], [e.d_m]
        for k in range(1, n):
            drv.step(k - 1, env.t_s + (k - 1) * SIM_DT_S)
            if k == SUBSTEPS:  # the state machines move on by what the ego does in one step
                self.driver = copy.copy(drv)
                self.driver.tracks, self.driver.rng = self.world.tracks, copy.deepcopy(drv.rng)
            if k % SUBSTEPS == 0:
                speeds.append(drv.v)
            path_s.append(drv.s)
            path_d.append(drv.d)
        accel = np.diff(np.array(speeds)) / DT_S
        ps, pd_ = np.array(path_s), np.array(path_d)
        order = np.maximum.accumulate(ps) + np.arange(len(ps)) * 1e-9  # s never decreases
        kappa = pursue(env.road, e, accel, lambda q: np.interp(q, order, pd_))
        return accel, kappa
