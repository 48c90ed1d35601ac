"""closed_loop_eval, pure: every policy drives every route; rows, summaries, headline and videos.

Policies (evals/config.py CLOSED_LOOP_POLICIES):
- `field_agent`: the trained agent, asynchronous at 10 Hz of wall time (evals/closed_loop/runner.py);
- `field_agent_shield`: the same behind the safety shield (evals/closed_loop/shield.py);
- `constant_controls`: the (a, κ) measured now, held, re-planned every step;
- `driver_model`: the twin's own driver model with privileged sight, re-planned every step: the
  upper bound the twin allows.
The baselines and the driver run synchronously (they need no camera and take microseconds to
milliseconds); only the agent's latency is a property of the policy worth measuring.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.progress import Progress
from core.stats import paired_difference
from core.windows import DT_S
from evals.closed_loop.commander import Commander, LabelerCommander, RuleCommander
from evals.closed_loop.metrics import route_metrics, summarize
from evals.closed_loop.routes import Route, make_routes
from evals.closed_loop.runner import (
    AgentPolicy,
    ConstantControlsPolicy,
    LoopConfig,
    Policy,
    PrivilegedDriver,
    RouteRecord,
    run_route,
)
from evals.closed_loop.video import route_gif
from evals.config import ClosedLoopConfig
from evals.viewer import record_route
from labelers.kinematic import KinematicLabeler
from transforms.twin.world import SCENARIOS

AGENTS = ("field_agent", "field_agent_shield")


@dataclass(frozen=True)
class ClosedLoopResult:
    rows: list[dict]  # route_metrics per (policy, route), plus `video`
    summary: list[dict]  # metrics.summarize
    records: list[RouteRecord]
    videos: dict[str, Path]  # "best" / "worst" -> GIF, "worst_rerun" -> the worst route as a Rerun recording


def _driver(name: str, act: Callable | None, cfg: ClosedLoopConfig) -> tuple[Policy, LoopConfig]:
    common = dict(reactive=cfg.reactive)
    if name in AGENTS:
        if act is None:
            raise ValueError(f"policy {name!r} needs the field agent: pass its act function")
        return (AgentPolicy(act, name=name),
                LoopConfig(mode="async", execute_steps=cfg.execute_steps, delay_s=cfg.delay_ms / 1e3,
                           shield=name == "field_agent_shield", **common))
    if name == "constant_controls":
        return ConstantControlsPolicy(), LoopConfig(mode="sync", execute_steps=1, **common)
    return PrivilegedDriver(), LoopConfig(mode="sync", execute_steps=1, **common)


def commander_for(cfg: ClosedLoopConfig) -> Callable[[Route], Commander]:
    """A fresh Commander per route (the rule-based one keeps state along its route)."""
    if cfg.commander == "rules":
        return RuleCommander
    if cfg.commander == "vlm":
        from labelers.vlm import VLMLabeler

        labeler = VLMLabeler(cfg.vlm_model_dir)
    else:
        labeler = KinematicLabeler()
    return lambda route: LabelerCommander(labeler)


def evaluate_closed_loop(act: Callable | None, cfg: ClosedLoopConfig, *, video_dir: Path | None = None,
                         log: Callable[[str], None] = print) -> ClosedLoopResult:
    """Drive cfg's routes with cfg's policies; GIFs of the agent's best and worst routes into `video_dir`."""
    routes = make_routes(cfg.scenarios or SCENARIOS, cfg.routes_per_scenario, seed=cfg.seed, seconds=cfg.seconds)
    rows, records = [], []
    commander = commander_for(cfg)
    progress = Progress(log, "closed_loop", len(cfg.policies) * len(routes), every_s=0.0)
    for name in cfg.policies:
        policy, loop = _driver(name, act, cfg)
        for route in routes:
            rec = run_route(route, policy, loop, commander(route))
            row = route_metrics(rec)
            rows.append({**row, "video": None})
            records.append(rec)
            log(f"closed loop: {name} on {route.route_id}: DS {row['driving_score']:.2f}, RC "
                f"{row['route_completion']:.2f}, {row['collisions']} collisions, {row['interventions']} interventions "
                f"({rec.terminated})")
            progress.update()
    videos: dict[str, Path] = {}
    if video_dir is not None:
        videos = _videos(rows, records, Path(video_dir))
    return ClosedLoopResult(rows, summarize(rows, seed=cfg.seed), records, videos)


