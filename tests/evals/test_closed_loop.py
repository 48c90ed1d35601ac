"""The closed loop in the twin: the simulator, the Commander, the shield, the async runner and the metrics."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from core.windows import DT_S
from evals.boxes import PACIFICA
from evals.closed_loop.commander import CommanderView, LabelerCommander
from evals.closed_loop.metrics import route_metrics, summarize, table_md
from evals.closed_loop.routes import make_routes
from evals.closed_loop.runner import ConstantControlsPolicy, LoopConfig, PrivilegedDriver, run_route
from evals.closed_loop.shield import Shield, check
from labelers.kinematic import KinematicLabeler
from transforms.twin import sim
from transforms.twin.render import render_frames
from transforms.twin.sim import DriverPolicy, TwinEnv
from transforms.twin.world import Track
from transforms.unicycle import integrate_unicycle

SYNC1 = LoopConfig(mode="sync", execute_steps=1)


def _route(scenario: str, seconds: float = 20.0):
    return make_routes([scenario], 1, seconds=seconds)[0]


def test_the_ego_drives_the_action_spaces_unicycle_inside_alpamayos_bounds() -> None:
    route = _route("cruise", 8.0)
    env = TwinEnv(route.world, reactive=False)
    e0 = env.ego
    rng = np.random.default_rng(0)
    accel, kappa = rng.normal(0, 0.8, 30), rng.normal(0, 0.01, 30)
    for a, k in zip(accel, kappa, strict=True):
        env.step(a, k)
    xy, yaw, v = integrate_unicycle(accel[None], kappa[None], np.array([e0.v_mps]))
    c, s = np.cos(e0.yaw_rad), np.sin(e0.yaw_rad)
    x = e0.x_m + c * xy[0, -1, 0] - s * xy[0, -1, 1]
    y = e0.y_m + s * xy[0, -1, 0] + c * xy[0, -1, 1]
    assert (env.ego.x_m, env.ego.y_m, env.ego.v_mps) == pytest.approx((x, y, v[0, -1]), abs=1e-6)
    assert env.ego.yaw_rad == pytest.approx(e0.yaw_rad + yaw[0, -1], abs=1e-9)
    env.step(50.0, 2.0)  # beyond the bounds: clipped to them
    assert (env.ego.a_mps2, env.ego.kappa_1pm) == (sim.ACCEL_BOUND_MPS2, sim.CURVATURE_BOUND_1PM)
    for _ in range(40):  # braking stops the car; it never reverses
        env.step(-9.0, 0.0)
    assert env.ego.v_mps == 0.0 and env.t_s == pytest.approx(71 * DT_S)
    assert (sim.EGO_LENGTH_M, sim.EGO_REAR_AXLE_TO_CENTER_M) == (PACIFICA.length_m, PACIFICA.rear_axle_to_center_m)


def test_the_camera_is_rendered_from_the_pose_the_ego_actually_reached() -> None:
    route = _route("follow", 8.0)
    cam = route.camera(128, 72)
    env = TwinEnv(route.world, reactive=False, camera=cam)
    logged = next(render_frames(route.world, cam, np.array([0.0])))
    assert np.array_equal(env.render(), logged)  # at t = 0 the ego is where the log has it
    for _ in range(20):
        env.step(0.0, 0.03)  # steer off the logged path
    logged = next(render_frames(route.world, cam, np.array([2e6])))
    assert np.mean(np.abs(env.render().astype(int) - logged.astype(int))) > 5
    assert len(env.render_s) == 2 and all(0 < t < 1 for t in env.render_s)


def _world_with_one_car(gap_m: float, speed_delta_mps: float):
    """A cruise world whose only other vehicle drives in the ego's lane, `gap_m` ahead of it (negative:
    behind), at the ego's initial speed plus `speed_delta_mps` (never below a stand)."""
    world = _route("cruise", 12.0).world
    road, ego = world.road, world.ego
    t = ego.t_us / 1e6
    d = float(np.round(np.interp(0.0, t, ego.d_m) / road.lane_width_m) * road.lane_width_m)
    speed = np.full(len(t), max(0.0, float(np.interp(0.0, t, ego.speed_mps)) + speed_delta_mps))
    s = float(np.interp(0.0, t, ego.s_m)) + gap_m + speed * t
    x, y = road.frenet_to_xy(s, np.full(len(t), d))
    _, _, h = road.at(s)
    car = Track(1, "car", 4.6, 1.85, 1.5, (200, 0, 0), s, np.full(len(t), d), speed, x, y, h)
    return replace(world, tracks=(car,))


