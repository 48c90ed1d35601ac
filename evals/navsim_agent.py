"""The field agent as a NAVSIM agent, for users who have NAVSIM, nuPlan maps and OpenScene data.

NAVSIM installs from git (github.com/autonomousvision/navsim with nuplan-devkit), not from PyPI,
so its import is guarded: without it, `FieldAgentNavsim` refuses to be built and says how to
install it, while the conversions below (NAVSIM inputs -> the agent's, the agent's 10 Hz plan ->
NAVSIM's 8 poses at 2 Hz) are plain functions, tested here without NAVSIM.

NAVSIM gives the agent, per history frame (4 at 2 Hz, the last is now): the ego pose relative to
the current frame, velocity and acceleration in the ego frame, a one-hot driving command
(left, straight, right, unknown) and the 8 cameras. The field agent uses the front camera
(cam_f0) of the current frame, a Commander command for the driving command, and its state
(v, a, κ, yaw rate at t0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evals.pdm import NAVSIM_INTERVAL_S, navsim_poses

try:  # NAVSIM is optional: it installs from git with nuplan-devkit
    from navsim.agents.abstract_agent import AbstractAgent
    from navsim.common.dataclasses import SensorConfig, Trajectory

    NAVSIM_AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the environment
    AbstractAgent = object  # type: ignore[assignment,misc]
    NAVSIM_AVAILABLE = False

# NAVSIM's driving command, one-hot (left, straight, right, unknown), in Commander words
NAVSIM_COMMANDS = ("Turn left", "Follow the lane", "Turn right", "Follow the lane")
MIN_SPEED_FOR_CURVATURE_MPS = 0.5  # below this, κ = yaw rate / v is noise: report 0 (as the shards do)
INSTALL_HINT = ("NAVSIM is not installed: install it from git (pip install -e <navsim checkout>, with "
                "nuplan-devkit from its git tag) to run this agent under NAVSIM's run_pdm_score")


def command_text(driving_command: Any) -> str:
    """NAVSIM's one-hot driving command -> the Commander command the field agent was trained on."""
    cmd = np.asarray(driving_command, dtype=np.float64).ravel()
    if cmd.shape != (4,) or not np.isfinite(cmd).all():
        raise ValueError(f"driving_command must be one-hot (left, straight, right, unknown), got {cmd.tolist()}")
    return NAVSIM_COMMANDS[int(np.argmax(cmd))] if cmd.max() > 0 else NAVSIM_COMMANDS[3]


def ego_state(ego_statuses: list[Any], interval_s: float = NAVSIM_INTERVAL_S) -> tuple[float, float, float, float]:
    """NAVSIM ego statuses (oldest first, the last is now) -> (v, a, κ, yaw rate) at t0.

    Yaw rate is the heading change over the last history interval (poses are relative to the
    current frame, so the current heading is 0); κ = yaw rate / v.
    """
    if not ego_statuses:
        raise ValueError("need at least the current ego status")
    now = ego_statuses[-1]
    vel, acc = np.asarray(now.ego_velocity, np.float64), np.asarray(now.ego_acceleration, np.float64)
    v = float(np.hypot(vel[0], vel[1])) * (1.0 if vel[0] >= 0 else -1.0)
    a = float(acc[0])  # longitudinal, ego frame
    yaw_rate = 0.0
    if len(ego_statuses) >= 2:
        h_prev, h_now = float(ego_statuses[-2].ego_pose[2]), float(now.ego_pose[2])
        yaw_rate = float(np.arctan2(np.sin(h_now - h_prev), np.cos(h_now - h_prev))) / interval_s
    kappa = yaw_rate / v if abs(v) >= MIN_SPEED_FOR_CURVATURE_MPS else 0.0
    return v, a, kappa, yaw_rate


def plan_poses(xy_m: np.ndarray, yaw_rad: np.ndarray) -> np.ndarray:
    """The agent's 10 Hz plan (64, 2), (64,) -> NAVSIM's (8, 3) poses (x, y, heading) at 0.5 .. 4.0 s."""
    return navsim_poses(xy_m, yaw_rad).astype(np.float32)


class FieldAgentPlanner:
    """NAVSIM AgentInput -> 8 poses at 2 Hz, through a FieldAgent checkpoint (no NAVSIM import needed)."""

    def __init__(self, checkpoint_path: str | Path, device: str = "cpu", seed: int = 0) -> None:
        self.checkpoint_path, self.device, self.seed = str(checkpoint_path), device, seed
        self.agent: Any = None

    def load(self) -> None:
        from trainers.agent import FieldAgent

        self.agent = FieldAgent.load(self.checkpoint_path, device=self.device)

    def plan(self, agent_input: Any) -> np.ndarray:
        if self.agent is None:
            self.load()
        image = agent_input.cameras[-1].cam_f0.image
        if image is None:
            raise ValueError("the current frame has no cam_f0 image: the sensor config must load cam_f0")
        image = np.asarray(image)
        if image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        command = command_text(agent_input.ego_statuses[-1].driving_command)
        out = self.agent.act(image, command, ego_state(agent_input.ego_statuses), seed=self.seed)
        return plan_poses(out.xy_m, out.yaw_rad)


class FieldAgentNavsim(AbstractAgent):  # type: ignore[misc,valid-type]
    """NAVSIM's AbstractAgent interface over the field agent (front camera, command, ego state)."""

    def __init__(self, checkpoint_path: str, device: str = "cpu", trajectory_sampling: Any = None,
                 seed: int = 0) -> None:
        if not NAVSIM_AVAILABLE:
            raise ImportError(INSTALL_HINT)
        try:  # NAVSIM v2's base class takes the trajectory sampling; v1's takes nothing
            super().__init__(trajectory_sampling=trajectory_sampling)
        except TypeError:
            super().__init__()
        self.planner = FieldAgentPlanner(checkpoint_path, device, seed)

    def name(self) -> str:
        return "field_agent"

    def get_sensor_config(self) -> Any:
        # only the current frame's front camera (index 3 of the 4 history frames)
        return SensorConfig(cam_f0=[3], cam_l0=False, cam_l1=False, cam_l2=False, cam_r0=False, cam_r1=False,
                            cam_r2=False, cam_b0=False, lidar_pc=False)

    def initialize(self) -> None:
        self.planner.load()

    def compute_trajectory(self, agent_input: Any) -> Any:
        return Trajectory(self.planner.plan(agent_input))
