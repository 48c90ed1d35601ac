"""navsim_eval on real shards of the session twin: every policy scored, the adapter on a real checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from evals.navsim_agent import FieldAgentPlanner, plan_poses
from evals.navsim_eval import FIELD_AGENT, LOGGED, WRONG_COMMAND, evaluate, poses_at, read_windows, summarize
from evals.scene import clip_scenes
from tests.trainers.conftest import Chunk0
from trainers.agent import FieldAgent
from transforms.twin.truth import load_twin_gt


@pytest.fixture(scope="module")
def scored(tiny_run: tuple, shard_urls: dict[str, list[str]], chunk0: Chunk0) -> tuple:
    res, _ = tiny_run
    windows, unmatched = read_windows(shard_urls["val"] + shard_urls["test"], chunk0.targets)
    agent = FieldAgent.load(res.checkpoint)

    def act(images: list, commands: list[str], states: list) -> tuple[np.ndarray, np.ndarray]:
        out = agent.act_batch(images, commands, [tuple(float(x) for x in s) for s in states])
        return out.xy_m, out.yaw_rad

    scenes = clip_scenes(load_twin_gt(chunk0.files))
    poses = poses_at(chunk0.egomotion, [(w.clip_id, w.t0_us) for w in windows])
    rows, plans, wrong = evaluate(windows, act, scenes, poses, batch=5)
    return windows, unmatched, rows, plans, wrong


def test_every_policy_is_scored_on_every_window(scored: tuple) -> None:
    windows, unmatched, rows, plans, _ = scored
    assert unmatched == 0 and len(windows) >= 8
    assert set(plans) == {LOGGED, "constant_velocity", "constant_controls", FIELD_AGENT, WRONG_COMMAND}
    assert len(rows) == 5 * len(windows)
    for r in rows:  # the twin knows the scene: every PDM sub-score is there
        assert all(r[k] is not None for k in ("nc", "dac", "ddc", "ttc", "ep", "lk", "hc", "c", "pdms", "epdms"))
        assert 0.0 <= r["pdms"] <= 1.0 and 0.0 <= r["epdms"] <= 1.0 and len(r["pred_xy"]) == 128


def test_the_logged_future_is_the_near_perfect_upper_bound(scored: tuple) -> None:
    _, _, rows, _, _ = scored
    s = {(r["policy"], r["split"]): r for r in summarize(rows)}
    logged = s[(LOGGED, "all")]
    assert logged["ade_6p4s"] == 0.0 and logged["epdms"] >= 0.95 and logged["pdms"] >= 0.95
    assert s[("constant_velocity", "all")]["ade_6p4s"] > 0.1


def test_ec_compares_with_the_previous_window_of_the_clip(scored: tuple) -> None:
    windows, _, rows, _, _ = scored
    first = {}
    for w in windows:
        first[w.clip_id] = min(first.get(w.clip_id, w.t0_us), w.t0_us)
    for r in rows:
        assert (r["ec"] is None) == (r["t0_us"] == first[r["clip_id"]])


def test_wrong_command_rows_carry_the_command_given(scored: tuple) -> None:
    windows, _, rows, plans, wrong = scored
    index = {(w.clip_id, w.t0_us): i for i, w in enumerate(windows)}
    for r in rows:
        i = index[(r["clip_id"], r["t0_us"])]
        if r["policy"] == WRONG_COMMAND and wrong[i] is not None:
            assert r["command"] == wrong[i] != windows[i].command
    assert not np.allclose(plans[FIELD_AGENT].xy, plans[WRONG_COMMAND].xy)  # the command reaches the policy


def test_the_navsim_adapter_plans_from_an_agent_input(tiny_run: tuple, scored: tuple) -> None:
    res, _ = tiny_run
    w = scored[0][0]
    status = SimpleNamespace(ego_pose=np.zeros(3), ego_velocity=np.array([w.state[0], 0.0]),
                             ego_acceleration=np.array([w.state[1], 0.0]), driving_command=np.array([0, 1, 0, 0]))
    prev = SimpleNamespace(**{**vars(status), "ego_pose": np.array([-w.state[0] * 0.5, 0.0, 0.0])})
    big = np.asarray(Image.fromarray(w.image).resize((1920, 1080)))  # NAVSIM's cam_f0 size
    agent_input = SimpleNamespace(ego_statuses=[prev, status], cameras=[SimpleNamespace(cam_f0=SimpleNamespace(image=big))])
    planner = FieldAgentPlanner(res.checkpoint)
    poses = planner.plan(agent_input)
    out = FieldAgent.load(res.checkpoint).act(big, "Follow the lane", (float(w.state[0]), float(w.state[1]), 0.0, 0.0))
    np.testing.assert_allclose(poses, plan_poses(out.xy_m, out.yaw_rad), atol=1e-5)
    agent_input.cameras[-1].cam_f0.image = None
    with pytest.raises(ValueError, match="no cam_f0 image"):
        planner.plan(agent_input)
