"""NAVSIM's comfort checks on hand-built ego states: each bound fails when, and only when, NAVSIM's
formulas say it should (smoothing windows, the rear-axle -> centre shift, EC's cropping)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import savgol_filter

from evals import comfort as C
from evals.pdm import epdms
from transforms.unicycle_torch import integrate_unicycle_torch


def _drive(accel: np.ndarray, kappa: np.ndarray, v0: float) -> tuple[np.ndarray, np.ndarray]:
    """(a, κ) per 0.1 s step -> poses (1, T+1, 2) and headings (1, T+1) from the origin, through the unicycle layer."""
    xy, yaw, _ = integrate_unicycle_torch(torch.tensor(accel)[None], torch.tensor(kappa)[None], torch.tensor([v0]))
    return np.concatenate([np.zeros((1, 1, 2)), xy.numpy()], 1), np.concatenate([np.zeros((1, 1)), yaw.numpy()], 1)


def _hc(accel: np.ndarray, kappa: np.ndarray, v0: float) -> tuple[float, dict]:
    hc, checks = C.comfort(C.plan_states(*_drive(accel, kappa, v0)))
    return float(hc[0]), {k: bool(v[0]) for k, v in checks.items()}


def _states(t: int, **cols: np.ndarray | float) -> np.ndarray:
    """One trajectory (1, t, 11) of hand-set state columns (names as in evals.comfort), the rest 0."""
    s = np.zeros((1, t, C.N_STATE))
    for name, v in cols.items():
        s[0, :, getattr(C, name.upper())] = v
    return s


T = 40


def test_steady_driving_is_comfortable() -> None:
    hc, checks = _hc(np.zeros(T), np.full(T, 0.002), 15.0)
    assert hc == 1.0 and all(checks.values())


@pytest.mark.parametrize(("accel", "kappa", "v0", "fails"), [
    (np.full(T, -6.0), np.zeros(T), 30.0, "lon_accel"),  # hard braking, beyond -4.05 m/s²
    (np.full(T, 3.0), np.zeros(T), 5.0, "lon_accel"),  # beyond +2.40 m/s²
    (np.zeros(T), np.full(T, 0.2), 6.0, "yaw_rate"),  # 1.2 rad/s
    (np.linspace(-3.9, 2.2, T), np.zeros(T), 10.0, "lon_jerk"),  # a sustained 1.56 m/s³ ramp passes ...
])
def test_plan_bounds(accel: np.ndarray, kappa: np.ndarray, v0: float, fails: str) -> None:
    hc, checks = _hc(accel, kappa, v0)
    if fails == "lon_jerk":  # ... (see above): NAVSIM bounds longitudinal jerk at 4.13 m/s³
        assert checks["lon_jerk"]
        return
    assert hc == 0.0 and not checks[fails], checks


def test_plan_states_have_no_lateral_acceleration_as_in_navsims_bicycle_model() -> None:
    """A bend at 8 m/s² lateral: NAVSIM's simulated states carry ay = 0, so only the yaw terms can fail."""
    states = C.plan_states(*_drive(np.zeros(T), np.full(T, 0.02), 20.0))
    assert np.all(states[..., C.AY] == 0) and np.allclose(states[0, 5:-5, C.YAW_RATE], 0.4, atol=1e-3)
    assert C.ego_is_comfortable(states)["lat_accel"][0]


def test_one_step_spike_passes_the_window_8_smoothing_and_fails_unsmoothed() -> None:
    ax = np.zeros(41)
    ax[20] = 3.0  # one 0.1 s step beyond the +2.40 m/s² bound
    states = _states(41, vx=10.0, ax=ax)
    assert C.ego_is_comfortable(states)["lon_accel"][0]  # NAVSIM smooths over 8 steps: peak ~0.9 m/s²
    raw_peak = ax.max()
    assert not raw_peak < C.LON_ACCEL_MPS2[1]  # an unsmoothed check would fail it
    smoothed = savgol_filter(ax, 8, 2)
    assert smoothed.max() < C.LON_ACCEL_MPS2[1]


def test_centre_acceleration_adds_navsims_rigid_body_term() -> None:
    """Rear axle at 2.0 m/s² (inside the bound) turning at 0.9 rad/s: at the centre, 2.0 + 1.461·0.9² = 3.18."""
    states = _states(41, vx=10.0, ax=2.0, yaw_rate=0.9, heading=0.9 * 0.1 * np.arange(41))
    np.testing.assert_allclose(C.centre_acceleration(states)[0, :, 0], 2.0 + 1.461 * 0.81)
    np.testing.assert_allclose(C.centre_acceleration(states)[0, :, 1], 0.0)  # d has no y part: ay unchanged
    checks = C.ego_is_comfortable(states)
    assert not checks["lon_accel"] and checks["yaw_rate"]
    rear_only = _states(41, vx=10.0, ax=2.0, heading=0.9 * 0.1 * np.arange(41))  # same motion, no yaw-rate state
    assert C.ego_is_comfortable(rear_only)["lon_accel"][0]


