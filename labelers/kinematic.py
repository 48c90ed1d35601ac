"""The default labeler: meta-actions from the window's motion and, when known, the scene around it.

It reads the fitted (a, κ), the speed profile they imply and the future path; with a `Scene`
(on the twin: lanes, other vehicles, stop lines) it can also tell following from slowing down
and an overtake from a plain lane change. Each rule looks at what happens over the window's
first seconds, in the priority a driver's intent has: manoeuvres first, then stop/go, bends,
following, and speed changes. Deterministic: the same window always gets the same trace.
"""

from __future__ import annotations

import numpy as np

from core.vocab import GO_DONE_MPS, SPEED_CHANGE_MPS2, TURN_CURVATURE_1PM
from labelers.base import Labeler, LabelFailure, Scene, WindowContext
from labelers.trace import Hazard, Trace

DT = 0.1
SPAN = 20  # the first 2 s after t0: what a command given at t0 is about
LAT_SPEED_MPS = 0.2  # sideways speed of a lane change (lane-keeping sway stays below ~0.15 m/s)
LANE_CHANGE_MIN_M = 1.0  # sideways travel of a run of lateral motion that makes it a lane change
BRAKE_MPS2 = 1.2  # comfortable braking to a line
TAIL = 4  # samples (0.4 s) of a lane change's slow start and end below LAT_SPEED_MPS


def _majority(mask: np.ndarray) -> bool:
    return bool(np.count_nonzero(mask) * 2 > len(mask))


def lane_change_activity(d: np.ndarray) -> np.ndarray:
    """(T,) +1 / -1 where a lane change to the left / right is under way, else 0.

    A run of lateral speed above LAT_SPEED_MPS that travels over LANE_CHANGE_MIN_M is a lane
    change; the run is widened by TAIL samples at each end inside the window, because a lane
    change's first and last moments (about a tenth of its 3.5-5 s each) are too slow to cross
    the threshold.
    """
    vlat = np.gradient(d, DT)
    sign = np.where(vlat > LAT_SPEED_MPS, 1, np.where(vlat < -LAT_SPEED_MPS, -1, 0))
    out = np.zeros(len(d), int)
    k = 0
    while k < len(d):
        if sign[k] == 0:
            k += 1
            continue
        j = k
        while j < len(d) and sign[j] == sign[k]:
            j += 1
        at_edge = k == 0 or j == len(d)
        if abs(d[min(j, len(d) - 1)] - d[k]) > (0.3 if at_edge else LANE_CHANGE_MIN_M):
            out[max(0, k - TAIL) if k > 0 else 0:min(len(d), j + TAIL)] = sign[k]
        k = j
    return out


