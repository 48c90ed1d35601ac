"""Unicycle fit: windows/s batched vs a plain per-window loop of the same math (goal >= 10x),
and the round-trip error distribution on twin windows at 5, 15 and 30 m/s.

    python -m benchmarks.bench_unicycle [--clips 12]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from transforms.twin.world import SCENARIOS, simulate
from transforms.twin.writer import _egomotion_table
from transforms.unicycle import Windows, fit_unicycle, sample_windows, window_t0s

GOAL = 10.0


def twin_windows(speed: float, clips: int) -> Windows:
    parts = []
    for i in range(clips):
        world = simulate(1000 + i, 20.0, SCENARIOS[i % len(SCENARIOS)], speed_mps=speed)
        tbl = _egomotion_table(world)
        cols = {c: tbl.column(c).to_numpy() for c in tbl.column_names}
        parts.append(sample_windows(f"c{i}", cols, window_t0s(int(cols["timestamp"][0]), int(cols["timestamp"][-1]))))
    return Windows.concat(parts)


def fit(w: Windows):
    return fit_unicycle(w.history_xyz[..., :2], w.history_yaw, w.future_xyz[..., :2], w.future_yaw)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=12)
    args = ap.parse_args()
    by_speed = {s: twin_windows(s, args.clips) for s in (5.0, 15.0, 30.0)}
    for speed, w in by_speed.items():
        f = fit(w)
        e, m = f.rt_mean_err_m[~f.low_speed], f.rt_max_err_m[~f.low_speed]
        print(f"{speed:4.0f} m/s: {len(e)} windows; round-trip mean error p50 {np.median(e):.4f} m, p95 "
              f"{np.percentile(e, 95):.4f} m, mean {e.mean():.4f} m (reference 0.072); max error p95 "
              f"{np.percentile(m, 95):.4f} m, worst {m.max():.4f} m")
    allw = Windows.concat(list(by_speed.values()))
    fit(allw.take(np.arange(min(64, len(allw)))))  # warm-up
    best_b, best_l = np.inf, np.inf
    n_loop = min(150, len(allw))
    for _ in range(3):
        t = time.perf_counter()
        fit(allw)
        best_b = min(best_b, (time.perf_counter() - t) / len(allw))
        t = time.perf_counter()
        for i in range(n_loop):
            fit(allw.take(np.array([i])))
        best_l = min(best_l, (time.perf_counter() - t) / n_loop)
    ratio = best_l / best_b
    print(f"batched: {1 / best_b:,.0f} windows/s over {len(allw)}; per-window loop: {1 / best_l:,.0f} windows/s; "
          f"ratio {ratio:.0f}x (goal >= {GOAL:g}x) -> {'PASS' if ratio >= GOAL else 'FAIL'}")
    print(f"full PAI (~7.6M windows) at the batched rate: {7.6e6 * best_b / 3600:.1f} core-hours")


if __name__ == "__main__":
    main()
