"""hard_examples, pure: where the agent fails, and which data to get more of.

A window is hard when the field agent does worse there than the strongest baseline (the one with
the better mean on the same windows, as evals/scorecard.py picks it) by more than a margin, or
fails one of EPDMS's multipliers or 0/1 sub-scores. Each hard window gets its reasons and a
severity; the hard windows are grouped by scenario, meta-action, failed sub-score and speed band;
and a `DataRequest` (core/request.py) asks for more of the groups that hold the most severity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from core.config import knob
from core.request import DataRequest, speed_band
from evals.scorecard import BASELINES, FIELD_AGENT
from lake import io
from lake import tables as T
from transforms.ids import BENCHMARK_SPLIT

EPDMS_MARGIN = 0.05  # an EPDMS deficit smaller than this is noise between two good plans
ADE_MARGIN_M = 1.0  # likewise for ADE@6.4 s
ADE_SCALE_M = 5.0  # an ADE excess of this many metres weighs as much as losing all of EPDMS
FAIL_WEIGHT = 0.25  # severity added per failed multiplier or sub-score
# multipliers (NC, DAC, DDC, TLC) and the 0/1 weighted sub-scores (TTC, LK, HC, EC): < 0.5 is a fail
# (NC's 0.5, a collision the ego did not cause, is not)
FAILABLE = ("nc", "dac", "ddc", "tlc", "ttc", "lk", "hc", "ec")
GROUP_KINDS = ("scenario", "meta_action", "failed", "speed_band")


def _num(v: object) -> float:
    return float(v) if v is not None and np.isfinite(float(v)) else np.nan  # type: ignore[arg-type]


def strongest_baseline(rows: Sequence[Mapping]) -> str:
    """The baseline with the best mean EPDMS over the windows (ADE@6.4 s where no window has EPDMS),
    as the scorecard picks the one the agent is compared with."""
    for metric, best in (("epdms", max), ("ade_6p4s", min)):
        means = {}
        for b in BASELINES:
            vals = [v for r in rows if r["policy"] == b and np.isfinite(v := _num(r[metric]))]
            if vals:
                means[b] = float(np.mean(vals))
        if len(means) == len(BASELINES):
            return best(means, key=lambda b: means[b])
    raise ValueError(f"no baseline rows with EPDMS or ADE@6.4 s among {len(rows)} rows: evaluate the baselines "
                     f"{list(BASELINES)} with the agent (navsim_eval)")


def mine_hard_examples(rows: Sequence[Mapping], scenario_of: Mapping[str, str], v0_of: Mapping[tuple[str, int], float],
                  ) -> tuple[list[dict], str]:
    """The hard windows of one evaluated run (eval_windows rows) and the baseline they are judged
    against. Each row: the window's keys, scenario, meta-action, speed band, the agent's and the
    baseline's EPDMS and ADE@6.4 s, `reasons`, `failed` sub-scores and `severity`:
    max(EPDMS deficit, ADE excess / ADE_SCALE_M) + FAIL_WEIGHT per failed sub-score that the baseline
    passes on that window. A failure the baseline shares is listed ("so does ...") but weighs nothing:
    the window is hard for a simple policy too, and the request (`data_request`) should go where the
    agent falls behind what kinematics alone achieves."""
    base = strongest_baseline(rows)
    by_key = {(r["policy"], r["split"], r["clip_id"], r["t0_us"]): r for r in rows}
    out = []
    for r in rows:
        if r["policy"] != FIELD_AGENT:
            continue
        b = by_key.get((base, r["split"], r["clip_id"], r["t0_us"]))
        if b is None:
            continue
        ep_a, ep_b, ade_a, ade_b = _num(r["epdms"]), _num(b["epdms"]), _num(r["ade_6p4s"]), _num(b["ade_6p4s"])
        reasons = []
        if ep_b - ep_a > EPDMS_MARGIN:
            reasons.append(f"epdms {ep_a:.2f} < {base} {ep_b:.2f}")
        if ade_a - ade_b > ADE_MARGIN_M:
            reasons.append(f"ade_6p4s {ade_a:.1f} m > {base} {ade_b:.1f} m")
        failed = [m for m in FAILABLE if _num(r.get(m)) < 0.5]
        shared = [m for m in failed if _num(b.get(m)) < 0.5]  # the baseline fails it on this window too
        reasons += [f"fails {m}" + (f" (so does {base})" if m in shared else "") for m in failed]
        if not reasons:
            continue
        deficit = max(np.nan_to_num(ep_b - ep_a, nan=0.0), np.nan_to_num((ade_a - ade_b) / ADE_SCALE_M, nan=0.0), 0.0)
        v0 = v0_of.get((str(r["clip_id"]), int(r["t0_us"])), np.nan)
        out.append({
            "split": r["split"], "chunk": r["chunk"], "clip_id": r["clip_id"], "t0_us": int(r["t0_us"]),
            "scenario": scenario_of.get(str(r["clip_id"])), "meta_action": r.get("meta_action"),
            "command": r.get("command"), "v0_mps": None if np.isnan(v0) else float(v0),
            "speed_band": None if np.isnan(v0) else speed_band(max(v0, 0.0)), "baseline": base,
            "agent_epdms": None if np.isnan(ep_a) else ep_a, "baseline_epdms": None if np.isnan(ep_b) else ep_b,
            "agent_ade_6p4s": None if np.isnan(ade_a) else ade_a,
            "baseline_ade_6p4s": None if np.isnan(ade_b) else ade_b,
            "reasons": "; ".join(reasons), "failed": ",".join(failed),
            "severity": round(float(deficit + FAIL_WEIGHT * (len(failed) - len(shared))), 6)})
    return out, base


def _group_keys(row: Mapping, kind: str) -> list[str]:
    if kind == "failed":
        failed = [f for f in str(row["failed"] or "").split(",") if f]
        ep = _num(row["baseline_epdms"]) - _num(row["agent_epdms"])
        ade = _num(row["agent_ade_6p4s"]) - _num(row["baseline_ade_6p4s"])
        return failed + (["worse_than_baseline"] if ep > EPDMS_MARGIN or ade > ADE_MARGIN_M else [])
    value = row.get(kind)
    return [str(value)] if value else []


def group_hard(hard: Sequence[Mapping], windows: Sequence[Mapping]) -> list[dict]:
    """Per group kind and group: windows evaluated, hard windows, hard rate and severity (sum, mean),
    most severe first within each kind. `windows` are the agent's windows with the same keys."""
    out = []
    for kind in GROUP_KINDS:
        seen: dict[str, int] = {}
        if kind != "failed":
            for w in windows:
                for g in _group_keys(w, kind):
                    seen[g] = seen.get(g, 0) + 1
        agg: dict[str, list[float]] = {}
        for h in hard:
            for g in _group_keys(h, kind):
                agg.setdefault(g, []).append(float(h["severity"]))
        for g in sorted(agg, key=lambda g: (-sum(agg[g]), g)):
            n = seen.get(g, len(windows)) if kind != "failed" else len(windows)
            out.append({"kind": kind, "group": g, "windows": n, "hard": len(agg[g]),
                        "hard_rate": len(agg[g]) / max(n, 1), "severity": sum(agg[g]),
                        "mean_severity": sum(agg[g]) / len(agg[g])})
    return out


