"""Trust tests for the twin's PDM sub-scores: hand-built roads, vehicles and plans, one rule at a time.

The road is straight along +x: lanes 0 and 1 of the ego's direction at y = 0 and 3.5 m, the
oncoming lane at 7 m, road edges at -1.75 and 8.75 m. The ego starts at the origin, heading +x.
"""

from __future__ import annotations

import numpy as np
import pytest

from evals.boxes import PACIFICA, box_corners, boxes_intersect, front_bumper
from evals.pdm_twin import EgoRollout, ego_progress, human_filter, score_rollouts, to_anchor
from evals.scene import TICK_US, ClipScene
from transforms.twin.world import Road

W = 3.5
T0 = 2_000_000
N_TICKS = 200  # 0 .. 20 s


def _scene(*agents: np.ndarray) -> ClipScene:
    s = np.arange(-100.0, 600.0, 0.5)
    road = Road(s, s.copy(), np.zeros_like(s), np.zeros_like(s), np.zeros_like(s), 2, 1, W, ())
    arr = np.stack(agents) if agents else np.zeros((0, N_TICKS, 6))
    return ClipScene("clip", road, 0, arr, np.arange(len(agents)))


def _agent(x0: float, y: float, speed: float, length: float = 4.6, width: float = 1.85,
           yaw: float = 0.0) -> np.ndarray:
    """A vehicle whose centre is at x0 + speed·(t - t0), y, for the whole clip."""
    t = (np.arange(N_TICKS) * TICK_US - T0) / 1e6
    return np.stack([x0 + speed * np.cos(yaw) * t, np.full(N_TICKS, y) + speed * np.sin(yaw) * t,
                     np.full(N_TICKS, yaw), np.full(N_TICKS, length), np.full(N_TICKS, width),
                     np.full(N_TICKS, speed)], -1)


