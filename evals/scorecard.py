"""What navsim_eval reports: intervals per policy, the agent against the strongest baseline, tables
per scenario and per meta-action, and the headline that leads the demo, the metadata and the UI.

Every interval resamples clips (evals/stats.py). The agent is compared with the *strongest*
baseline on each metric in each group (the best mean on the same windows), never with a chosen
one; the wrong-command ablation is compared with the agent given the right command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from core.stats import clip_bootstrap, compare, verdict_word

FIELD_AGENT, WRONG_COMMAND = "field_agent", "wrong_command"
BASELINES = ("constant_velocity", "constant_controls")
# metric -> (label, unit, higher is better)
STAT_METRICS = {"epdms": ("EPDMS", "", True), "pdms": ("PDMS", "", True), "ade_6p4s": ("ADE@6.4 s", " m", False),
                "fde_6p4s": ("FDE@6.4 s", " m", False)}
HEADLINE_METRICS = ("epdms", "ade_6p4s")
GROUP_KINDS = ("all", "scenario", "meta_action")


def _groups(rows: list[dict], scenario_of: dict[str, str]) -> list[tuple[str, str, list[dict]]]:
    keyf: dict[str, Callable[[dict], str | None]] = {"scenario": lambda r: scenario_of.get(str(r["clip_id"])),
                                                      "meta_action": lambda r: r.get("meta_action")}
    out = [("all", "all", rows)]
    for kind, key in keyf.items():
        by: dict[str, list[dict]] = {}
        for r in rows:
            g = key(r)
            if g:
                by.setdefault(str(g), []).append(r)
        out += [(kind, g, by[g]) for g in sorted(by)]
    return out


def statistics(rows: list[dict], scenario_of: dict[str, str], splits: Sequence[str], *, run_id: str,
               finished_us: int, seed: int = 0) -> list[dict[str, object]]:
    """eval_stats rows (lake.tables.EVAL_STATS) from navsim_eval's per-(window, policy) rows."""
    out: list[dict[str, object]] = []
    policies = list(dict.fromkeys(str(r["policy"]) for r in rows))
    for sp in [*splits, "all"]:
        sel = [r for r in rows if sp == "all" or r["split"] == sp]
        for kind, group, grp in _groups(sel, scenario_of) if sel else []:
            for m, (_, _, hib) in STAT_METRICS.items():
                vs = {FIELD_AGENT: compare(grp, m, FIELD_AGENT, BASELINES, higher_is_better=hib, seed=seed),
                      WRONG_COMMAND: compare(grp, m, WRONG_COMMAND, (FIELD_AGENT,), higher_is_better=hib, seed=seed)}
                for p in policies:
                    vals = [(str(r["clip_id"]), float(r[m])) for r in grp if r["policy"] == p and r[m] is not None]
                    if not vals:
                        continue
                    est = clip_bootstrap([v for _, v in vals], [c for c, _ in vals], seed=seed)
                    row = {"run_id": run_id, "split": sp, "group_kind": kind, "group": group, "policy": p, "metric": m,
                           "mean": est.mean, "lo": est.lo, "hi": est.hi, "windows": est.windows, "clips": est.clips,
                           "vs": None, "diff_mean": None, "diff_lo": None, "diff_hi": None, "finished_us": finished_us}
                    v = vs.get(p)
                    if v is not None:
                        d = v.difference
                        row |= {"vs": v.baseline, "diff_mean": d.mean, "diff_lo": d.lo, "diff_hi": d.hi}
                    out.append(row)
    return out


def _find(stats: list[dict], split: str, kind: str, group: str, policy: str, metric: str) -> dict | None:
    return next((s for s in stats if (s["split"], s["group_kind"], s["group"], s["policy"], s["metric"])
                 == (split, kind, group, policy, metric)), None)


def headline_split(stats: list[dict], prefer: Sequence[str] = ("benchmark",)) -> str:
    """The split the headline speaks of: the benchmark where it was scored, else all windows."""
    have = {s["split"] for s in stats}
    return next((p for p in prefer if p in have), "all")


