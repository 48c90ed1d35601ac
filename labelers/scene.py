"""Per-window `Scene`s from the twin's ground-truth tables (twin/README.md), and the reference intent.

Only physical facts are extracted here (lanes, other vehicles, stop lines, road curvature);
the driver model's recorded intent is read by `reference_intents` alone, for evaluation.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from labelers.base import Scene

EGO_FRONT_M = 3.8  # rear axle to front bumper, as the twin's driver model uses
HORIZON = 65  # t0 .. t0 + 6.4 s at 10 Hz
REFERENCE_S = 2.0  # a window's reference intent: the driver's dominant intent over its first 2 s


OVERTAKE_MEMORY_S = 12.0  # a vehicle passed on the right was ahead in the ego's lane this recently


def _rows_from(times: np.ndarray, t0_us: int, n: int) -> np.ndarray:
    """Indices of the n 10 Hz rows starting at the one nearest t0 (clamped at the clip's end)."""
    i0 = int(np.argmin(np.abs(times - t0_us)))
    return np.clip(np.arange(i0, i0 + n), 0, len(times) - 1)


def _clip_timeline(ego: pd.DataFrame, agents: pd.DataFrame, width: float) -> dict[str, np.ndarray]:
    """Per 10 Hz tick of a clip: the lead in the ego's lane, and a vehicle being overtaken on the right."""
    ts = ego["timestamp"].to_numpy()
    s_e, d_e, v_e = (ego[c].to_numpy() for c in ("s_m", "d_m", "speed_mps"))
    n = len(ts)
    gap, lead_v = np.full(n, np.nan), np.full(n, np.nan)
    lead_cls = np.full(n, "", dtype=object)
    oncoming = np.zeros(n, int)
    right = np.zeros(n, bool)
    passed_cls = np.full(n, "", dtype=object)
    if len(agents):
        ids = np.sort(agents["track_id"].unique())
        tick = {t: i for i, t in enumerate(ts)}

        def grid(col: str, fill: float = np.nan) -> np.ndarray:
            out = np.full((len(ids), n), fill, dtype=object if col == "label_class" else float)
            for j, (_, g) in enumerate(agents.groupby("track_id", sort=True)):
                cols = [tick[t] for t in g["timestamp"] if t in tick]
                out[j, cols] = g[col].to_numpy()[: len(cols)]
            return out

        s_a, d_a, v_a, len_a = grid("s_m"), grid("d_m"), grid("speed_mps"), grid("length_m")
        cls = grid("label_class", "")
        with np.errstate(invalid="ignore"):
            same_dir = v_a > 0
            ds = s_a - len_a / 2 - (s_e + EGO_FRONT_M)
            in_lane = np.abs(d_a - d_e) < 0.6 * width
            ahead = same_dir & in_lane & (s_a > s_e) & (ds > -2.0)
            # ahead in the ego's lane at some tick of the last OVERTAKE_MEMORY_S
            mem = int(OVERTAKE_MEMORY_S * 10)
            seen = np.cumsum(ahead, axis=1)
            was_ahead = seen - np.concatenate([np.zeros((len(ids), mem + 1)), seen], axis=1)[:, :n] > 0
            rel_s = s_a - s_e
            right_of = (d_a - d_e < -0.3 * width) & (rel_s < 40.0) & (rel_s > -60.0) & (v_a < v_e - 4.0)
            passing = same_dir & right_of & was_ahead
            right = passing.any(axis=0)
            passed_cls = np.where(right, cls[np.argmax(passing, axis=0), np.arange(n)], "")
            oncoming = ((~same_dir) & np.isfinite(s_a) & (np.abs(rel_s) < 100)).sum(axis=0)
            masked = np.where(ahead, ds, np.inf)
        j = np.argmin(masked, axis=0)
        has = np.isfinite(masked[j, np.arange(n)])
        gap[has] = np.maximum(masked[j, np.arange(n)][has], 0.0)
        lead_v[has] = v_a[j, np.arange(n)][has]
        lead_cls[has] = cls[j, np.arange(n)][has]
    return {"timestamp": ts, "s": s_e, "d": d_e, "lane": ego["lane"].to_numpy().astype(int), "gap": gap,
            "lead_v": lead_v, "lead_cls": lead_cls, "right": right, "passed_cls": passed_cls, "oncoming": oncoming}


def twin_scenes(gt: dict[str, pd.DataFrame], clip_ids: list[str], t0s: list[int]) -> list[Scene | None]:
    """One Scene per (clip_id, t0_us); None where the ground truth lacks the clip."""
    scen = gt["scenario"].set_index("clip_id")
    agents_by_clip = {c: g for c, g in gt["agents"].groupby("clip_id")}
    road_by_clip = {c: g.sort_values("s_m") for c, g in gt["road"].groupby("clip_id")}
    timelines = {}
    for c, g in gt["intent"].groupby("clip_id"):
        if c in scen.index:
            timelines[c] = _clip_timeline(g.sort_values("timestamp"), agents_by_clip.get(c, pd.DataFrame()),
                                          float(scen.at[c, "lane_width_m"]))
    out: list[Scene | None] = []
    for clip, t0 in zip(clip_ids, t0s, strict=True):
        tl = timelines.get(clip)
        if tl is None:
            out.append(None)
            continue
        sc = scen.loc[clip]
        rows = _rows_from(tl["timestamp"], t0, HORIZON)
        s0 = tl["s"][rows[0]] + EGO_FRONT_M
        lines = np.asarray(sc["stop_lines_s_m"], float)
        ahead_lines, passed = lines[lines - s0 > -2.0], s0 - lines[lines - s0 <= -2.0]
        road = road_by_clip[clip]
        out.append(Scene(
            n_lanes=int(sc["n_lanes"]), lane=tl["lane"][rows], d_m=tl["d"][rows],
            lead_class=str(tl["lead_cls"][rows[0]]), lead_gap_m=tl["gap"][rows], lead_speed_mps=tl["lead_v"][rows],
            right_neighbour=tl["right"][rows],
            passed_class=next((str(c) for c in tl["passed_cls"][rows][:20] if c), ""),
            stop_line_m=float(ahead_lines.min() - s0) if len(ahead_lines) else float("nan"),
            stop_line_behind_m=float(passed.min()) if len(passed) else float("nan"),
            road_curvature_1pm=np.interp(tl["s"][rows], road["s_m"].to_numpy(), road["curvature_1pm"].to_numpy()),
            oncoming=int(tl["oncoming"][rows[0]])))
    return out


def reference_intents(intent: pd.DataFrame, clip_ids: list[str], t0s: list[int]) -> list[str | None]:
    """The driver model's dominant intent over each window's first REFERENCE_S seconds."""
    by_clip = {c: g.sort_values("timestamp") for c, g in intent.groupby("clip_id")}
    n = round(REFERENCE_S * 10)
    out: list[str | None] = []
    for clip, t0 in zip(clip_ids, t0s, strict=True):
        g = by_clip.get(clip)
        if g is None:
            out.append(None)
            continue
        rows = _rows_from(g["timestamp"].to_numpy(), t0, n)
        out.append(Counter(g["intent"].to_numpy()[rows]).most_common(1)[0][0])
    return out