def _plan(x: np.ndarray, y: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Rear-axle positions at t0 + 0.1 .. 6.4 s -> (1, 64, 2) and headings along the motion."""
    y = np.broadcast_to(np.asarray(y, np.float64), x.shape)
    xy = np.stack([x, y], -1)
    d = np.gradient(np.concatenate([[[0.0, 0.0]], xy]), axis=0)[1:]
    yaw = np.where(np.hypot(d[:, 0], d[:, 1]) > 1e-6, np.arctan2(d[:, 1], d[:, 0]), 0.0)
    return xy[None], yaw[None]


def _score(scene: ClipScene, x: np.ndarray, y: np.ndarray | float = 0.0, v0: float | None = None,
           pose0: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> dict[str, float]:
    xy, yaw = _plan(x, y)
    v0 = float(x[0] / 0.1) if v0 is None else v0
    out = score_rollouts(scene, T0, to_anchor(np.array(pose0), xy, yaw, v0))
    return {k: float(v[0]) for k, v in out.items()}


t = 0.1 * np.arange(1, 65)


def test_lane_following_on_an_empty_road_scores_full_marks() -> None:
    s = _score(_scene(), 10.0 * t)
    assert {k: s[k] for k in ("nc", "dac", "ddc", "tlc", "ttc", "lk")} == dict.fromkeys(
        ("nc", "dac", "ddc", "tlc", "ttc", "lk"), 1.0)
    assert s["progress_m"] == pytest.approx(40.0, abs=0.05)  # 4 s at 10 m/s


def test_leaving_the_drivable_area_gives_dac_zero() -> None:
    assert _score(_scene(), 10.0 * t, -0.15 * np.minimum(t, 2.0))["dac"] == 1.0  # 0.3 m right: corners still on
    assert _score(_scene(), 10.0 * t, -1.0 * np.minimum(t, 2.0))["dac"] == 0.0  # 2 m right: over the edge


def test_hitting_a_standing_vehicle_ahead_gives_nc_and_ttc_zero() -> None:
    s = _score(_scene(_agent(30.0, 0.0, 0.0)), 10.0 * t)
    assert s["nc"] == 0.0 and s["ttc"] == 0.0


def test_driving_into_a_slower_lead_is_a_front_collision() -> None:
    s = _score(_scene(_agent(20.0, 0.0, 4.0)), 10.0 * t)
    assert s["nc"] == 0.0


def test_a_vehicle_passing_in_the_next_lane_is_no_collision() -> None:
    s = _score(_scene(_agent(-10.0, W, 20.0), _agent(25.0, W, 10.0)), 10.0 * t)
    assert s["nc"] == 1.0 and s["ttc"] == 1.0


def test_being_rear_ended_while_standing_is_not_at_fault() -> None:
    # the ego waits at the origin; a car from behind drives through it
    s = _score(_scene(_agent(-15.0, 0.0, 8.0)), np.zeros(64), v0=0.0)
    assert s["nc"] == 1.0


def test_lateral_contact_is_at_fault_only_when_the_ego_straddles_lanes() -> None:
    # a car level with the ego at its speed drifts sideways into it from the left: a lateral contact
    def side(y0: float) -> np.ndarray:
        car = _agent(1.5, y0, 10.0)
        car[..., 1] = y0 - np.clip((np.arange(N_TICKS) * TICK_US - T0) / 1e6 - 1.0, 0, None) * 1.5
        return car

    assert _score(_scene(side(W)), 10.0 * t)["nc"] == 1.0
    straddling = _score(_scene(side(W + 1.0)), 10.0 * t, pose0=(0.0, W / 2, 0.0))  # on the lane line
    assert straddling["nc"] == 0.0


def test_braking_hard_for_a_standing_car_avoids_it_but_fails_ttc() -> None:
    v = np.maximum(10.0 - 4.0 * t, 0.0)
    x = np.cumsum(v * 0.1)  # stops after 12 m
    bumper_gap = 13.0
    car = _agent(PACIFICA.front_m + bumper_gap + 2.3, 0.0, 0.0)  # its rear 13 m ahead of the bumper
    s = _score(_scene(car), x, v0=10.0)
    assert s["nc"] == 1.0 and s["ttc"] == 0.0  # closer than 0.9 s at its speed before it stops
    s = _score(_scene(_agent(PACIFICA.front_m + 25.0 + 2.3, 0.0, 0.0)), x, v0=10.0)
    assert s["nc"] == 1.0 and s["ttc"] == 1.0  # braking early keeps the margin


def test_driving_in_the_oncoming_lane_grades_ddc() -> None:
    onc = (0.0, 2 * W, 0.0)  # the centre of the oncoming lane
    assert _score(_scene(), 10.0 * t, pose0=onc)["ddc"] == 0.0  # 10 m per second against the traffic
    assert _score(_scene(), 4.0 * t, pose0=onc)["ddc"] == 0.5  # 4.4 m in any 1 s (11 samples)
    assert _score(_scene(), 1.0 * t, pose0=onc)["ddc"] == 1.0
    assert _score(_scene(), 10.0 * t)["ddc"] == 1.0  # the same speed in its own lane


def test_lane_keeping_fails_after_two_seconds_off_centre() -> None:
    assert _score(_scene(), 10.0 * t, 0.8)["lk"] == 0.0  # 0.8 m off the lane centre all along
    brief = np.where(t < 1.5, 0.8, 0.0)  # off for 1.5 s, then back
    assert _score(_scene(), 10.0 * t, brief)["lk"] == 1.0


def test_ego_progress_against_the_reference() -> None:
    np.testing.assert_allclose(ego_progress(np.array([20.0, 40.0, 50.0]), np.ones(3), 40.0, 1.0), [0.5, 1.0, 1.0])
    # a plan with an infraction has no progress; when nobody gets 5 m, everyone (without one) gets 1
    np.testing.assert_allclose(ego_progress(np.array([20.0]), np.array([0.0]), 40.0, 1.0), [0.0])
    np.testing.assert_allclose(ego_progress(np.array([1.0, 1.0]), np.array([1.0, 0.0]), 3.0, 1.0), [1.0, 0.0])
    # the reference's own infraction removes it from the normalisation
    np.testing.assert_allclose(ego_progress(np.array([20.0]), np.ones(1), 40.0, 0.0), [1.0])


def test_stopping_short_scores_ep_below_one() -> None:
    scene = _scene()
    stop = _score(scene, np.minimum(10.0 * t, 20.0), v0=10.0)["progress_m"]
    logged = _score(scene, 10.0 * t)["progress_m"]
    assert ego_progress(np.array([stop]), np.ones(1), logged, 1.0)[0] == pytest.approx(0.5, abs=0.02)


def test_human_filter_sets_what_the_driver_fails_to_one() -> None:
    scores = {"lk": np.array([0.0, 1.0]), "nc": np.array([0.0, 1.0])}
    out, filtered = human_filter(scores, {"lk": 0.0, "nc": 1.0})
    assert filtered == ["lk"]
    np.testing.assert_array_equal(out["lk"], [1.0, 1.0])
    np.testing.assert_array_equal(out["nc"], [0.0, 1.0])


def test_box_intersection_and_bumper() -> None:
    a = box_corners(0.0, 0.0, 0.0, 4.0, 2.0)
    assert boxes_intersect(a, box_corners(3.9, 0.0, 0.0, 4.0, 2.0))
    assert not boxes_intersect(a, box_corners(4.1, 0.0, 0.0, 4.0, 2.0))
    assert boxes_intersect(a, box_corners(2.0, 1.5, np.pi / 4, 2.0, 2.0))  # a diamond dipping into a
    assert not boxes_intersect(a, box_corners(3.5, 2.5, np.pi / 4, 2.0, 2.0))
    assert not boxes_intersect(a, box_corners(np.nan, 0.0, 0.0, 4.0, 2.0))  # absent agents never collide
    bumper = front_bumper(a)
    assert boxes_intersect(bumper, box_corners(2.5, 0.0, 0.0, 1.0, 1.0))
    assert not boxes_intersect(bumper, box_corners(-1.5, 0.0, 0.0, 1.0, 1.0))


def test_to_anchor_places_plans_in_the_clip_frame() -> None:
    xy, yaw = _plan(10.0 * t)
    ego = to_anchor(np.array([5.0, 2.0, np.pi / 2]), xy, yaw, 10.0)
    assert isinstance(ego, EgoRollout) and ego.x.shape == (1, 41)
    np.testing.assert_allclose([ego.x[0, -1], ego.y[0, -1], ego.yaw[0, -1]], [5.0, 42.0, np.pi / 2], atol=1e-9)
    np.testing.assert_allclose(ego.speed[0, 1:-1], 10.0, atol=1e-9)
    with pytest.raises(ValueError, match="need plans"):
        to_anchor(np.zeros(3), xy[:, :10], yaw[:, :10], 10.0)
