"""The full closed-loop set: every scenario, several routes each, four policies; render and latency budgets.

Printed, all measured in this run:
- the render time of one front-camera frame at the twin's default resolution (256x144) through a
  route's lens, one thread, against the 100 ms period of 10 Hz (the ratio must stay below 1);
- per scenario and over all routes, the driving score, route completion, at-fault collisions and
  command success of each policy, `mean [95% interval over routes]`;
- the shield's effect (field_agent → field_agent_shield on the same routes, paired intervals);
- the agent's planning latency p50/p95 against the 100 ms control period and the stale steps, with
  no imposed delay and with each of --delays-ms (field agent only);
- the GIFs of the agent's best and worst routes.

    python -m benchmarks.bench_closed_loop --checkpoint lakehouse/checkpoints/<run>/checkpoint
        [--routes-per-scenario 3] [--seconds 20] [--delays-ms 300 700] [--out benchmarks/out/closed_loop]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.windows import DT_S
from evals.closed_loop.evaluate import evaluate_closed_loop, headline
from evals.closed_loop.metrics import scenario_table_md, table_md
from evals.closed_loop.routes import make_routes
from evals.config import ClosedLoopConfig
from transforms.twin.sim import TwinEnv

RENDER_FRAMES = 100


def render_ratio(width: int = 256, height: int = 144) -> tuple[float, float]:
    """Mean and p95 ms per frame rendered from a moving pose (numpy's elementwise work: one thread)."""
    route = make_routes(["overtake_left"], 1, seconds=12.0)[0]
    env = TwinEnv(route.world, camera=route.camera(width, height))
    for _ in range(RENDER_FRAMES):
        env.render()
        env.step(0.0, 0.0)
    ms = np.array(env.render_s[5:]) * 1e3
    return float(ms.mean()), float(np.percentile(ms, 95))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--routes-per-scenario", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--delays-ms", type=float, nargs="*", default=[300.0, 700.0])
    ap.add_argument("--out", default="benchmarks/out/closed_loop")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    mean_ms, p95_ms = render_ratio()
    print(f"render 256x144, one thread: {mean_ms:.1f} ms mean, {p95_ms:.1f} ms p95 per frame = "
          f"{mean_ms / (DT_S * 1e3):.3f}× the 100 ms period of 10 Hz (must be < 1)", flush=True)

    from trainers.agent import FieldAgent

    act = FieldAgent.load(args.checkpoint).act
    cfg = ClosedLoopConfig(routes_per_scenario=args.routes_per_scenario, seconds=args.seconds)
    t0 = time.perf_counter()
    res = evaluate_closed_loop(act, cfg, video_dir=out / "videos", log=lambda s: print(s, flush=True))
    print(f"\n{len(res.rows)} route drives in {time.perf_counter() - t0:.0f} s\n")
    for line in headline(res.rows, res.summary):
        print(f"- {line}")
    print("\n" + table_md(res.summary))
    for m in ("driving_score", "route_completion", "collisions", "command_success"):
        print("\n" + scenario_table_md(res.summary, m))
    for tag, p in res.videos.items():
        print(f"\n{tag} route video: {p}")
    sweep = {}
    for delay in args.delays_ms:
        d = evaluate_closed_loop(act, replace(cfg, routes_per_scenario=1, policies=("field_agent",), delay_ms=delay),
                                 log=lambda s: None)
        stale, steps = sum(r["stale_steps"] for r in d.rows), sum(r["steps"] for r in d.rows)
        p95 = max(r["plan_p95_ms"] for r in d.rows)
        ds = float(np.mean([r["driving_score"] for r in d.rows]))
        sweep[delay] = {"stale_steps": stale, "steps": steps, "plan_p95_ms": p95, "driving_score": ds}
        print(f"imposed delay {delay:.0f} ms: plan p95 {p95:.0f} ms = {p95 / (DT_S * 1e3):.1f}× the control period; "
              f"{stale} of {steps} steps stale ({stale / steps:.0%}); driving score {ds:.2f} (1 route per scenario)")
    (out / "closed_loop.json").write_text(json.dumps({"rows": res.rows, "summary": res.summary, "delay_sweep": sweep,
                                                      "render_ms": [mean_ms, p95_ms]}, indent=1, default=str))
    print(f"\nrows and summary: {out / 'closed_loop.json'}")


if __name__ == "__main__":
    main()