def test_yaw_acceleration_uses_order_3_for_hc() -> None:
    kappa = np.r_[np.zeros(20), np.full(20, 0.09)]  # yaw rate 0 -> 0.9 rad/s in one step at 10 m/s
    _, checks = _hc(np.zeros(T), kappa, 10.0)
    assert not checks["yaw_accel"] and checks["yaw_rate"]


def test_jerk_magnitude_uses_the_raw_rear_axle_acceleration() -> None:
    """The yaw terms move the centre's x acceleration, not |(ax, ay)| at the rear axle: jerk magnitude ignores them."""
    yaw_accel = np.zeros(41)
    yaw_accel[15:25] = np.r_[np.full(5, 20.0), np.full(5, -20.0)]  # only the centre shift feels this
    states = _states(41, vx=10.0, ax=1.0, yaw_accel=yaw_accel)
    checks = C.ego_is_comfortable(states)
    assert checks["jerk"] and not checks["lon_jerk"]


def test_history_states_are_navsims_interpolated_2hz_log() -> None:
    xy, yaw = _drive(np.full(15, 1.0), np.zeros(15), 10.0)  # 16 poses at 10 Hz, t0 - 1.5 ... t0
    past = C.history_states(xy, yaw)
    assert past.shape == (1, 14, C.N_STATE)  # t0 - 1.5 ... t0 - 0.2
    np.testing.assert_allclose(past[0, :, C.X], xy[0, :14, 0], atol=0.05)  # chords between 2 Hz frames
    np.testing.assert_allclose(past[0, :, C.AX], 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="2 Hz frame"):
        C.history_states(xy[:, :15], yaw[:, :15])


def test_extended_comfort_compares_consecutive_plans_over_their_overlap() -> None:
    accel, kappa = np.r_[np.full(25, 0.5), np.zeros(25)], np.full(50, 0.001)
    xy, yaw = _drive(accel, kappa, 10.0)
    prev = C.plan_states(xy[:, :41], yaw[:, :41])
    later = C.plan_states(xy[:, 5:46], yaw[:, 5:46])  # the plan 0.5 s later that continues the same motion
    assert C.extended_comfort(prev, later, 5)[0] == 1.0
    xy2, yaw2 = _drive(np.full(40, -3.0), kappa[:40], 10.0)  # a plan that suddenly brakes instead
    assert C.extended_comfort(prev, C.plan_states(xy2, yaw2), 5)[0] == 0.0
    with pytest.raises(ValueError, match="shift_steps=40"):
        C.extended_comfort(prev, prev, 40)


def test_extended_comfort_filters_after_cropping() -> None:
    """A jump in the previous plan's first 0.5 s lies outside the overlap: NAVSIM crops it away before
    smoothing, so it cannot leak into the overlap through the filter window."""
    ax = np.zeros(41)
    ax[:5] = 6.0  # only in steps 0-4 of the previous plan
    prev = _states(41, vx=10.0, ax=ax)
    cur = _states(41, vx=10.0)
    assert C.extended_comfort(prev, cur, 5)[0] == 1.0
    # smoothing the whole previous plan first (the old way) smears the jump into the overlap
    smeared = savgol_filter(ax, 8, 2)[5:]
    assert np.sqrt(np.mean(smeared ** 2)) > 0.0


def test_epdms_without_a_previous_frame_leaves_ec_out() -> None:
    """NAVSIM's one-stage final score: a NaN EC drops EC and its weight (denominator 14, not 16)."""
    assert epdms(1, 1, 1, 1, ep=0.5, ttc=1, lk=1, hc=1, ec=np.nan) == pytest.approx((2.5 + 5 + 2 + 2) / 14)
    assert epdms(1, 1, 1, 1, ep=0.5, ttc=1, lk=1, hc=1, ec=1) == pytest.approx((2.5 + 5 + 2 + 2 + 2) / 16)
    np.testing.assert_allclose(epdms(np.ones(2), 1, 1, 1, 1, 1, 0, 1, np.array([np.nan, 0.0])), [12 / 14, 12 / 16])
    with pytest.raises(ValueError, match="sub-scores"):
        epdms(1, 1, 1, 1, 1, 1, 1, np.nan, 1)  # only EC may be missing
