"""The kinematic baselines, as (B, N_FUT) 10 Hz trajectories in the ego frame at t0.

- constant velocity: straight ahead at v0 (NAVSIM's weakest baseline, PDMS 20.6 on navtest);
- constant (a, κ): the acceleration and curvature measured at t0 held for 6.4 s, braking no
  further than to a stand (a driver does not reverse out of a stop): strong on the twin.

Training reports its validation against them and navsim_eval scores them beside the agent.
"""

from __future__ import annotations

import numpy as np

from core.displacement import constant_velocity_xy
from core.windows import DT_S, N_FUT
from transforms.unicycle import integrate_unicycle


def constant_velocity(v0_mps: np.ndarray, steps: int = N_FUT) -> tuple[np.ndarray, np.ndarray]:
    """(B,) speeds -> xy (B, steps, 2), yaw (B, steps)."""
    xy = constant_velocity_xy(np.asarray(v0_mps, np.float64), steps)
    return xy, np.zeros(xy.shape[:2])


def constant_controls(v0_mps: np.ndarray, a0_mps2: np.ndarray, kappa0_1pm: np.ndarray,
                      steps: int = N_FUT) -> tuple[np.ndarray, np.ndarray]:
    """(a, κ) at t0 held (braking stops at v = 0) -> xy (B, steps, 2), yaw (B, steps)."""
    v0 = np.maximum(np.asarray(v0_mps, np.float64), 0.0)
    a0, k0 = np.asarray(a0_mps2, np.float64), np.asarray(kappa0_1pm, np.float64)
    # the speed a held a0 reaches, floored at 0; the acceleration is what produces that speed
    v = np.maximum(v0[:, None] + a0[:, None] * DT_S * np.arange(1, steps + 1), 0.0)
    accel = np.diff(np.concatenate([v0[:, None], v], 1), axis=1) / DT_S
    xy, yaw, _ = integrate_unicycle(accel, np.repeat(k0[:, None], steps, 1), v0)
    return xy, yaw
