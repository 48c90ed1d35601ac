"""The safety shield: every chunk is checked by rule before it runs, and a failing one is replaced.

A chunk of (a, κ) is rolled out from the ego's present state through the action space's unicycle
and checked over NAVSIM's 4 s horizon against the other vehicles predicted along their lanes at
their present speed:
- Alpamayo-R1's action bounds (|a| <= 9.8 m/s², |κ| <= 0.33 1/m);
- collision (NC) and time to collision (TTC), as NAVSIM scores them (evals/pdm_twin.py);
- leaving the drivable area (DAC) and driving against the traffic (DDC);
- NAVSIM's comfort bounds (evals/comfort.py: C over the 4 s plan).
A chunk that fails is replaced by a fallback in the ego's lane: "keep lane" (hold the speed, steer
to the lane's centre) when the trouble is comfort, the bounds or the road; "brake in lane" when it is
a vehicle, or when keeping the lane would hit one; a harder brake when even that fails. Every
intervention is logged with its reasons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.windows import DT_S
from evals.comfort import LON_ACCEL_MPS2, comfort, plan_states
from evals.pdm_twin import HORIZON_STEPS, TTC_OFFSETS, score_rollouts, to_anchor
from evals.scene import ClipScene
from transforms.twin.sim import ACCEL_BOUND_MPS2, CURVATURE_BOUND_1PM, TwinEnv, pursue
from transforms.unicycle import integrate_unicycle

BRAKE_MPS2 = LON_ACCEL_MPS2[0] + 0.05  # NAVSIM's comfortable limit, just inside it
EMERGENCY_BRAKE_MPS2 = -8.0  # within Alpamayo's bounds; no longer comfortable, still in lane
VEHICLE_REASONS = ("collision", "ttc")


@dataclass(frozen=True)
class Intervention:
    t_s: float
    step: int
    reasons: tuple[str, ...]
    fallback: str


def predicted_scene(env: TwinEnv, steps: int) -> ClipScene:
    """The other vehicles from now on, each along its lane at its present speed, as a ClipScene."""
    s, d = env.frenet()
    now = env.agents()
    t = np.arange(steps) * DT_S
    if len(now):
        s_future = s[:, None] + now[:, 5:6] * t[None]
        x, y = env.road.frenet_to_xy(s_future, np.broadcast_to(d[:, None], s_future.shape))
        _, _, h = env.road.at(s_future)
        yaw = np.where(now[:, 5:6] < 0, h + np.pi, h)
        agents = np.stack([x, y, yaw, np.broadcast_to(now[:, 3:4], x.shape), np.broadcast_to(now[:, 4:5], x.shape),
                           np.broadcast_to(now[:, 5:6], x.shape)], -1)
    else:
        agents = np.zeros((0, steps, 6))
    return ClipScene("shield", env.road, round(env.t_s * 1e6), agents, np.arange(len(now)))


def check(env: TwinEnv, accel: np.ndarray, kappa: np.ndarray, *, comfort_check: bool = True) -> list[str]:
    """Reasons (empty: safe) a chunk (T >= 40,) must not run from the env's present state."""
    accel, kappa = np.asarray(accel, np.float64), np.asarray(kappa, np.float64)
    reasons = []
    if np.any(np.abs(accel) > ACCEL_BOUND_MPS2) or np.any(np.abs(kappa) > CURVATURE_BOUND_1PM):
        reasons.append("bounds")
    e = env.ego
    a = np.clip(accel[:HORIZON_STEPS], -ACCEL_BOUND_MPS2, ACCEL_BOUND_MPS2)
    k = np.clip(kappa[:HORIZON_STEPS], -CURVATURE_BOUND_1PM, CURVATURE_BOUND_1PM)
    v = np.maximum(e.v_mps + np.cumsum(a) * DT_S, 0.0)  # the env stops at a stand: so does the check
    a = np.diff(np.concatenate([[e.v_mps], v])) / DT_S
    xy, yaw, _ = integrate_unicycle(a[None], k[None], np.array([e.v_mps]))
    rollout = to_anchor(np.array([e.x_m, e.y_m, e.yaw_rad]), xy, yaw, e.v_mps)
    scene = predicted_scene(env, HORIZON_STEPS + 1 + max(TTC_OFFSETS))
    sub = score_rollouts(scene, scene.tick0_us, rollout)
    for name, key in (("collision", "nc"), ("ttc", "ttc"), ("off_road", "dac"), ("wrong_way", "ddc")):
        if sub[key][0] < 1.0:
            reasons.append(name)
    if comfort_check:
        states = plan_states(np.concatenate([[[0.0, 0.0]], xy[0]])[None], np.concatenate([[0.0], yaw[0]])[None])
        _, checks = comfort(states)
        reasons += [f"comfort:{name}" for name, ok in checks.items() if not ok[0]]
    return reasons


def fallback(env: TwinEnv, kind: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """A chunk that stays in the ego's lane: 'keep_lane' holds the speed, 'brake' and 'emergency_brake' stop."""
    road, e = env.road, env.ego
    lane = int(np.clip(round(e.d_m / road.lane_width_m), 0, road.n_lanes - 1))
    centre = road.lane_center_d(lane)
    rate = {"keep_lane": 0.0, "brake": BRAKE_MPS2, "emergency_brake": EMERGENCY_BRAKE_MPS2}[kind]
    v = np.maximum(e.v_mps + rate * DT_S * np.arange(1, steps + 1), 0.0)
    accel = np.diff(np.concatenate([[e.v_mps], v])) / DT_S
    return accel, pursue(road, e, accel, lambda s: np.full_like(s, centre))


@dataclass
class Shield:
    """Checks each chunk before it runs and swaps in the first fallback that passes."""

    comfort_check: bool = True

    def guard(self, env: TwinEnv, accel: np.ndarray, kappa: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, Intervention | None]:
        reasons = check(env, accel, kappa, comfort_check=self.comfort_check)
        if not reasons:
            return accel, kappa, None
        steps = len(accel)
        order = ("brake", "emergency_brake") if set(reasons) & set(VEHICLE_REASONS) else \
            ("keep_lane", "brake", "emergency_brake")
        for kind in order:
            fa, fk = fallback(env, kind, steps)
            if kind == order[-1] or not set(check(env, fa, fk, comfort_check=False)) & {*VEHICLE_REASONS, "off_road"}:
                return fa, fk, Intervention(env.t_s, env.k, tuple(reasons), kind)
        raise AssertionError("unreachable: the last fallback is always taken")
