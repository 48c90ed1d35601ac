"""NAVSIM's comfort sub-scores on ego states: C/HC (six bounds) and EC (plan-to-plan consistency).

What NAVSIM computes (`pdm_comfort_metrics.py`, `pdm_scorer.py`, `scene_aggregator.py` at main
0a380a9; nuPlan's rear-axle conventions), given an array of ego states in its `StateIndex` layout:
- states are the rear axle's: pose, body-frame velocity and acceleration, yaw rate and yaw
  acceleration. Longitudinal and lateral acceleration are first moved to the vehicle's centre
  (Pacifica: 1.461 m ahead) with nuPlan's rigid-body term `a + d·ω² + d·ω̇` along x (d = (1.461, 0),
  so the lateral one is unchanged), then Savitzky-Golay smoothed (window 8, order 2);
- jerk (magnitude and longitudinal) is the SG derivative (window 15, order 2) of the window-8
  smoothed acceleration; the jerk *magnitude* and EC's acceleration use the rear axle's raw
  |(ax, ay)|, not the centre's;
- yaw rate and yaw acceleration are SG derivatives of the unwrapped heading over window 5 (NAVSIM
  passes no window to its derivative helper, so its default 5 applies), orders 2 and 3 for HC;
  EC's yaw acceleration uses order 2;
- every value is rounded to 8 decimals; every step must lie strictly inside every bound;
- EC: the current plan's states up to the end of the overlap against the previous plan's from the
  shift on; features are computed on these *cropped* arrays, then the RMS of their differences.

Deliberate differences, with why:
- The states of a plan come from its own kinematics (`plan_states`): the unicycle plan the agent
  drives is a rollout of a kinematic model already, like NAVSIM's bicycle model (no lateral slip:
  vy = ay = 0, as the bicycle model sets them). NAVSIM instead tracks an 8-pose 2 Hz trajectory
  with an LQR and a first-order lag on the commands; that tracker is part of its simulator, not of
  the metric, and would only blur the 10 Hz plan it is handed here.
- The history states (`history_states`) come from the logged poses, as NAVSIM's come from the
  logs: its past trajectory is the 2 Hz log (t0 − 1.5 … t0) interpolated at 0.1 s from the first
  frame up to 0.2 s before t0, then the simulated states from t0 follow, all taken 0.1 s apart —
  reproduced here, with velocity, acceleration (lateral ay = v·ω, what an IMU reads) and yaw terms
  from finite differences of the 10 Hz log in place of the recorded ones.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import savgol_filter

from evals.boxes import PACIFICA

LON_ACCEL_MPS2 = (-4.05, 2.40)
MAX_LAT_ACCEL_MPS2 = 4.89
MAX_JERK_MPS3 = 8.37
MAX_LON_JERK_MPS3 = 4.13
MAX_YAW_RATE_RADPS = 0.95
MAX_YAW_ACCEL_RADPS2 = 1.93
EC_MAX_RMS = {"accel": 0.7, "jerk": 0.5, "yaw_rate": 0.1, "yaw_accel": 0.1}
HC_CHECKS = ("lon_accel", "lat_accel", "jerk", "lon_jerk", "yaw_accel", "yaw_rate")  # NAVSIM's order

# NAVSIM's StateIndex layout of one ego state (rear axle; velocity and acceleration in the body frame)
X, Y, HEADING, VX, VY, AX, AY, STEERING, STEERING_RATE, YAW_RATE, YAW_ACCEL = range(11)
N_STATE = 11
ACCEL_WINDOW, JERK_WINDOW, YAW_WINDOW = 8, 15, 5
DECIMALS = 8
HISTORY_STRIDE = 5  # NAVSIM's history is the 2 Hz log: every 5th 10 Hz pose


def _sg(x: np.ndarray, window: int, order: int, deriv: int = 0, dt_s: float = 1.0) -> np.ndarray:
    return savgol_filter(x, window_length=min(window, x.shape[-1]), polyorder=order, deriv=deriv, delta=dt_s, axis=-1)


def unwrap_phase(heading_rad: np.ndarray) -> np.ndarray:
    """Headings made continuous: successive differences within ±π (NAVSIM's `_phase_unwrap`)."""
    return np.unwrap(heading_rad, axis=-1)


def _check_states(states: np.ndarray) -> np.ndarray:
    states = np.asarray(states, np.float64)
    if states.ndim != 3 or states.shape[-1] != N_STATE or states.shape[1] < 4:
        raise ValueError(f"need ego states (B, T>=4, {N_STATE}) in NAVSIM's StateIndex layout, got {states.shape}")
    return states


def centre_acceleration(states: np.ndarray, rear_axle_to_center_m: float = PACIFICA.rear_axle_to_center_m
                        ) -> np.ndarray:
    """(B, T, 2) body-frame acceleration at the vehicle's centre, by nuPlan's rigid-body shift (as NAVSIM calls it)."""
    d = np.array([rear_axle_to_center_m, 0.0])
    w, dw = states[..., YAW_RATE], states[..., YAW_ACCEL]
    return states[..., [AX, AY]] + d * (w ** 2)[..., None] + d * dw[..., None]


def _accel(states: np.ndarray, coord: str) -> np.ndarray:
    if coord == "magnitude":
        a = np.hypot(states[..., AX], states[..., AY])
    else:
        a = centre_acceleration(states)[..., 0 if coord == "x" else 1]
    return np.round(_sg(a, ACCEL_WINDOW, 2), DECIMALS)


def _jerk(states: np.ndarray, coord: str, dt_s: float) -> np.ndarray:
    return np.round(_sg(_accel(states, coord), JERK_WINDOW, 2, 1, dt_s), DECIMALS)


def _yaw_derivative(states: np.ndarray, dt_s: float, deriv: int, order: int) -> np.ndarray:
    return np.round(_sg(unwrap_phase(states[..., HEADING]), YAW_WINDOW, order, deriv, dt_s), DECIMALS)


def comfort_signals(states: np.ndarray, dt_s: float = 0.1) -> dict[str, np.ndarray]:
    """The six signals HC bounds, (B, T) each, as NAVSIM derives them from ego states (B, T, 11)."""
    states = _check_states(states)
    return {"lon_accel": _accel(states, "x"), "lat_accel": _accel(states, "y"),
            "jerk": _jerk(states, "magnitude", dt_s), "lon_jerk": _jerk(states, "x", dt_s),
            "yaw_accel": _yaw_derivative(states, dt_s, 2, 3), "yaw_rate": _yaw_derivative(states, dt_s, 1, 2)}


def ego_is_comfortable(states: np.ndarray, dt_s: float = 0.1) -> dict[str, np.ndarray]:
    """Each of the six checks (B,) bool: its signal strictly inside its bound at every step."""
    sig = comfort_signals(states, dt_s)
    lo, hi = LON_ACCEL_MPS2
    bounds = {"lon_accel": (lo, hi), "lat_accel": (-MAX_LAT_ACCEL_MPS2, MAX_LAT_ACCEL_MPS2),
              "jerk": (-MAX_JERK_MPS3, MAX_JERK_MPS3), "lon_jerk": (-MAX_LON_JERK_MPS3, MAX_LON_JERK_MPS3),
              "yaw_accel": (-MAX_YAW_ACCEL_RADPS2, MAX_YAW_ACCEL_RADPS2),
              "yaw_rate": (-MAX_YAW_RATE_RADPS, MAX_YAW_RATE_RADPS)}
    return {k: np.all((sig[k] > a) & (sig[k] < b), axis=-1) for k, (a, b) in bounds.items()}


def comfort(states: np.ndarray, dt_s: float = 0.1) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """C (or HC, given history-padded states): (B,) in {0, 1}, and each check (B,) bool."""
    checks = ego_is_comfortable(states, dt_s)
    return np.all(np.stack(list(checks.values())), axis=0).astype(np.float64), checks


def extended_comfort(prev: np.ndarray, cur: np.ndarray, shift_steps: int, dt_s: float = 0.1) -> np.ndarray:
    """EC (B,) in {0, 1}: the plan made `shift_steps` earlier (states (B, T, 11)) vs the current one.

    Step i of `cur` is step i + shift_steps of `prev`; both are cropped to the overlap first, then
    the RMS differences of acceleration magnitude, jerk magnitude, yaw rate and yaw acceleration
    must stay within NAVSIM's bounds.
    """
    prev, cur = _check_states(prev), _check_states(cur)
    if prev.shape != cur.shape:
        raise ValueError(f"EC compares plans of one length, got {prev.shape} and {cur.shape}")
    if not 0 < shift_steps < prev.shape[1] - 3:
        raise ValueError(f"shift_steps={shift_steps}: the plans must overlap by at least 4 steps")
    a, b = prev[:, shift_steps:], cur[:, :-shift_steps]

    def features(s: np.ndarray) -> dict[str, np.ndarray]:
        return {"accel": _accel(s, "magnitude"), "jerk": _jerk(s, "magnitude", dt_s),
                "yaw_rate": _yaw_derivative(s, dt_s, 1, 2), "yaw_accel": _yaw_derivative(s, dt_s, 2, 2)}

    fa, fb = features(a), features(b)
    ok = np.ones(prev.shape[0], dtype=bool)
    for name, bound in EC_MAX_RMS.items():
        ok &= np.sqrt(np.mean((fb[name] - fa[name]) ** 2, axis=-1)) <= bound
    return ok.astype(np.float64)


def _derivatives(xy_m: np.ndarray, heading_rad: np.ndarray, dt_s: float) -> dict[str, np.ndarray]:
    """Speed along the heading, its rate, yaw rate and yaw acceleration of poses (B, T, 2)/(B, T)."""
    vel = np.gradient(xy_m, dt_s, axis=1, edge_order=2)  # world frame
    v = np.cos(heading_rad) * vel[..., 0] + np.sin(heading_rad) * vel[..., 1]
    w = np.gradient(unwrap_phase(heading_rad), dt_s, axis=1, edge_order=2)
    return {"v": v, "a": np.gradient(v, dt_s, axis=1, edge_order=2), "w": w,
            "dw": np.gradient(w, dt_s, axis=1, edge_order=2)}


def _states(xy_m: np.ndarray, heading_rad: np.ndarray, d: dict[str, np.ndarray], *, lateral: bool) -> np.ndarray:
    s = np.zeros((*heading_rad.shape, N_STATE))
    s[..., X], s[..., Y], s[..., HEADING] = xy_m[..., 0], xy_m[..., 1], heading_rad
    s[..., VX], s[..., AX], s[..., YAW_RATE], s[..., YAW_ACCEL] = d["v"], d["a"], d["w"], d["dw"]
    if lateral:
        s[..., AY] = d["v"] * d["w"]
    return s


def _poses(xy_m: np.ndarray, heading_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xy_m, heading_rad = np.asarray(xy_m, np.float64), np.asarray(heading_rad, np.float64)
    if xy_m.ndim != 3 or xy_m.shape[:2] != heading_rad.shape or xy_m.shape[1] < 4:
        raise ValueError(f"need poses (B, T>=4, 2) and headings (B, T), got {xy_m.shape} and {heading_rad.shape}")
    return xy_m, heading_rad


def plan_states(xy_m: np.ndarray, heading_rad: np.ndarray, dt_s: float = 0.1) -> np.ndarray:
    """A plan's poses (B, T, 2)/(B, T), from the state at t0 on, -> kinematic ego states (B, T, 11).

    As NAVSIM's bicycle model writes its simulated states: body-frame speed and longitudinal
    acceleration, no lateral velocity or acceleration, yaw rate and yaw acceleration.
    """
    xy_m, heading_rad = _poses(xy_m, heading_rad)
    return _states(xy_m, heading_rad, _derivatives(xy_m, heading_rad, dt_s), lateral=False)


def history_states(xy_m: np.ndarray, heading_rad: np.ndarray, dt_s: float = 0.1) -> np.ndarray:
    """The logged past (B, T, 2)/(B, T) at dt_s, ending at t0, -> NAVSIM's HC padding (B, T - 2, 11).

    NAVSIM keeps the log at 2 Hz, interpolates it at 0.1 s from its first frame and drops the
    last point before t0: from 16 poses at 10 Hz (t0 − 1.5 … t0), the 2 Hz frames t0 − 1.5, −1.0,
    −0.5, 0 and 14 interpolated states t0 − 1.5 … t0 − 0.2. Here the 10 Hz log stands in for the
    recorded velocities and accelerations at those frames (with the lateral acceleration v·ω).
    """
    xy_m, heading_rad = _poses(xy_m, heading_rad)
    full = _states(xy_m, heading_rad, _derivatives(xy_m, heading_rad, dt_s), lateral=True)
    t = dt_s * np.arange(xy_m.shape[1])
    frames = np.arange(0, xy_m.shape[1], HISTORY_STRIDE)
    if (xy_m.shape[1] - 1) % HISTORY_STRIDE:
        raise ValueError(f"a history of {xy_m.shape[1]} poses does not end on a 2 Hz frame: need 5·k + 1 poses")
    keep = t[:-2]  # arange(start, end, 0.1 s)[:-1] in NAVSIM: the last two 10 Hz points are not in it
    kf = full[:, frames].copy()
    kf[..., HEADING] = unwrap_phase(kf[..., HEADING])
    out = np.stack([np.stack([np.interp(keep, t[frames], kf[b, :, j]) for j in range(N_STATE)], -1)
                    for b in range(xy_m.shape[0])])
    return out
