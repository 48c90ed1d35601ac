"""The `runs` leaderboard: every evaluated run × policy on one table, EPDMS first, with intervals.

Built whole from the eval tables (eval_runs, eval_stats, closed_loop_routes, training_runs), so it
can never disagree with them: per run, the NAVSIM-style scores on its headline split (the benchmark
where it was scored) with the 95% interval over clips from eval_stats, and the closed loop's driving
score with its interval over routes. Policies absent from one evaluation have nulls there (the
twin's driver only drives; the logged future is only scored open loop).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from evals.closed_loop.metrics import summarize as summarize_routes
from evals.scorecard import headline_split

OPEN_LOOP = ("epdms", "ade_6p4s")


def leaderboard(eval_runs: Sequence[dict], stats: Sequence[dict], routes: Sequence[dict],
                training: Sequence[dict]) -> list[dict]:
    """One row per (run, policy), best EPDMS first within the latest evaluations (see module doc)."""
    trained = {r["run_id"]: r for r in training}
    out: dict[tuple[str, str], dict] = {}
    for run_id in sorted({r["run_id"] for r in eval_runs} | {r["run_id"] for r in routes}):
        mine = [s for s in stats if s["run_id"] == run_id]
        split = headline_split(mine) if mine else "all"
        for r in (r for r in eval_runs if r["run_id"] == run_id and r["split"] == split):
            row = out.setdefault((run_id, r["policy"]), _blank(run_id, r["policy"], trained.get(run_id)))
            row.update(split=split, windows=r["windows"], pdms=r["pdms"], evaluated_us=r["finished_us"])
            for m in OPEN_LOOP:
                cell = next((s for s in mine if (s["split"], s["group_kind"], s["policy"], s["metric"])
                             == (split, "all", r["policy"], m)), None)
                row[m] = cell["mean"] if cell else r[m]
                row[f"{m}_lo"], row[f"{m}_hi"] = (cell["lo"], cell["hi"]) if cell else (None, None)
                row["clips"] = cell["clips"] if cell else row["clips"]
        loop = [r for r in routes if r["run_id"] == run_id]
        if loop:
            latest = max(r["finished_us"] for r in loop)  # one closed-loop evaluation per run: its latest
            loop = [r for r in loop if r["finished_us"] == latest]
            for s in summarize_routes(loop):
                if (s["group"], s["metric"]) == ("all", "driving_score"):
                    row = out.setdefault((run_id, s["policy"]), _blank(run_id, s["policy"], trained.get(run_id)))
                    row.update(driving_score=s["mean"], driving_score_lo=s["lo"], driving_score_hi=s["hi"],
                               routes=len({r["route_id"] for r in loop if r["policy"] == s["policy"]}),
                               evaluated_us=max(row["evaluated_us"] or 0, latest))
    return sorted(out.values(), key=lambda r: (-(r["epdms"] if r["epdms"] is not None else -1.0),
                                               -(r["driving_score"] or 0.0), r["run_id"], r["policy"]))


def _blank(run_id: str, policy: str, trained: dict | None) -> dict:
    cfg = json.loads(trained["config"]) if trained else {}
    return {"run_id": run_id, "policy": policy, "split": None, "windows": None, "clips": None, "epdms": None,
            "epdms_lo": None, "epdms_hi": None, "pdms": None, "ade_6p4s": None, "ade_6p4s_lo": None,
            "ade_6p4s_hi": None, "driving_score": None, "driving_score_lo": None, "driving_score_hi": None,
            "routes": None, "profile": trained["profile"] if trained else None,
            "steps": trained["steps"] if trained else None, "train_samples": cfg.get("train_samples"),
            "data_version": trained["data_version"] if trained else None, "evaluated_us": None}


def _iv(r: dict, m: str, fmt: str = ".3f") -> str:
    if r[m] is None:
        return "–"
    lo, hi = r.get(f"{m}_lo"), r.get(f"{m}_hi")
    return f"{r[m]:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]" if lo is not None and hi is not None else f"{r[m]:{fmt}}"


def leaderboard_md(rows: Sequence[dict], limit: int = 40) -> str:
    """The leaderboard as a markdown table, EPDMS first (95% intervals over clips; driving score over routes)."""
    head = ("| EPDMS [95%] | run | policy | ADE@6.4 s m [95%] | PDMS | driving score [95%] | split (windows, clips) | "
            "steps | train windows | data |\n|---|---|---|---|---:|---|---|---:|---:|---|\n")
    lines = [f"| {_iv(r, 'epdms')} | {r['run_id']} | {r['policy']} | {_iv(r, 'ade_6p4s')} | "
             f"{'–' if r['pdms'] is None else format(r['pdms'], '.3f')} | {_iv(r, 'driving_score', '.2f')} | "
             f"{r['split'] or '–'} ({r['windows'] or 0}, {r['clips'] or 0}) | {r['steps'] or '–'} | "
             f"{r['train_samples'] or '–'} | {(r['data_version'] or '–')[:10]} |" for r in rows[:limit]]
    return head + "\n".join(lines) if lines else "*(no evaluated run yet: materialize navsim_eval)*"


def training_curves(metrics: Sequence[dict], runs: Sequence[dict], last: int = 6, smooth: int = 20
                    ) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The last runs' train loss (running mean) and val ADE@6.4 s on shared axes: transforms.plots.curves_png's
    panels, one line per run."""
    ids = [r["run_id"] for r in sorted(runs, key=lambda r: r["finished_us"])][-last:]
    panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {"train loss (running mean)": {},
                                                                   "val ADE@6.4 s (m)": {}}
    for rid in ids:
        loss = sorted((m["step"], m["value"]) for m in metrics if m["run_id"] == rid and m["split"] == "train"
                      and m["name"] == "loss")
        ade = sorted((m["step"], m["value"]) for m in metrics if m["run_id"] == rid and m["split"] == "val"
                     and m["name"] == "ade_6p4s")
        if len(loss) >= smooth:
            y = np.convolve([v for _, v in loss], np.ones(smooth) / smooth, mode="valid")
            panels["train loss (running mean)"][rid] = (np.array([s for s, _ in loss][smooth - 1:]), y)
        elif loss:
            panels["train loss (running mean)"][rid] = (np.array([s for s, _ in loss]), np.array([v for _, v in loss]))
        if ade:
            panels["val ADE@6.4 s (m)"][rid] = (np.array([s for s, _ in ade]), np.array([v for _, v in ade]))
    return {k: v for k, v in panels.items() if v}