@pytest.mark.parametrize("reactive", [True, False])
def test_reactive_traffic_brakes_for_the_ego_and_replayed_traffic_does_not(reactive: bool) -> None:
    world = _world_with_one_car(-25.0, 2.0)  # a faster car behind the ego
    env = TwinEnv(world, reactive=reactive)
    gaps = []
    for _ in range(150):  # the ego brakes to a stand in its lane, and stands
        env.step(-3.0, 0.0)
        s, _ = env.frenet()
        gaps.append(env.ego.center_s_m - PACIFICA.length_m / 2 - (s[0] + 4.6 / 2))
    if reactive:
        assert min(gaps) > 0.5 and abs(env.agents()[0, 5]) < 0.5  # it stopped behind the ego
    else:
        assert min(gaps) < 0  # the log drives through the ego


def test_the_driver_model_completes_the_overtake_the_commander_asks_for() -> None:
    route = _route("overtake_left")
    rec = run_route(route, PrivilegedDriver(), SYNC1)
    row = route_metrics(rec)
    said = [c.meta_action for c in rec.commands]
    assert "overtake_left" in said and said[0] == "keep_lane" and len(said) == 20  # 1 Hz over 20 s
    assert any(c.text in ("Overtake the truck on the left", "Pass the truck on the left",
                          "Get past the truck on the left") for c in rec.commands)
    assert row["collisions"] == 0 and row["route_completion"] > 0.95 and row["command_success"] == 1.0
    assert row["driving_score"] == pytest.approx(row["route_completion"]) and row["stale_steps"] == 0


def test_constant_controls_runs_the_stop_line_and_pays_for_it() -> None:
    route = _route("stop_and_go")
    rows = {p.name: route_metrics(run_route(route, p, SYNC1)) for p in (ConstantControlsPolicy(), PrivilegedDriver())}
    const, driver = rows["constant_controls"], rows["driver_model"]
    assert driver["stop_lines_run"] == 0 and driver["command_success"] == 1.0  # stopped at the line, then went
    assert const["stop_lines_run"] == 1 and const["driving_score"] == pytest.approx(0.8 * const["route_completion"])
    assert const["command_success"] < 1.0
    summary = summarize(list(rows.values()))
    table = table_md(summary)
    assert "| constant_controls | 1 |" in table and "| driver_model | 1 |" in table


def test_the_constant_baseline_leaves_a_bend_and_loses_route_completion_for_it() -> None:
    row = route_metrics(run_route(_route("turn"), ConstantControlsPolicy(), SYNC1))
    assert row["terminated"] == "route_deviation" and row["offroad_share"] > 0 and row["route_completion"] < 0.6


def test_the_shield_swaps_a_chunk_into_a_standing_car_for_braking_in_lane() -> None:
    route = _route("follow")
    env = TwinEnv(route.world)
    driver_plan = DriverPolicy(route.world).plan(env)
    assert check(env, *driver_plan) == []
    a, k, hit = Shield().guard(env, *driver_plan)
    assert hit is None and a is driver_plan[0]
    v0 = float(_route("cruise", 12.0).world.ego.speed_mps[0])  # the world _world_with_one_car builds on
    env = TwinEnv(_world_with_one_car(max(30.0, v0**2 / 7 + 15), -100.0))  # standing, beyond braking distance
    keep_going = (np.zeros(64), np.zeros(64))
    a, k, hit = Shield().guard(env, *keep_going)
    assert hit is not None and {"collision", "ttc"} <= set(hit.reasons) and hit.fallback in ("brake", "emergency_brake")
    assert np.all(a <= 0) and "collision" not in check(env, a, k, comfort_check=False)
    a, k, hit = Shield().guard(TwinEnv(route.world), np.zeros(64), np.full(64, 1.0))  # beyond the curvature bound
    assert hit is not None and "bounds" in hit.reasons and hit.fallback == "keep_lane"


