"""The twin's driver model: a small state machine stepped at 100 Hz in Frenet coordinates.

Longitudinal control is an Intelligent Driver Model (IDM) with a first-order lag on acceleration;
lateral motion is a quintic lane change. Two intents span many steps and are states: stopping at
a line (`StopState`) and overtaking (`OvertakeState`). Every step records the intent a Commander
would have voiced, in its own vocabulary, with the thresholds the kinematic labeler reads the
same intents back by (core/vocab.py).

The draws from the clip's random generator happen in a fixed order (the twin is a function of its
seed: tests/transforms/test_twin_digest.py holds its bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from core.vocab import GO_DONE_MPS, SPEED_CHANGE_MPS2, TURN_CURVATURE_1PM

if TYPE_CHECKING:
    from transforms.twin.world import Road, Track

SIM_DT_S = 0.01  # 100 Hz, the rate of PAI's egomotion

# IDM (Treiber et al.) with a city driver's parameters
IDM_A_MAX_MPS2 = 1.6
IDM_B_COMF_MPS2 = 2.2
IDM_S0_M = 3.0  # standstill gap
IDM_HEADWAY_S = 1.4
IDM_FREE_FLOOR = -0.8  # above the desired speed, brake gently, not in a panic
A_LAG_S = 0.35  # drivers do not step-change their acceleration
A_CMD_RANGE_MPS2 = (-6.0, 2.5)

EGO_FRONT_M = 3.8  # rear axle to front bumper
LANE_MATCH = 0.6  # a vehicle is in a lane when within this many lane widths of its centre
CURVE_LAT_ACCEL_MPS2 = 2.0  # curve speed: lateral acceleration under this for the sharpest curve ahead

STOP_BRAKE_MPS2 = 1.2  # comfortable braking to a line ...
STOP_MARGIN_M = 25.0  # ... begun this far before the braking distance
STOPPED_MPS = 0.05
STOPPED_NEAR_LINE_M = 6.0
STOP_WAIT_S = (1.5, 3.0)  # how long the driver waits at a line (uniform)
GO_DONE_FRACTION = 0.85  # "go" ends at this fraction of the target speed (or GO_DONE_MPS)

LANE_CHANGE_S = (3.5, 5.0)  # duration of a planned lane change (uniform)
OVERTAKE_CHANGE_S = 4.0  # duration of each of the overtake's two lane changes
OVERTAKE_TRIGGER_GAP_M = 25.0  # pull out when the gap to the truck is below this or 2.2 s
OVERTAKE_TRIGGER_HEADWAY_S = 2.2
OVERTAKE_AFTER_S = 1.0
OVERTAKE_CLEAR_M = 12.0  # back in once the ego's rear is this far past the truck
OVERTAKE_COMMIT_MPS2 = 0.3  # committed to the overtake: the truck is in the other lane

FOLLOW_HEADWAY_S, FOLLOW_GAP_M = 2.5, 12.0  # "follow_lead" when the lead is closer than 2.5 s + 12 m


class StopState(Enum):
    NONE = "none"  # a stop line ahead, not yet braking for it
    STOPPING = "stopping"
    WAITING = "waiting"
    GO = "go"  # pulling away
    DONE = "done"  # no (further) stop line


class OvertakeState(Enum):
    NONE = "none"
    OUT = "out"  # changing into the passing lane
    PASSING = "passing"
    BACK = "back"  # changing back in front of the truck
    DONE = "done"


def idm_accel(v: float, v_des: float, gap: float, dv: float) -> float:
    v_des = max(v_des, 0.1)
    free = max(1.0 - (v / v_des) ** 4, IDM_FREE_FLOOR)
    if not np.isfinite(gap):
        return IDM_A_MAX_MPS2 * free
    s_star = IDM_S0_M + max(0.0, v * IDM_HEADWAY_S + v * dv / (2 * np.sqrt(IDM_A_MAX_MPS2 * IDM_B_COMF_MPS2)))
    return IDM_A_MAX_MPS2 * (free - (s_star / max(gap, 0.1)) ** 2)


@dataclass
class LaneChange:
    t0_s: float
    duration_s: float
    d_from_m: float
    d_to_m: float
    intent: str

    def d_at(self, t_s: float) -> tuple[float, bool]:
        u = np.clip((t_s - self.t0_s) / self.duration_s, 0.0, 1.0)
        q = 10 * u**3 - 15 * u**4 + 6 * u**5  # quintic: zero lateral speed and acceleration at both ends
        return self.d_from_m + (self.d_to_m - self.d_from_m) * q, 0.0 < u < 1.0


@dataclass(frozen=True)
class Plan:
    """What the scenario asks of the driver, drawn before it starts."""

    scenario: str
    v_des_mps: float
    v_des_after_mps: float  # the desired speed after `speed_change_at_s`
    speed_change_at_s: float  # inf: no change
    lane_change_at_s: float  # when a planned lane change starts (lane_change_* scenarios)


@dataclass
class Lead:
    gap_m: float = np.inf
    dv_mps: float = 0.0
    track_id: int = -1  # -1: none, or the stop line


@dataclass
class Driver:
    """The ego's state, advanced one SIM_DT_S step at a time by `step`."""

    road: Road
    tracks: tuple[Track, ...]
    plan: Plan
    rng: np.random.Generator
    s: float
    d: float
    v: float
    a: float = 0.0
    change: LaneChange | None = None
    overtake: OvertakeState = OvertakeState.NONE
    stop: StopState = StopState.DONE
    wait_until_s: float = 0.0
    lane_change_at_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.lane_change_at_s = self.plan.lane_change_at_s
        if self.road.stop_lines_s_m:
            self.stop = StopState.NONE

    # -- longitudinal

    def _target_speed(self, t_s: float) -> float:
        v_des = self.plan.v_des_mps if t_s < self.plan.speed_change_at_s else self.plan.v_des_after_mps
        look = self.s + np.linspace(0, max(self.v, 5) * 5.0 + 30, 16)
        kmax = float(np.max(np.abs(self.road.curvature_at(look))))
        curve_cap = np.sqrt(CURVE_LAT_ACCEL_MPS2 / kmax) if kmax > 1e-6 else np.inf
        return min(v_des, curve_cap)

    def _lead(self, k: int) -> Lead:
        """The nearest vehicle ahead in the ego's lane or the lane it is changing into."""
        lanes_d = [self.d] if self.change is None else [self.d, self.change.d_to_m]
        lead = Lead()
        w = self.road.lane_width_m
        for tr in self.tracks:
            if tr.speed_mps[k] <= 0:
                continue
            if min(abs(tr.d_m[k] - ld) for ld in lanes_d) > LANE_MATCH * w:
                continue
            g = tr.s_m[k] - 0.5 * tr.length_m - (self.s + EGO_FRONT_M)
            if -tr.length_m < g < lead.gap_m and tr.s_m[k] > self.s:
                lead = Lead(max(g, 0.1), self.v - tr.speed_mps[k], tr.track_id)
        return lead

    def _stop_line(self, t_s: float, v_target: float, lead: Lead) -> tuple[Lead, float]:
        """Advance the stop state; a line the driver stops for is a standing lead. Returns the lead
        and the distance to the line (nan when none matters)."""
        stop_dist = np.nan
        v = self.v
        if self.stop in (StopState.NONE, StopState.STOPPING, StopState.WAITING):
            stop_dist = self.road.stop_lines_s_m[0] - (self.s + EGO_FRONT_M)
            if self.stop is StopState.NONE and stop_dist < v * v / (2 * STOP_BRAKE_MPS2) + STOP_MARGIN_M:
                self.stop = StopState.STOPPING
            if self.stop is StopState.STOPPING and v < STOPPED_MPS and stop_dist < STOPPED_NEAR_LINE_M:
                self.stop, self.wait_until_s = StopState.WAITING, t_s + float(self.rng.uniform(*STOP_WAIT_S))
            if self.stop is StopState.WAITING and t_s >= self.wait_until_s:
                self.stop = StopState.GO
            if self.stop in (StopState.STOPPING, StopState.WAITING) and stop_dist + 1.0 < lead.gap_m:
                lead = Lead(max(stop_dist + 1.0, 0.1), v, -1)
        elif self.stop is StopState.GO and v > min(GO_DONE_FRACTION * v_target, GO_DONE_MPS):
            self.stop = StopState.DONE  # pulled away: from here on it is ordinary speeding up
        return lead, stop_dist

    # -- lateral

    def _start_change(self, t_s: float, k: int, lead: Lead) -> None:
        scenario, w, v = self.plan.scenario, self.road.lane_width_m, self.v
        if scenario in ("lane_change_left", "lane_change_right") and t_s >= self.lane_change_at_s >= 0:
            step = 1 if scenario == "lane_change_left" else -1
            target = int(np.clip(round(self.d / w) + step, 0, self.road.n_lanes - 1))
            self.change = LaneChange(t_s, float(self.rng.uniform(*LANE_CHANGE_S)), self.d,
                                     self.road.lane_center_d(target), scenario.replace("lane_change", "change_lane"))
            self.lane_change_at_s = -1.0
        elif (scenario == "overtake_left" and self.overtake is OvertakeState.NONE and lead.track_id > 0
              and lead.gap_m < max(OVERTAKE_TRIGGER_GAP_M, OVERTAKE_TRIGGER_HEADWAY_S * v) and t_s > OVERTAKE_AFTER_S):
            self.change = LaneChange(t_s, OVERTAKE_CHANGE_S, self.d, self.road.lane_center_d(1), "overtake_left")
            self.overtake = OvertakeState.OUT
        elif scenario == "overtake_left" and self.overtake is OvertakeState.PASSING:
            truck = self.tracks[0]
            if self.s - EGO_FRONT_M - OVERTAKE_CLEAR_M > truck.s_m[k]:
                self.change = LaneChange(t_s, OVERTAKE_CHANGE_S, self.d, self.road.lane_center_d(0), "overtake_left")
                self.overtake = OvertakeState.BACK

    def _lateral(self, t_s: float) -> float:
        """The lateral offset this step; ends a finished lane change (and moves the overtake on)."""
        d_nom = self.d if self.change is None else self.change.d_at(t_s)[0]
        if self.change is not None and t_s >= self.change.t0_s + self.change.duration_s:
            d_nom = self.change.d_to_m
            self.change = None
            if self.overtake is OvertakeState.OUT:
                self.overtake = OvertakeState.PASSING
            elif self.overtake is OvertakeState.BACK:
                self.overtake = OvertakeState.DONE
        return d_nom

    # -- one step

    def _intent(self, lead: Lead) -> str:
        """What a Commander would have said at this moment, by priority."""
        s, v, road = self.s, self.v, self.road
        if self.overtake in (OvertakeState.OUT, OvertakeState.PASSING, OvertakeState.BACK):
            return "overtake_left"
        if self.change is not None:
            return self.change.intent
        if self.stop in (StopState.STOPPING, StopState.WAITING):
            return "stop"
        if self.stop is StopState.GO:
            return "go"
        if (abs(float(road.curvature_at(s + 2.0 * v))) > TURN_CURVATURE_1PM
                or abs(float(road.curvature_at(s))) > TURN_CURVATURE_1PM):
            return "turn_left" if float(road.curvature_at(s + v)) + float(road.curvature_at(s)) > 0 else "turn_right"
        if lead.track_id > 0 and lead.gap_m < FOLLOW_HEADWAY_S * v + FOLLOW_GAP_M:
            return "follow_lead"
        if self.a > SPEED_CHANGE_MPS2:
            return "speed_up"
        if self.a < -SPEED_CHANGE_MPS2:
            return "slow_down"
        return "keep_lane"

    def step(self, k: int, t_s: float) -> tuple[str, Lead, float]:
        """Advance one step; returns the intent, the lead and the distance to the stop line."""
        v_target = self._target_speed(t_s)
        lead, stop_dist = self._stop_line(t_s, v_target, self._lead(k))
        if self.change is None:
            self._start_change(t_s, k, lead)
        d_nom = self._lateral(t_s)

        a_cmd = idm_accel(self.v, v_target, lead.gap_m, lead.dv_mps)
        if self.overtake in (OvertakeState.OUT, OvertakeState.PASSING) and lead.track_id == self.tracks[0].track_id:
            a_cmd = max(a_cmd, OVERTAKE_COMMIT_MPS2)
        a_cmd = float(np.clip(a_cmd, *A_CMD_RANGE_MPS2))
        self.a += (a_cmd - self.a) * SIM_DT_S / A_LAG_S
        v_next = max(0.0, self.v + self.a * SIM_DT_S)
        if v_next == 0.0:
            self.a = min(self.a, 0.0) if self.v > 0 else 0.0
        self.s += 0.5 * (self.v + v_next) * SIM_DT_S
        self.v = v_next
        self.d = d_nom
        return self._intent(lead), lead, stop_dist