def _videos(rows: list[dict], records: list[RouteRecord], video_dir: Path) -> dict[str, Path]:
    """The best and the worst route of the first agent policy driven (else of the first policy)."""
    policy = next((p for p in (*AGENTS, rows[0]["policy"]) if any(r["policy"] == p for r in rows)), None)
    mine = [i for i, r in enumerate(rows) if r["policy"] == policy]
    if not mine:
        return {}
    order = sorted(mine, key=lambda i: (rows[i]["driving_score"], rows[i]["route_completion"]))
    out = {}
    for tag, i in (("worst", order[0]), ("best", order[-1])):
        r = rows[i]
        hit = [int(t) for t in _json_list(r["collided_track_ids"])]
        path = route_gif(records[i], video_dir / f"{tag}-{r['policy']}-{r['route_id']}.gif", collided_track_ids=hit)
        r["video"] = str(path)
        out[tag] = path
        if tag == "worst":  # the same route in the Rerun viewer, step by step
            out["worst_rerun"] = record_route(records[i], video_dir / f"{tag}-{r['policy']}-{r['route_id']}.rrd",
                                              collided_track_ids=hit)
    return out


def _json_list(text: str) -> list:
    return list(json.loads(text or "[]"))


def headline(rows: Sequence[dict], summary: Sequence[dict], *, seed: int = 0) -> list[str]:
    """The findings in words: the agent against the baseline and the privileged driver, the shield's effect,
    the planning latency against the control period, the renderer against 10 Hz."""
    cell = {(s["policy"], s["group"], s["metric"]): s for s in summary}
    fmt = lambda p, m: (f"{cell[p, 'all', m]['mean']:.2f} [{cell[p, 'all', m]['lo']:.2f}, "  # noqa: E731
                        f"{cell[p, 'all', m]['hi']:.2f}]") if (p, "all", m) in cell else "–"
    lines = []
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    lines.append("driving score over routes: " + "; ".join(f"{p} {fmt(p, 'driving_score')}" for p in policies))
    by = {p: {r["route_id"]: r for r in rows if r["policy"] == p} for p in policies}
    if all(p in by for p in AGENTS):
        same = sorted(set(by[AGENTS[0]]) & set(by[AGENTS[1]]))
        for m in ("collisions", "route_completion", "driving_score"):
            d = paired_difference([by[AGENTS[1]][r][m] for r in same], [by[AGENTS[0]][r][m] for r in same], same,
                                  seed=seed)
            lines.append(f"shield effect on {m} per route: {np.mean([by[AGENTS[0]][r][m] for r in same]):.2f} → "
                         f"{np.mean([by[AGENTS[1]][r][m] for r in same]):.2f} (paired Δ {d.fmt('+.2f')})")
    lat = [r for r in rows if r["policy"] in AGENTS and r["plan_p50_ms"] is not None]
    if lat:
        p50, p95 = np.median([r["plan_p50_ms"] for r in lat]), np.max([r["plan_p95_ms"] for r in lat])
        stale, steps = sum(r["stale_steps"] for r in lat), sum(r["steps"] for r in lat)
        lines.append(f"agent planning latency: median of route p50s {p50:.0f} ms, worst route p95 {p95:.0f} ms, "
                     f"against the {DT_S * 1e3:.0f} ms control period; {stale} of {steps} steps ran on a stale plan")
    rendered = [r["render_ms"] for r in rows if r["render_ms"] is not None]
    if rendered:
        lines.append(f"render: {np.mean(rendered):.1f} ms per frame (mean over routes), "
                     f"{np.mean(rendered) / (DT_S * 1e3):.2f}× the 100 ms budget of 10 Hz")
    return lines