def data_request(hard: Sequence[Mapping], windows: Sequence[Mapping], *, budget_windows: int, run_id: str = "",
                 floor: float | None = None) -> DataRequest:
    """More of what holds the severity: shares per scenario, meta-action and speed band in
    proportion to the hard windows' severity there, mixed with an even spread over every group the
    evaluation saw (core.request.FLOOR), for `budget_windows` windows."""
    shares: dict[str, dict[str, float]] = {k: {} for k in ("scenario", "meta_action", "speed_band")}
    for h in hard:
        for kind in shares:
            if h.get(kind):
                shares[kind][str(h[kind])] = shares[kind].get(str(h[kind]), 0.0) + float(h["severity"])
    seen = {kind: sorted({str(w[kind]) for w in windows if w.get(kind)}) for kind in shares}
    top = sorted(shares["scenario"].items(), key=lambda kv: -kv[1])[:3]
    note = (f"{len(hard)} hard windows of {len(windows)}; most severity in "
            + ", ".join(f"{k} ({v:.1f})" for k, v in top)) if hard else "no hard windows: an even spread"
    req = DataRequest(budget_windows, shares["scenario"], shares["meta_action"], shares["speed_band"], run_id, note)
    kw = {} if floor is None else {"floor": floor}
    return req.mixed({"scenarios": seen["scenario"], "meta_actions": seen["meta_action"],
                      "speed_bands": seen["speed_band"]}, **kw)