class KinematicLabeler(Labeler):
    name = "kinematic"
    version = "1.0"

    def label(self, windows: list[WindowContext]) -> list[Trace | LabelFailure]:
        return [self._one(w) for w in windows]

    # -------------------------------------------------------------- features

    @staticmethod
    def _speeds(w: WindowContext) -> np.ndarray:
        return np.concatenate([[w.v0_mps], w.v0_mps + np.cumsum(w.accel_mps2 * DT)])  # (65,)

    @staticmethod
    def _lateral(w: WindowContext) -> np.ndarray:
        """(65,) sideways position from t0: lane offset on the twin, else offset from the t0 arc."""
        if w.scene is not None:
            return w.scene.d_m
        k0, v = float(w.curvature_1pm[0]), np.maximum(KinematicLabeler._speeds(w)[1:], 0)
        s = np.cumsum(v * DT)
        arc_y = (1 - np.cos(k0 * s)) / k0 if abs(k0) > 1e-6 else 0.5 * k0 * s**2
        return np.concatenate([[0.0], w.future_xyz[:, 1] - arc_y])

    # -------------------------------------------------------------- rules

    def _one(self, w: WindowContext) -> Trace | LabelFailure:
        if not (np.isfinite(w.accel_mps2).all() and np.isfinite(w.curvature_1pm).all() and np.isfinite(w.v0_mps)):
            return LabelFailure("non-finite (a, κ) or v0")
        sc = w.scene
        v = self._speeds(w)
        a = w.accel_mps2
        lateral = self._lateral(w)
        change = lane_change_activity(lateral)[:SPAN]
        kappa = sc.road_curvature_1pm if sc is not None else np.concatenate([w.curvature_1pm, w.curvature_1pm[-1:]])
        ahead = np.minimum(np.arange(SPAN) + SPAN, len(kappa) - 1)  # the road 2 s ahead, as a driver looks
        bend = (np.abs(kappa[:SPAN]) > TURN_CURVATURE_1PM) | (np.abs(kappa[ahead]) > TURN_CURVATURE_1PM)
        hazards = self._hazards(w, sc, kappa)
        lead = sc.lead_class if sc is not None and sc.lead_class else "car"

        gap = sc.lead_gap_m[:SPAN] if sc is not None else np.full(SPAN, np.nan)
        lead_close = np.isfinite(gap) & (gap < 2.5 * v[:SPAN] + 12)
        slower_lead = sc is not None and np.isfinite(sc.lead_gap_m[0]) and sc.lead_gap_m[0] < 60 and \
            sc.lead_speed_mps[0] < v[0] - 1.0
        passing = sc is not None and _majority(sc.right_neighbour[:SPAN])
        left, right = _majority(change > 0), _majority(change < 0)
        line = sc.stop_line_m if sc is not None else np.nan
        line_behind = sc.stop_line_behind_m if sc is not None else np.nan

        if (left and slower_lead) or passing:
            action, subject, reason = "overtake_left", lead if slower_lead else (sc.passed_class or "vehicle"), \
                "a slower vehicle holds the lane and the left lane is free"
        elif left or right:
            action, subject, reason = ("change_lane_left" if left else "change_lane_right"), "", \
                f"the car moves sideways by {abs(lateral[SPAN] - lateral[0]):.1f} m in 2 s"
        elif v[0] < 0.3 and v[SPAN] > 0.9:  # pulling away began within the first second
            action, subject, reason = "go", "", "the car pulls away from a standstill"
        elif v[0] < 0.3:
            action, subject, reason = "stop", "line" if np.isfinite(line) else "stop", "the car is standing"
        elif v[10] < GO_DONE_MPS and v[SPAN] > v[0] + 0.5 and (line < 8 or line_behind < 60):
            action, subject, reason = "go", "", "pulling away after the stop"
        elif np.isfinite(line) and line - v[0] < v[0] ** 2 / (2 * BRAKE_MPS2) + 25:
            action, subject, reason = "stop", "line", f"a stop line {line:.0f} m ahead"
        elif _majority(bend):
            k = kappa[: SPAN + 10].sum()
            action, subject, reason = ("turn_left" if k > 0 else "turn_right"), "", \
                f"the road bends with radius {1 / max(np.abs(kappa[:2 * SPAN]).max(), 1e-9):.0f} m"
        elif _majority(lead_close):
            action, subject, reason = "follow_lead", lead, f"a {lead} {gap[0]:.0f} m ahead sets the pace"
        elif _majority(a[:SPAN] > SPEED_CHANGE_MPS2):
            action, subject, reason = "speed_up", "", f"the car gains {v[SPAN] - v[0]:.1f} m/s in 2 s"
        elif _majority(a[:SPAN] < -SPEED_CHANGE_MPS2):
            action, subject, reason = "slow_down", "", f"the car sheds {v[0] - v[SPAN]:.1f} m/s in 2 s"
        else:
            action, subject, reason = "keep_lane", "", "the lane ahead is clear and the speed steady"
        # motion alone cannot see leads, lines or lanes: say so in the confidence
        conf = 0.9 if sc is not None else 0.6
        return Trace(scene=self._scene_text(w, sc), meta_action=action, reason=reason, labeler=self.name,
                     labeler_version=self.version, confidence=conf, hazards=hazards,
                     prediction=self._prediction(w, sc, v), subject=subject)

    @staticmethod
    def _hazards(w: WindowContext, sc: Scene | None, kappa: np.ndarray) -> tuple[Hazard, ...]:
        out = []
        if sc is not None:
            if sc.lead_class and np.isfinite(sc.lead_gap_m[0]):
                out.append(Hazard(sc.lead_class if sc.lead_class in ("car", "truck", "van") else "car", "ahead",
                                  round(float(sc.lead_gap_m[0]), 1)))
            if np.isfinite(sc.stop_line_m) and sc.stop_line_m < 80:
                out.append(Hazard("stop_line", "ahead", round(sc.stop_line_m, 1)))
            if sc.oncoming:
                out.append(Hazard("oncoming_traffic", "oncoming", note=f"{sc.oncoming} vehicle(s)"))
        if np.abs(kappa[:2 * SPAN]).max() > TURN_CURVATURE_1PM:
            out.append(Hazard("curve", "left" if kappa[:2 * SPAN].sum() > 0 else "right"))
        return tuple(out)

    @staticmethod
    def _scene_text(w: WindowContext, sc: Scene | None) -> str:
        kmax = float(np.abs(w.curvature_1pm[:40]).max())
        shape = "a bend" if kmax > TURN_CURVATURE_1PM else ("a gentle curve" if kmax > 1 / 400 else "a straight road")
        lanes = f"{sc.n_lanes}-lane road, " if sc is not None else ""
        return f"{lanes}{shape}, ego at {w.v0_mps * 3.6:.0f} km/h"

    @staticmethod
    def _prediction(w: WindowContext, sc: Scene | None, v: np.ndarray) -> str:
        if sc is not None and sc.lead_class and np.isfinite(sc.lead_speed_mps[0]):
            return f"the {sc.lead_class} ahead keeps about {sc.lead_speed_mps[0]:.0f} m/s"
        return f"in 2 s the ego is at {v[SPAN]:.0f} m/s"