def headline(stats: list[dict], split: str | None = None) -> list[str]:
    """One sentence per headline metric: the agent, the strongest baseline, beats / loses to / ties with,
    the paired difference and its 95% interval over clips."""
    split = split or headline_split(stats)
    lines = []
    for m in HEADLINE_METRICS:
        label, unit, hib = STAT_METRICS[m]
        a = _find(stats, split, "all", "all", FIELD_AGENT, m)
        if a is None or a["vs"] is None:
            continue
        b = _find(stats, split, "all", "all", str(a["vs"]), m)
        assert b is not None  # compare() only names baselines that scored the windows
        word = verdict_word(float(a["diff_lo"]), float(a["diff_hi"]), higher_is_better=hib)
        lines.append(f"{label} on {split} ({a['clips']} clips, {a['windows']} windows): field agent {a['mean']:.3f}{unit} "
                     f"{word} {a['vs']} {b['mean']:.3f}{unit}, the strongest baseline (paired difference "
                     f"{a['diff_mean']:+.3f}{unit}, 95% [{a['diff_lo']:+.3f}, {a['diff_hi']:+.3f}])")
    return lines


def headline_metadata(stats: list[dict], split: str | None = None) -> dict[str, object]:
    """Flat figures for the asset's metadata: per headline metric, agent, strongest baseline, verdict, interval."""
    split = split or headline_split(stats)
    out: dict[str, object] = {"headline_split": split}
    for m in HEADLINE_METRICS:
        a = _find(stats, split, "all", "all", FIELD_AGENT, m)
        if a is None or a["vs"] is None:
            continue
        b = _find(stats, split, "all", "all", str(a["vs"]), m)
        out |= {f"{m}_agent": round(float(a["mean"]), 4), f"{m}_strongest_baseline": a["vs"],
                f"{m}_baseline": round(float(b["mean"]), 4) if b else None,
                f"{m}_verdict": verdict_word(float(a["diff_lo"]), float(a["diff_hi"]),
                                             higher_is_better=STAT_METRICS[m][2]),
                f"{m}_diff_95": f"{a['diff_mean']:+.4f} [{a['diff_lo']:+.4f}, {a['diff_hi']:+.4f}]"}
    return out


def _diff(cell: dict[str, dict], policy: str) -> str:
    s = cell.get(policy)
    if s is None or s["vs"] is None:
        return "–"
    d = f"{s['diff_mean']:+.3f} [{s['diff_lo']:+.3f}, {s['diff_hi']:+.3f}]"
    return f"{d} ({s['vs']})" if policy == FIELD_AGENT else d


def group_table_md(stats: list[dict], split: str, kind: str, metric: str) -> str:
    """A markdown table, a row per group: each policy's mean [95%], the agent − strongest baseline and the
    wrong-command ablation − agent paired differences."""
    label, unit, _ = STAT_METRICS[metric]
    sel = [s for s in stats if s["split"] == split and s["group_kind"] == kind and s["metric"] == metric]
    policies = list(dict.fromkeys(str(s["policy"]) for s in sel))
    groups = list(dict.fromkeys(str(s["group"]) for s in sel))
    head = f"| {kind} ({label}{unit}) | clips | " + " | ".join(policies) + " | agent − best baseline | wrong cmd − agent |"
    lines = [head, "|---|---:|" + "---:|" * (len(policies) + 2)]
    for g in groups:
        cell = {str(s["policy"]): s for s in sel if s["group"] == g}
        clips = max(int(s["clips"]) for s in cell.values())

        vals = [f"{cell[p]['mean']:.3f} [{cell[p]['lo']:.3f}, {cell[p]['hi']:.3f}]" if p in cell else "–" for p in policies]
        lines.append(f"| {g} | {clips} | " + " | ".join(vals) + f" | {_diff(cell, FIELD_AGENT)} | {_diff(cell, WRONG_COMMAND)} |")
    return "\n".join(lines)