def windows_of(rows: Sequence[Mapping], scenario_of: Mapping[str, str],
               v0_of: Mapping[tuple[str, int], float]) -> list[dict]:
    """The agent's evaluated windows with the keys hard examples are grouped by."""
    out = []
    for r in rows:
        if r["policy"] != FIELD_AGENT:
            continue
        v0 = v0_of.get((str(r["clip_id"]), int(r["t0_us"])))
        out.append({"clip_id": r["clip_id"], "t0_us": r["t0_us"], "scenario": scenario_of.get(str(r["clip_id"])),
                    "meta_action": r.get("meta_action"),
                    "speed_band": speed_band(max(v0, 0.0)) if v0 is not None and np.isfinite(v0) else None})
    return out


def groups_md(groups: Sequence[Mapping], kind: str, top: int = 8) -> str:
    """A markdown table of one group kind: group, windows, hard, rate, severity."""
    lines = ["| group | windows | hard | hard rate | severity (sum) | mean severity |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {g['group']} | {g['windows']} | {g['hard']} | {g['hard_rate']:.0%} | {g['severity']:.2f} | "
              f"{g['mean_severity']:.2f} |" for g in [g for g in groups if g["kind"] == kind][:top]]
    return "\n".join(lines)


def request_md(req: DataRequest) -> str:
    def row(kind: str, shares: dict[str, float]) -> str:
        return f"| {kind} | " + ", ".join(f"{k} {v:.0%}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1])) + " |"

    return "\n".join([f"**{req.request_id}**: {req.windows} windows. {req.note}", "", "| kind | shares |", "|---|---|",
                      row("scenario", req.scenarios), row("meta-action", req.meta_actions),
                      row("speed band", req.speed_bands)])


@dataclass(frozen=True)
class MiningConfig:
    run_id: str = knob("", "the evaluated run to mine; empty: the latest one in eval.eval_runs")
    # every held-out split navsim_eval scored: the request steers only the mix of scenarios,
    # meta-actions and speeds, never towards the benchmark's own clips
    splits: tuple[str, ...] = knob(("val", "test", BENCHMARK_SPLIT), "held-out splits whose windows are mined")
    budget_windows: int = knob(200, "windows the data request asks for (a turn's data budget)")

    def __post_init__(self) -> None:
        if self.budget_windows < 1 or not self.splits:
            raise ValueError(f"budget_windows={self.budget_windows} (>= 1), splits={list(self.splits)} (at least one)")


def clip_facts(roots: Sequence[str | Path]) -> tuple[dict[str, str], dict[tuple[str, int], float]]:
    """Each clip's twin scenario and each window's v0, from the lakes at `roots` (the training lake
    and the benchmark's): the scenario from the twin ground truth the chunks table lists (real PAI
    has none), v0 from unicycle_targets."""
    scenario_of: dict[str, str] = {}
    v0_of: dict[tuple[str, int], float] = {}
    for root in roots:
        if not io.exists(str(root), T.CHUNKS):
            continue
        files = io.read(str(root), T.CHUNKS, columns=["feature", "local_path"]).to_pylist()
        for f in files:
            if f["feature"] == "twin_scenario" and Path(f["local_path"]).is_file():
                sc = pq.read_table(f["local_path"], columns=["clip_id", "scenario"]).to_pylist()
                scenario_of |= {r["clip_id"]: r["scenario"] for r in sc}
        if io.exists(str(root), T.UNICYCLE_TARGETS):
            t = io.read(str(root), T.UNICYCLE_TARGETS, columns=["clip_id", "t0_us", "v0_mps"]).to_pylist()
            v0_of |= {(r["clip_id"], r["t0_us"]): r["v0_mps"] for r in t}
    return scenario_of, v0_of
