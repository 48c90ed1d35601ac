"""Intervals over clips, paired differences, and the verdict against the strongest baseline."""

from __future__ import annotations

import numpy as np
import pytest

from core.stats import clip_bootstrap, compare, paired_difference, verdict_word
from evals.scorecard import group_table_md, headline, statistics


def test_clip_bootstrap_resamples_clips_not_windows() -> None:
    # two clips: one of 100 windows at 1.0, one of 1 window at 0.0; the mean over windows is 100/101
    v = np.r_[np.ones(100), 0.0]
    c = ["a"] * 100 + ["b"]
    e = clip_bootstrap(v, c, seed=1)
    assert e.mean == pytest.approx(100 / 101) and e.clips == 2 and e.windows == 101
    # resampling clips: the draws are {a,a}: 1.0, {b,b}: 0.0, {a,b}: 100/101 -> the interval spans 0..1
    assert e.lo == 0.0 and e.hi == 1.0


def test_interval_is_as_wide_as_the_clips_say() -> None:
    """20 windows per clip share the clip's mean (sd 0.5): the interval is ~3.92·0.5/√clips wide, not /√windows."""
    rng = np.random.default_rng(0)
    n = 128
    v = np.repeat(rng.normal(1.0, 0.5, n), 20) + rng.normal(0, 0.1, 20 * n)
    e = clip_bootstrap(v, np.repeat(np.arange(n).astype(str), 20))
    assert e.lo < 1.0 < e.hi
    assert 0.7 * 3.92 * 0.5 / np.sqrt(n) < e.hi - e.lo < 1.3 * 3.92 * 0.5 / np.sqrt(n)


def test_paired_difference_removes_what_windows_share() -> None:
    rng = np.random.default_rng(0)
    clips = np.repeat(np.arange(10).astype(str), 10)
    hard = np.repeat(rng.uniform(0, 10, 10), 10)  # clips differ a lot in difficulty
    a, b = hard + 0.1, hard + 0.0 + rng.normal(0, 0.01, 100)
    d = paired_difference(a, b, clips)
    assert 0.09 < d.lo < d.mean < d.hi < 0.11
    assert clip_bootstrap(a, clips).lo < clip_bootstrap(b, clips).hi  # unpaired, they overlap
    with pytest.raises(ValueError, match="same windows"):
        paired_difference(a, b[:5], clips)


@pytest.mark.parametrize(("lo", "hi", "hib", "word"), [(0.1, 0.3, True, "beats"), (0.1, 0.3, False, "loses to"),
                                                      (-0.3, -0.1, False, "beats"), (-0.3, -0.1, True, "loses to"),
                                                      (-0.1, 0.2, True, "ties with")])
def test_verdict_words(lo: float, hi: float, hib: bool, word: str) -> None:
    assert verdict_word(lo, hi, higher_is_better=hib) == word


def _rows(n_clips: int = 6, per: int = 5) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for c in range(n_clips):
        for t in range(per):
            base = {"clip_id": f"c{c}", "t0_us": t, "split": "benchmark", "meta_action": "keep" if c % 2 else "stop"}
            e = rng.normal(0, 0.05)
            for p, ade in (("constant_velocity", 2.0), ("constant_controls", 1.0), ("field_agent", 0.7),
                           ("wrong_command", 1.5)):
                rows.append({**base, "policy": p, "ade_6p4s": ade + e, "fde_6p4s": ade + e,
                             "epdms": 0.9, "pdms": 0.9})
    return rows


def test_compare_picks_the_strongest_baseline() -> None:
    v = compare(_rows(), "ade_6p4s", "field_agent", ("constant_velocity", "constant_controls"), higher_is_better=False)
    assert v is not None and v.baseline == "constant_controls" and v.word == "beats"
    assert v.difference.mean == pytest.approx(-0.3)
    assert compare(_rows(), "ade_6p4s", "nobody", ("constant_controls",), higher_is_better=False) is None


def test_statistics_headline_and_tables() -> None:
    stats = statistics(_rows(), {f"c{c}": "cruise" if c < 3 else "turn" for c in range(6)}, ["benchmark"],
                       run_id="r", finished_us=1)
    agent = [s for s in stats if (s["split"], s["group_kind"], s["policy"], s["metric"]) ==
             ("benchmark", "all", "field_agent", "ade_6p4s")]
    assert len(agent) == 1 and agent[0]["vs"] == "constant_controls" and agent[0]["diff_hi"] < 0
    wrong = [s for s in stats if s["policy"] == "wrong_command" and s["metric"] == "ade_6p4s" and s["group"] == "all"]
    assert wrong[0]["vs"] == "field_agent" and wrong[0]["diff_lo"] > 0  # the ablation drop, significant
    lines = headline(stats)
    assert any("ADE@6.4 s on benchmark (6 clips, 30 windows): field agent 0.69" in x and "beats constant_controls" in x
               for x in lines)
    assert any("EPDMS" in x and "ties with" in x for x in lines)  # equal EPDMS: no claim either way
    md = group_table_md(stats, "benchmark", "scenario", "ade_6p4s")
    assert "| cruise | 3 |" in md and "| turn | 3 |" in md and "(constant_controls)" in md
