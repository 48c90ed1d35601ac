"""NAVSIM's comfort sub-scores on ego trajectories: HC (six bounds) and EC (plan-to-plan consistency).

Facts from NAVSIM (docs/navsim.md, `pdm_comfort_metrics.py`), written here in numpy:
- the six HC bounds (nuPlan's): longitudinal acceleration in (-4.05, 2.40) m/s², |lateral
  acceleration| < 4.89 m/s², |jerk magnitude| < 8.37 m/s³, |longitudinal jerk| < 4.13 m/s³,
  |yaw rate| < 0.95 rad/s, |yaw acceleration| < 1.93 rad/s²; every step must be strictly inside;
- accelerations are Savitzky-Golay smoothed (order 2) over the whole sequence; jerks are the
  order-2 SG derivative (whole sequence) of accelerations smoothed over 8 steps; yaw rate and yaw
  acceleration are SG derivatives (window 5; orders 2 and 3) of the unwrapped heading;
- EC: between the plans of two frames 0.5 s apart, over their overlap, the RMS differences of
  acceleration, jerk, yaw rate and yaw acceleration must stay within 0.7 m/s², 0.5 m/s³,
  0.1 rad/s and 0.1 rad/s².

Here the states come from poses at a fixed step (10 Hz): body-frame velocity and acceleration by
finite differences, where NAVSIM reads its simulator's states; on smooth tracks they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import savgol_filter

LON_ACCEL_MPS2 = (-4.05, 2.40)
MAX_LAT_ACCEL_MPS2 = 4.89
MAX_JERK_MPS3 = 8.37
MAX_LON_JERK_MPS3 = 4.13
MAX_YAW_RATE_RADPS = 0.95
MAX_YAW_ACCEL_RADPS2 = 1.93
EC_MAX_RMS = {"accel": 0.7, "jerk": 0.5, "yaw_rate": 0.1, "yaw_accel": 0.1}
HC_CHECKS = ("lon_accel", "lat_accel", "jerk", "lon_jerk", "yaw_rate", "yaw_accel")


@dataclass(frozen=True)
class EgoKinematics:
    """Per step, (B, T): body-frame acceleration (x forward, y left), heading, at step dt_s."""

    ax_mps2: np.ndarray
    ay_mps2: np.ndarray
    heading_rad: np.ndarray
    dt_s: float


def kinematics_from_poses(xy_m: np.ndarray, heading_rad: np.ndarray, dt_s: float = 0.1) -> EgoKinematics:
    """Poses (B, T, 2) and headings (B, T) at a fixed step -> body-frame accelerations (B, T)."""
    xy_m, heading_rad = np.asarray(xy_m, np.float64), np.asarray(heading_rad, np.float64)
    if xy_m.ndim != 3 or xy_m.shape[:2] != heading_rad.shape or xy_m.shape[1] < 3:
        raise ValueError(f"need poses (B, T>=3, 2) and headings (B, T), got {xy_m.shape} and {heading_rad.shape}")
    vel = np.gradient(xy_m, dt_s, axis=1, edge_order=2)  # world frame
    acc = np.gradient(vel, dt_s, axis=1, edge_order=2)
    c, s = np.cos(heading_rad), np.sin(heading_rad)
    ax = c * acc[..., 0] + s * acc[..., 1]
    ay = -s * acc[..., 0] + c * acc[..., 1]
    return EgoKinematics(ax, ay, heading_rad, dt_s)


def _smooth(x: np.ndarray, window: int, order: int = 2) -> np.ndarray:
    return savgol_filter(x, window_length=min(window, x.shape[-1]), polyorder=order, axis=-1)


def _derivative(x: np.ndarray, dt_s: float, window: int, order: int, deriv: int) -> np.ndarray:
    return savgol_filter(x, window_length=min(window, x.shape[-1]), polyorder=order, deriv=deriv, delta=dt_s, axis=-1)


def unwrap_phase(heading_rad: np.ndarray) -> np.ndarray:
    """Headings made continuous: successive differences within ±π."""
    return np.unwrap(heading_rad, axis=-1)


def comfort_signals(k: EgoKinematics) -> dict[str, np.ndarray]:
    """The six smoothed signals HC bounds, (B, T) each, as NAVSIM derives them."""
    n = k.ax_mps2.shape[-1]
    heading = unwrap_phase(k.heading_rad)
    return {
        "lon_accel": _smooth(k.ax_mps2, n),
        "lat_accel": _smooth(k.ay_mps2, n),
        "jerk": _derivative(_smooth(np.hypot(k.ax_mps2, k.ay_mps2), 8), k.dt_s, n, 2, 1),
        "lon_jerk": _derivative(_smooth(k.ax_mps2, 8), k.dt_s, n, 2, 1),
        "yaw_rate": _derivative(heading, k.dt_s, 5, 2, 1),
        "yaw_accel": _derivative(heading, k.dt_s, 5, 3, 2),
    }


def history_comfort(k: EgoKinematics) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """HC (B,) in {0, 1} and each check (B,) bool: all six signals strictly within bounds at every step."""
    sig = comfort_signals(k)
    lo, hi = LON_ACCEL_MPS2
    checks = {
        "lon_accel": np.all((sig["lon_accel"] > lo) & (sig["lon_accel"] < hi), axis=-1),
        "lat_accel": np.all(np.abs(sig["lat_accel"]) < MAX_LAT_ACCEL_MPS2, axis=-1),
        "jerk": np.all(np.abs(sig["jerk"]) < MAX_JERK_MPS3, axis=-1),
        "lon_jerk": np.all(np.abs(sig["lon_jerk"]) < MAX_LON_JERK_MPS3, axis=-1),
        "yaw_rate": np.all(np.abs(sig["yaw_rate"]) < MAX_YAW_RATE_RADPS, axis=-1),
        "yaw_accel": np.all(np.abs(sig["yaw_accel"]) < MAX_YAW_ACCEL_RADPS2, axis=-1),
    }
    return np.all(np.stack(list(checks.values())), axis=0).astype(np.float64), checks


def extended_comfort(prev: EgoKinematics, cur: EgoKinematics, shift_steps: int) -> np.ndarray:
    """EC (B,) in {0, 1}: the plan made `shift_steps` earlier vs the current one, over their overlap.

    Step i of `cur` is step i + shift_steps of `prev`; the RMS difference of acceleration magnitude,
    jerk, yaw rate and yaw acceleration over the overlap must stay within NAVSIM's bounds.
    """
    if not 0 < shift_steps < prev.ax_mps2.shape[-1] - 2:
        raise ValueError(f"shift_steps={shift_steps}: the plans must overlap by at least 3 steps")
    a, b = comfort_signals(prev), comfort_signals(cur)
    acc_a, acc_b = np.hypot(a["lon_accel"], a["lat_accel"]), np.hypot(b["lon_accel"], b["lat_accel"])
    n = min(acc_a.shape[-1] - shift_steps, acc_b.shape[-1])
    pairs = {"accel": (acc_a, acc_b), "jerk": (a["jerk"], b["jerk"]), "yaw_rate": (a["yaw_rate"], b["yaw_rate"]),
             "yaw_accel": (a["yaw_accel"], b["yaw_accel"])}
    ok = np.ones(acc_a.shape[0], dtype=bool)
    for name, (x, y) in pairs.items():
        rms = np.sqrt(np.mean((x[:, shift_steps:shift_steps + n] - y[:, :n]) ** 2, axis=-1))
        ok &= rms <= EC_MAX_RMS[name]
    return ok.astype(np.float64)
