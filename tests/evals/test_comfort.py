"""NAVSIM's comfort checks on hand-built trajectories: each bound fails when, and only when, it should."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evals.comfort import extended_comfort, history_comfort, kinematics_from_poses
from transforms.unicycle_torch import integrate_unicycle_torch


def _drive(accel: np.ndarray, kappa: np.ndarray, v0: float) -> tuple[np.ndarray, np.ndarray]:
    """(a, κ) per 0.1 s step -> poses (1, T+1, 2) and headings (1, T+1) from the origin, through the unicycle layer."""
    xy, yaw, _ = integrate_unicycle_torch(torch.tensor(accel)[None], torch.tensor(kappa)[None], torch.tensor([v0]))
    return np.concatenate([np.zeros((1, 1, 2)), xy.numpy()], 1), np.concatenate([np.zeros((1, 1)), yaw.numpy()], 1)


def _hc(accel: np.ndarray, kappa: np.ndarray, v0: float) -> tuple[float, dict]:
    hc, checks = history_comfort(kinematics_from_poses(*_drive(accel, kappa, v0)))
    return float(hc[0]), {k: bool(v[0]) for k, v in checks.items()}


T = 60


def test_steady_driving_is_comfortable() -> None:
    hc, checks = _hc(np.zeros(T), np.full(T, 0.002), 15.0)
    assert hc == 1.0 and all(checks.values())


@pytest.mark.parametrize(("accel", "kappa", "v0", "fails"), [
    (np.full(T, -6.0), np.zeros(T), 30.0, "lon_accel"),  # hard braking, beyond -4.05 m/s²
    (np.full(T, 3.0), np.zeros(T), 5.0, "lon_accel"),  # beyond +2.40 m/s²
    (np.zeros(T), np.full(T, 0.02), 20.0, "lat_accel"),  # 8 m/s² in the bend
    (np.zeros(T), np.full(T, 0.2), 6.0, "yaw_rate"),  # 1.2 rad/s
    # NAVSIM smooths jerk over the whole sequence: only a sustained ramp fails it, here 5 m/s³ for 1.3 s
    (np.linspace(-3.9, 2.2, 13), np.zeros(13), 10.0, "lon_jerk"),
])
def test_each_bound_fails_on_its_own_violation(accel: np.ndarray, kappa: np.ndarray, v0: float, fails: str) -> None:
    hc, checks = _hc(accel, kappa, v0)
    assert hc == 0.0 and not checks[fails], checks


def test_a_one_step_acceleration_change_passes_the_smoothed_jerk_bound() -> None:
    _, checks = _hc(np.r_[np.zeros(30), np.full(30, 2.0)], np.zeros(T), 10.0)
    assert checks["lon_jerk"] and checks["jerk"]


def test_yaw_acceleration_bound() -> None:
    kappa = np.r_[np.zeros(30), np.full(30, 0.09)]  # yaw rate 0 -> 0.9 rad/s in one step at 10 m/s
    _, checks = _hc(np.zeros(T), kappa, 10.0)
    assert not checks["yaw_accel"] and checks["yaw_rate"]


def test_extended_comfort_compares_consecutive_plans() -> None:
    accel, kappa = np.r_[np.full(45, 0.5), np.zeros(45)], np.full(90, 0.001)
    xy, yaw = _drive(accel, kappa, 10.0)
    whole = kinematics_from_poses(xy, yaw)
    # the plan 0.5 s later that continues the same motion: consistent
    later = kinematics_from_poses(xy[:, 5:], yaw[:, 5:])
    prev = kinematics_from_poses(xy[:, :-5], yaw[:, :-5])
    assert extended_comfort(prev, later, 5)[0] == 1.0
    # a plan that suddenly brakes instead: inconsistent with the previous one
    xy2, yaw2 = _drive(np.full(85, -3.0), kappa[:85], 10.0)
    assert extended_comfort(prev, kinematics_from_poses(xy2, yaw2), 5)[0] == 0.0
    with pytest.raises(ValueError, match="shift_steps=90"):
        extended_comfort(whole, whole, 90)
