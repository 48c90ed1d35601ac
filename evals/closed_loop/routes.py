"""Closed-loop routes: one twin world per route, with a mission in the Commander's words.

A route is a twin clip simulated from its seed (transforms/twin/world.py) and driven from its
t = 0 for `seconds`; its goal is where the logged driver got to in that time, along the road.
The mission is what the Commander's user asked for; the scenario decides it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from transforms.twin.render import FThetaCamera
from transforms.twin.world import SCENARIOS, World, simulate

MISSIONS = {
    "cruise": "Follow the lane",
    "follow": "Follow the car ahead",
    "stop_and_go": "Stop at the line, then go",
    "lane_change_left": "Move over to the left lane",
    "lane_change_right": "Move over to the right lane",
    "overtake_left": "Overtake the truck on the left",
    "turn": "Take the curve",
    "speed_change": "Keep to the new speed",
}
MIN_ROUTE_S = 4.0
LOG_MARGIN_S = 2.0  # the world is simulated this much past the route's end


@dataclass(frozen=True)
class Route:
    route_id: str
    scenario: str
    clip_seed: int
    seconds: float
    mission: str
    world: World

    def logged_s(self, t_s: float) -> float:
        """Arc length the logged driver had reached at route time t_s."""
        e = self.world.ego
        return float(np.interp(t_s * 1e6, e.t_us.astype(np.float64), e.s_m))

    @property
    def length_m(self) -> float:
        return max(self.logged_s(self.seconds) - self.logged_s(0.0), 1.0)

    def camera(self, width: int, height: int) -> FThetaCamera:
        """The route's front-wide lens, drawn as the twin draws a clip's (transforms/twin/writer.py)."""
        return FThetaCamera.front_wide(width, height, np.random.default_rng(self.clip_seed ^ 0x5EED))


def route_seed(seed: int, scenario: str, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"closed-loop/{seed}/{scenario}/{index}".encode()).digest()[:8], "little")


def make_routes(scenarios: tuple[str, ...] | list[str], per_scenario: int, *, seed: int = 0,
                seconds: float = 20.0) -> list[Route]:
    """`per_scenario` routes of each scenario, deterministic from `seed`."""
    bad = [s for s in scenarios if s not in MISSIONS]
    if bad:
        raise ValueError(f"scenarios {bad} have no closed-loop route; choose from {list(SCENARIOS)}")
    if per_scenario < 1 or not seconds >= MIN_ROUTE_S:
        raise ValueError(f"need >= 1 route per scenario and >= {MIN_ROUTE_S} s, got {per_scenario} and {seconds}")
    routes = []
    for scenario in scenarios:
        for i in range(per_scenario):
            clip_seed = route_seed(seed, scenario, i)
            world = simulate(clip_seed, seconds + LOG_MARGIN_S, scenario)
            routes.append(Route(f"{world.scenario}-{i:02d}-{clip_seed % 10**6:06d}", world.scenario, clip_seed,
                                float(seconds), MISSIONS[world.scenario], world))
    return routes
