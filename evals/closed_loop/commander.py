"""The Commander: every second, one command from the Commander vocabulary for the field agent.

Any callable `CommanderView -> Command` is a Commander. Two ship:
- `RuleCommander`: rules with privileged access to the twin's ground truth, as CARLA's route planner
  has to the map: the route's mission, the stop line, the truck, the lane change's moment, the bend;
- `LabelerCommander`: any labeler of labelers/ (kinematic, `vlm`, `alpamayo`) given the front
  camera and the route's privileged plan for the next 6.4 s (the twin driver's, transforms/twin/sim.py)
  says in words what to do, so a VLM can stand in for the rules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from core.vocab import DEFAULT_SUBJECT, GO_DONE_MPS, PHRASINGS, TURN_CURVATURE_1PM
from evals.closed_loop.routes import Route
from labelers.base import Labeler, LabelFailure, WindowContext
from labelers.trace import render_command
from transforms.twin.driver import (
    EGO_FRONT_M,
    FOLLOW_GAP_M,
    FOLLOW_HEADWAY_S,
    OVERTAKE_CLEAR_M,
    STOP_BRAKE_MPS2,
    STOP_MARGIN_M,
    STOPPED_NEAR_LINE_M,
)
from transforms.twin.sim import EgoState
from transforms.unicycle import integrate_unicycle

COMMAND_PERIOD_S = 1.0  # the Commander speaks at 1 Hz
STOPPED_MPS = 0.3
STOP_WAIT_S = 2.0  # the Commander says "go" after the ego has stood at the line this long
LANE_DONE_M = 0.5  # a lane change is done within this of the target lane's centre
SPEED_DONE_MPS = 1.0
OVERTAKE_LOOK_S, OVERTAKE_LOOK_M = 3.0, 40.0


@dataclass(frozen=True)
class Command:
    meta_action: str
    text: str
    t_s: float


@dataclass(frozen=True)
class CommanderView:
    """What the Commander sees at one tick: route time, the ego, everyone else, and the camera."""

    t_s: float
    route: Route
    ego: EgoState
    agents: np.ndarray  # (A, 6) centre x, y, yaw, length, width, signed speed
    agents_s: np.ndarray  # (A,) Frenet s of the centres
    agents_d: np.ndarray  # (A,)
    image: np.ndarray | None = None
    plan_accel: np.ndarray | None = None  # (64,) the route's privileged plan, for LabelerCommander
    plan_kappa: np.ndarray | None = None


class Commander(Protocol):
    needs_plan: bool

    def __call__(self, view: CommanderView) -> Command: ...


def phrase(meta_action: str, subject: str, key: str) -> str:
    """One of the meta-action's phrasings, chosen by a hash of `key` (as the labels were)."""
    options = PHRASINGS[meta_action]
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")
    return options[h % len(options)].format(subject=subject or DEFAULT_SUBJECT.get(meta_action, ""))


