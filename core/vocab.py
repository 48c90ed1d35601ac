"""The Commander's vocabulary and the driving thresholds its users agree on.

The twin's driver records its intent in these meta-actions, the labelers emit them, QA checks
them, and the tiny backbone's tokenizer is built from the phrasings: one list for all of them.
"""

from __future__ import annotations

META_ACTIONS = (
    "keep_lane",
    "follow_lead",
    "slow_down",
    "speed_up",
    "stop",
    "go",
    "turn_left",
    "turn_right",
    "change_lane_left",
    "change_lane_right",
    "overtake_left",
    "overtake_right",
    "yield",
)

HAZARD_KINDS = ("car", "truck", "van", "bus", "motorcycle", "cyclist", "pedestrian", "stop_line", "traffic_light",
                "curve", "oncoming_traffic", "construction", "animal", "obstacle")

# A command is rendered from a meta-action with one of a few phrasings ({subject}: what it is about).
PHRASINGS: dict[str, tuple[str, ...]] = {
    "keep_lane": ("Follow the lane", "Keep your lane", "Stay in this lane"),
    "follow_lead": ("Follow the {subject} ahead", "Stay behind the {subject}", "Keep your distance to the {subject}"),
    "slow_down": ("Slow down", "Ease off the speed", "Reduce your speed"),
    "speed_up": ("Speed up", "Pick up the pace", "Accelerate to cruising speed"),
    "stop": ("Stop at the {subject}", "Come to a stop at the {subject}", "Halt at the {subject}"),
    "go": ("Go", "Pull away now", "Move off"),
    "turn_left": ("Take the bend to the left", "Follow the road left", "Turn left"),
    "turn_right": ("Take the bend to the right", "Follow the road right", "Turn right"),
    "change_lane_left": ("Change to the left lane", "Move over to the left lane", "Switch into the left lane"),
    "change_lane_right": ("Change to the right lane", "Move over to the right lane", "Switch into the right lane"),
    "overtake_left": ("Overtake the {subject} on the left", "Pass the {subject} on the left",
                      "Get past the {subject} on the left"),
    "overtake_right": ("Overtake the {subject} on the right", "Pass the {subject} on the right",
                       "Get past the {subject} on the right"),
    "yield": ("Yield to the {subject}", "Give way to the {subject}", "Let the {subject} go first"),
}
DEFAULT_SUBJECT = {"follow_lead": "car", "stop": "line", "overtake_left": "car", "overtake_right": "car",
                   "yield": "traffic"}

# Thresholds the twin's driver (transforms/twin/driver.py) records its intent by, and the kinematic
# labeler (labelers/kinematic.py) reads the same intents back from the motion with.
GO_DONE_MPS = 6.0  # "go" (pulling away from a stop) ends here; beyond it the ego is speeding up
TURN_CURVATURE_1PM = 1 / 80  # a bend, not a lane-keeping wiggle
SPEED_CHANGE_MPS2 = 0.4  # |a| above this is speeding up or slowing down


def _check() -> None:
    if set(PHRASINGS) != set(META_ACTIONS):
        raise RuntimeError(f"PHRASINGS and META_ACTIONS differ: {sorted(set(PHRASINGS) ^ set(META_ACTIONS))}")


_check()