def _stand_in_act(latency_s: float):
    """An agent stand-in for the runner's mechanics: keep the speed, go straight, after `latency_s`."""
    def act(image: np.ndarray, command: str, state: tuple) -> SimpleNamespace:
        assert image.shape == (144, 256, 3) and command
        time.sleep(latency_s)
        return SimpleNamespace(accel_mps2=np.zeros(64), curvature_1pm=np.zeros(64))
    return act


def test_async_inference_counts_stale_steps_when_plans_come_late() -> None:
    from evals.closed_loop.runner import AgentPolicy

    route = _route("cruise", 4.0)
    quick = run_route(route, AgentPolicy(_stand_in_act(0.0)), LoopConfig(execute_steps=5))
    late = run_route(route, AgentPolicy(_stand_in_act(0.0)), LoopConfig(execute_steps=2, delay_s=0.45))
    q, lt = route_metrics(quick), route_metrics(late)
    assert q["stale_steps"] == 0 and q["plan_p95_ms"] < 100 and q["plans"] >= 40 // 5
    assert lt["plan_p50_ms"] >= 450 and lt["stale_steps"] >= 20 and lt["plans"] <= 40 // 4 + 1
    assert q["steps"] == lt["steps"] == 40 and q["render_ms"] > 0


def test_a_labeler_can_stand_in_for_the_rule_based_commander() -> None:
    route = _route("lane_change_left")
    env = TwinEnv(route.world, camera=route.camera(128, 72))
    driver = DriverPolicy(route.world)
    while env.t_s < route.world.plan.lane_change_at_s - 0.5:  # the plan ahead holds the change
        a, k = driver.plan(env)
        env.step(a[0], k[0])
    s, d = env.frenet()
    plan = driver.plan(env)
    view = CommanderView(env.t_s, route, env.ego, env.agents(), s, d, env.render(), *plan)
    cmd = LabelerCommander(KinematicLabeler())(view)
    assert cmd.meta_action == "change_lane_left" and "left lane" in cmd.text
    with pytest.raises(ValueError, match="needs the route's plan"):
        LabelerCommander(KinematicLabeler())(replace(view, plan_accel=None))


def test_the_evaluation_takes_a_labeler_as_its_commander_and_needs_an_agent_to_drive_one() -> None:
    from evals.closed_loop.evaluate import evaluate_closed_loop
    from evals.config import ClosedLoopConfig

    cfg = ClosedLoopConfig(scenarios=("lane_change_left",), seconds=8.0, policies=("driver_model",),
                           commander="kinematic", videos=False)
    res = evaluate_closed_loop(None, cfg, log=lambda s: None)
    (row,) = res.rows
    said = [meta for _, meta, _ in json.loads(row["commands"])]
    assert len(said) == 8 and "change_lane_left" in said and row["collisions"] == 0
    with pytest.raises(ValueError, match="'field_agent' needs the field agent"):
        evaluate_closed_loop(None, replace(cfg, policies=("field_agent",)), log=lambda s: None)


def test_every_scenarios_route_row_fits_the_lake_table() -> None:
    """Route seeds are 64-bit unsigned hashes: the table keeps them as text (an int64 column overflowed)."""
    import pyarrow as pa

    from lake import tables as T
    from transforms.twin.world import SCENARIOS

    routes = make_routes(SCENARIOS, 2, seconds=4.0)
    assert any(r.clip_seed >= 2**63 for r in routes)
    rows = [{"run_id": "r", **route_metrics(run_route(r, ConstantControlsPolicy(), SYNC1)), "video": None,
             "config": "{}", "finished_us": 0} for r in routes]
    table = pa.Table.from_pylist(rows, schema=T.CLOSED_LOOP_ROUTES.schema)
    assert table.num_rows == 16 and {int(s) for s in table.column("clip_seed").to_pylist()} == {r.clip_seed for r in routes}