@dataclass
class RuleCommander:
    """Privileged rules, in the priority the twin's driver records its intent by (transforms/twin/driver.py)."""

    route: Route
    needs_plan: bool = False
    _stopped_since: float | None = None
    _stop_done: bool = False
    _overtake: str = "none"  # none | on | done
    _lane_target: int | None = None
    _lane_done: bool = False

    def _lane(self, d: float) -> int:
        road = self.route.world.road
        return int(np.clip(round(d / road.lane_width_m), 0, road.n_lanes - 1))

    def _stop(self, v: CommanderView) -> str | None:
        lines = self.route.world.road.stop_lines_s_m
        if not lines or self._stop_done:
            return None
        dist = lines[0] - (v.ego.s_m + EGO_FRONT_M)
        if dist < -2.0 and self._stopped_since is None:  # ran it: nothing more to say about this line
            self._stop_done = True
            return None
        if self._stopped_since is None and v.ego.v_mps < STOPPED_MPS and dist < STOPPED_NEAR_LINE_M + 2.0:
            self._stopped_since = v.t_s
        if self._stopped_since is not None:
            if v.t_s - self._stopped_since < STOP_WAIT_S:
                return "stop"
            if v.ego.v_mps > min(0.85 * self.route.world.desired_speed_mps, GO_DONE_MPS):
                self._stop_done = True
                return None
            return "go"
        if dist < v.ego.v_mps**2 / (2 * STOP_BRAKE_MPS2) + STOP_MARGIN_M:
            return "stop"
        return None

    def _overtake_cmd(self, v: CommanderView) -> str | None:
        if self.route.scenario != "overtake_left" or self._overtake == "done" or not len(v.agents):
            return None
        truck_s = float(v.agents_s[0])
        past = v.ego.s_m - EGO_FRONT_M - OVERTAKE_CLEAR_M > truck_s
        if self._overtake == "on":
            if past and self._lane(v.ego.d_m) == 0 and abs(v.ego.d_m) < LANE_DONE_M:
                self._overtake = "done"
                return None
            return "overtake_left"
        gap = truck_s - v.ego.s_m
        if 0 < gap < max(OVERTAKE_LOOK_M, OVERTAKE_LOOK_S * v.ego.v_mps):
            self._overtake = "on"
            return "overtake_left"
        return None

    def _lane_change(self, v: CommanderView) -> str | None:
        plan, scenario = self.route.world.plan, self.route.scenario
        if scenario not in ("lane_change_left", "lane_change_right") or plan is None or self._lane_done:
            return None
        if v.t_s < plan.lane_change_at_s:
            return None
        step = 1 if scenario == "lane_change_left" else -1
        road = self.route.world.road
        if self._lane_target is None:
            self._lane_target = int(np.clip(self._lane(v.ego.d_m) + step, 0, road.n_lanes - 1))
        if abs(v.ego.d_m - road.lane_center_d(self._lane_target)) < LANE_DONE_M:
            self._lane_done = True
            return None
        return scenario.replace("lane_change", "change_lane")

    def _cruise(self, v: CommanderView) -> tuple[str, str]:
        road, e = self.route.world.road, v.ego
        ahead = [float(road.curvature_at(e.s_m + 2.0 * e.v_mps)), float(road.curvature_at(e.s_m))]
        if max(abs(k) for k in ahead) > TURN_CURVATURE_1PM:
            return ("turn_left" if sum(ahead) > 0 else "turn_right"), ""
        lead = self._lead(v)
        if lead is not None and lead[0] < FOLLOW_HEADWAY_S * e.v_mps + FOLLOW_GAP_M:
            return "follow_lead", lead[1]
        plan = self.route.world.plan
        if plan is not None and v.t_s >= plan.speed_change_at_s:
            if e.v_mps < plan.v_des_after_mps - SPEED_DONE_MPS:
                return "speed_up", ""
            if e.v_mps > plan.v_des_after_mps + SPEED_DONE_MPS:
                return "slow_down", ""
        return "keep_lane", ""

    def _lead(self, v: CommanderView) -> tuple[float, str] | None:
        w = self.route.world.road.lane_width_m
        best = None
        for i, tr in enumerate(self.route.world.tracks):
            gap = float(v.agents_s[i]) - v.ego.s_m
            if v.agents[i, 5] > 0 and abs(float(v.agents_d[i]) - v.ego.d_m) < 0.6 * w and gap > 0:
                if best is None or gap < best[0]:
                    best = (gap, tr.label_class)
        return best

    def __call__(self, view: CommanderView) -> Command:
        subject = ""
        meta = self._overtake_cmd(view) or self._lane_change(view) or self._stop(view)
        if meta == "overtake_left":
            subject = self.route.world.tracks[0].label_class
        elif meta == "stop":
            subject = "line"
        if meta is None:
            meta, subject = self._cruise(view)
        return Command(meta, phrase(meta, subject, f"{self.route.route_id}/{meta}"), view.t_s)


@dataclass
class LabelerCommander:
    """A labeler as the Commander: it labels the route's privileged 6.4 s plan from the current camera."""

    labeler: Labeler
    needs_plan: bool = True

    def __call__(self, view: CommanderView) -> Command:
        if view.plan_accel is None or view.plan_kappa is None:
            raise ValueError("LabelerCommander needs the route's plan in the view (needs_plan=True)")
        accel, kappa = np.asarray(view.plan_accel, np.float64), np.asarray(view.plan_kappa, np.float64)
        xy, yaw, _ = integrate_unicycle(accel[None], kappa[None], np.array([view.ego.v_mps]))
        t0_us = round(view.t_s * 1e6)
        ctx = WindowContext(view.route.route_id, t0_us, view.ego.v_mps, accel, kappa,
                            np.c_[xy[0], np.zeros(len(accel))], yaw[0], image=view.image)
        out = self.labeler.label([ctx])[0]
        if isinstance(out, LabelFailure):
            return Command("keep_lane", phrase("keep_lane", "", ctx.key), view.t_s)  # say nothing new
        return Command(out.meta_action, render_command(out, ctx.key), view.t_s)
