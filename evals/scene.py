"""A clip's world for NAVSIM-style scoring, from the twin's ground truth (transforms/twin/writer.py).

Real PAI has no map or tracked agents, so only the twin can be scored on NC, DAC, DDC, TTC, EP
and LK; on real data the evaluation keeps the displacement and comfort metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from transforms.twin.world import Road

TICK_US = 100_000  # the ground truth is sampled at 10 Hz


@dataclass(frozen=True)
class ClipScene:
    """Road geometry and other vehicles of one clip, in its anchor frame.

    `agents` is (A, T, 6) per 10 Hz tick: centre x, y, yaw, length, width, signed speed along the
    road (negative: oncoming); NaN where a track has no sample.
    """

    clip_id: str
    road: Road
    tick0_us: int
    agents: np.ndarray
    track_ids: np.ndarray  # (A,)
    scenario: str = ""  # the twin's scenario (cruise, follow, ...)

    def agents_at(self, t_us: np.ndarray) -> np.ndarray:
        """(A, K, 6) agent states at times t_us (K,) (nearest tick; NaN outside the ground truth)."""
        idx = np.round((np.asarray(t_us) - self.tick0_us) / TICK_US).astype(np.int64)
        inside = (idx >= 0) & (idx < self.agents.shape[1])
        out = np.full((self.agents.shape[0], len(idx), 6), np.nan)
        out[:, inside] = self.agents[:, idx[inside]]
        return out

    def lane_of(self, d_m: np.ndarray) -> np.ndarray:
        """Lane index of lateral offsets (0 = rightmost of the ego's direction; n_lanes.. oncoming)."""
        w = self.road.lane_width_m
        return np.floor((np.asarray(d_m) + w / 2) / w).astype(np.int64)

    def on_road(self, d_m: np.ndarray) -> np.ndarray:
        return (d_m >= self.road.right_edge_d) & (d_m <= self.road.left_edge_d)


def clip_scenes(gt: dict[str, pd.DataFrame]) -> dict[str, ClipScene]:
    """One ClipScene per clip of a chunk's ground-truth tables (transforms.twin.truth.load_twin_gt)."""
    scen = gt["scenario"].set_index("clip_id")
    agents_by_clip = {c: g for c, g in gt["agents"].groupby("clip_id")}
    ticks_by_clip = {c: np.sort(g["timestamp"].to_numpy()) for c, g in gt["intent"].groupby("clip_id")}
    out = {}
    for clip, r in gt["road"].groupby("clip_id"):
        if clip not in scen.index or clip not in ticks_by_clip:
            continue
        r = r.sort_values("s_m")
        sc = scen.loc[clip]
        road = Road(r["s_m"].to_numpy(), r["x_m"].to_numpy(), r["y_m"].to_numpy(), r["heading_rad"].to_numpy(),
                    r["curvature_1pm"].to_numpy(), int(sc["n_lanes"]), int(sc["oncoming_lanes"]),
                    float(sc["lane_width_m"]), tuple(float(s) for s in sc["stop_lines_s_m"]))
        ticks = ticks_by_clip[clip]
        tick0 = int(ticks[0])
        n = round((ticks[-1] - tick0) / TICK_US) + 1
        g = agents_by_clip.get(clip, pd.DataFrame(columns=["track_id"]))
        ids = np.sort(g["track_id"].unique()).astype(np.int64)
        agents = np.full((len(ids), n, 6), np.nan)
        for j, (_, tr) in enumerate(g.groupby("track_id", sort=True)):
            k = np.round((tr["timestamp"].to_numpy() - tick0) / TICK_US).astype(np.int64)
            ok = (k >= 0) & (k < n)
            cols = tr[["x_m", "y_m", "yaw_rad", "length_m", "width_m", "speed_mps"]].to_numpy(np.float64)
            agents[j, k[ok]] = cols[ok]
        out[str(clip)] = ClipScene(str(clip), road, tick0, agents, ids, str(sc.get("scenario", "")))
    return out
