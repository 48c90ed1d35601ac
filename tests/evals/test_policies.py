"""Baselines, the wrong-command pairing, the NAVSIM adapter's conversions and the score table."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from evals import navsim_agent as NA
from evals.navsim_eval import extremes, score_table_md, summarize
from evals.policies import wrong_commands
from transforms.baselines import constant_controls, constant_velocity
from transforms.unicycle import integrate_unicycle


def test_constant_velocity_goes_straight_at_v0() -> None:
    xy, yaw = constant_velocity(np.array([10.0, 0.0]))
    np.testing.assert_allclose(xy[0, -1], [64.0, 0.0])
    np.testing.assert_allclose(xy[1], 0.0)
    assert np.all(yaw == 0.0)


def test_constant_controls_hold_a_and_kappa_and_stop_instead_of_reversing() -> None:
    xy, yaw = constant_controls(np.array([10.0]), np.array([0.5]), np.array([0.01]))
    ref_xy, ref_yaw, _ = integrate_unicycle(np.full((1, 64), 0.5), np.full((1, 64), 0.01), np.array([10.0]))
    np.testing.assert_allclose(xy, ref_xy, atol=1e-9)
    np.testing.assert_allclose(yaw, ref_yaw, atol=1e-9)
    xy, _ = constant_controls(np.array([5.0]), np.array([-2.0]), np.array([0.0]))  # stops after 2.5 s, 6.25 m
    assert xy[0, -1, 0] == pytest.approx(6.25, abs=0.01)
    assert np.all(np.diff(xy[0, :, 0]) >= -1e-12)  # never backwards


def test_wrong_commands_come_from_windows_with_another_meta_action() -> None:
    actions = ["keep_lane", "stop", "keep_lane", "go", "stop", "keep_lane"]
    commands = [f"cmd-{a}-{i}" for i, a in enumerate(actions)]
    wrong = wrong_commands(commands, actions, seed=1)
    assert wrong == wrong_commands(commands, actions, seed=1)  # reproducible
    for a, w in zip(actions, wrong, strict=True):
        assert w is not None and w.split("-")[1] != a
    assert wrong_commands(["a", "b"], ["stop", "stop"]) == [None, None]  # nothing to swap with
    with pytest.raises(ValueError, match="2 commands but 1 meta-actions"):
        wrong_commands(["a", "b"], ["stop"])


def _status(pose: tuple[float, float, float], v: tuple[float, float], a: tuple[float, float],
            cmd: tuple[int, ...] = (0, 1, 0, 0)) -> SimpleNamespace:
    return SimpleNamespace(ego_pose=np.array(pose), ego_velocity=np.array(v), ego_acceleration=np.array(a),
                           driving_command=np.array(cmd))


def test_navsim_inputs_become_the_agents_command_and_state() -> None:
    assert NA.command_text([1, 0, 0, 0]) == "Turn left"
    assert NA.command_text([0, 0, 1, 0]) == "Turn right"
    assert NA.command_text([0, 1, 0, 0]) == NA.command_text([0, 0, 0, 1]) == "Follow the lane"
    with pytest.raises(ValueError, match="one-hot"):
        NA.command_text([1, 0])
    # turning left at 10 m/s: the heading 0.5 s ago was 0.05 rad to the right of now
    history = [_status((-10.0, 0.0, -0.1), (10, 0), (0, 0)), _status((-5.0, 0.0, -0.05), (10, 0), (0, 0)),
               _status((0.0, 0.0, 0.0), (10.0, 0.2), (0.8, 1.0))]
    v, a, kappa, yaw_rate = NA.ego_state(history)
    assert v == pytest.approx(np.hypot(10, 0.2)) and a == 0.8
    assert yaw_rate == pytest.approx(0.1) and kappa == pytest.approx(0.1 / v)
    assert NA.ego_state([_status((0, 0, 0), (0.1, 0), (0, 0))])[2] == 0.0  # standing: no curvature


def test_plan_poses_are_navsims_8_poses_at_2_hz() -> None:
    xy, yaw, _ = integrate_unicycle(np.zeros((1, 64)), np.full((1, 64), 0.01), np.array([10.0]))
    poses = NA.plan_poses(xy[0], yaw[0])
    assert poses.shape == (8, 3) and poses.dtype == np.float32
    np.testing.assert_allclose(poses[:, :2], xy[0, 4:40:5], rtol=1e-6)  # t0 + 0.5, 1.0, ... 4.0 s
    np.testing.assert_allclose(poses[:, 2], yaw[0, 4:40:5], rtol=1e-6)


@pytest.mark.skipif(NA.NAVSIM_AVAILABLE, reason="NAVSIM is installed here")
def test_the_navsim_agent_says_how_to_install_navsim() -> None:
    with pytest.raises(ImportError, match="NAVSIM is not installed"):
        NA.FieldAgentNavsim("some/checkpoint")


def _row(policy: str, split: str, epdms: float | None, ade: float) -> dict:
    row = dict.fromkeys(("ade_1s", "fde_1s", "ade_2s", "fde_2s", "ade_3s", "fde_3s", "fde_6p4s", "nc", "dac", "ddc",
                         "tlc", "ttc", "ep", "lk", "c", "hc", "ec", "pdms", "progress_m"), 1.0)
    return {**row, "policy": policy, "split": split, "epdms": epdms, "ade_6p4s": ade, "clip_id": "c", "t0_us": 0}


def test_summaries_tables_and_extremes() -> None:
    rows = [_row("agent", "val", 0.5, 1.0), _row("agent", "test", 1.0, 3.0), _row("agent", "test", None, 2.0)]
    s = {(r["policy"], r["split"]): r for r in summarize(rows)}
    assert s[("agent", "all")]["windows"] == 3 and s[("agent", "all")]["scored_windows"] == 2
    assert s[("agent", "all")]["epdms"] == pytest.approx(0.75) and s[("agent", "test")]["ade_6p4s"] == 2.5
    table = score_table_md(list(s.values()), "test")
    assert table.splitlines()[2].startswith("| agent | 2 |") and "EPDMS" in table.splitlines()[0]
    best, worst = extremes(rows, "agent", n=1)
    assert best[0]["epdms"] == 1.0 and worst[0]["epdms"] is None  # unscored counts as 0
