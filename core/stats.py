"""Intervals a reviewer accepts: means and paired differences with a bootstrap over clips.

Windows of one clip are 0.5 s apart and share a road, a speed and a driver: they are not
independent, so every interval here resamples whole clips (a cluster bootstrap) and takes the
mean over the windows of the resampled clips. A paired difference is taken window by window (the
same windows, two policies) before resampling, which removes what the windows share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    mean: float
    lo: float  # the 95% interval
    hi: float
    windows: int
    clips: int

    def fmt(self, spec: str = ".3f") -> str:
        return f"{self.mean:{spec}} [{self.lo:{spec}}, {self.hi:{spec}}]"


def clip_bootstrap(values: Sequence[float] | np.ndarray, clips: Sequence[str], *, n_boot: int = N_BOOT,
                   seed: int = 0, level: float = LEVEL) -> Estimate:
    """The mean of per-window `values` and its percentile interval, resampling clips with replacement."""
    v = np.asarray(values, np.float64)
    c = np.asarray(clips)
    if v.shape != c.shape or v.ndim != 1 or not len(v):
        raise ValueError(f"need one value per window and its clip, got {v.shape} values and {c.shape} clips")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{int(np.sum(~np.isfinite(v)))} values are not finite: leave unscored windows out first")
    ids, inv = np.unique(c, return_inverse=True)
    sums, counts = np.bincount(inv, weights=v), np.bincount(inv).astype(np.float64)
    mean = float(v.mean())
    if len(ids) < 2:
        return Estimate(mean, mean, mean, len(v), len(ids))  # one clip: no spread to resample
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(ids), (n_boot, len(ids)))
    boot = sums[pick].sum(1) / counts[pick].sum(1)
    a = (1 - level) / 2
    lo, hi = np.quantile(boot, [a, 1 - a])
    return Estimate(mean, float(lo), float(hi), len(v), len(ids))


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, clips: Sequence[str], *,
                      n_boot: int = N_BOOT, seed: int = 0) -> Estimate:
    """Mean of a − b over the same windows, with its clip-bootstrap interval."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a paired difference needs the same windows: {a.shape} vs {b.shape}")
    return clip_bootstrap(a - b, clips, n_boot=n_boot, seed=seed)


def verdict_word(lo: float, hi: float, *, higher_is_better: bool) -> str:
    """beats / loses to / ties with, from the interval of (agent − baseline): whether it excludes zero, and where."""
    if lo > 0:
        return "beats" if higher_is_better else "loses to"
    if hi < 0:
        return "loses to" if higher_is_better else "beats"
    return "ties with"


@dataclass(frozen=True)
class Verdict:
    metric: str
    agent: Estimate
    baseline: str
    baseline_estimate: Estimate
    difference: Estimate  # agent − baseline
    higher_is_better: bool

    @property
    def word(self) -> str:
        return verdict_word(self.difference.lo, self.difference.hi, higher_is_better=self.higher_is_better)

    def sentence(self, label: str, agent: str = "field agent", unit: str = "") -> str:
        fmt = ".3f"
        return (f"{label}: {agent} {self.agent.mean:{fmt}}{unit} {self.word} {self.baseline} "
                f"{self.baseline_estimate.mean:{fmt}}{unit} (difference {self.difference.fmt(fmt)}{unit}, 95% over "
                f"{self.difference.clips} clips, {self.difference.windows} windows)")


def compare(rows: Sequence[dict], metric: str, agent: str, baselines: Sequence[str], *, higher_is_better: bool,
            seed: int = 0) -> Verdict | None:
    """The agent against the strongest baseline on `metric`, over the windows every one of them scored.

    `rows`: one per (window, policy) with keys policy, clip_id, t0_us and the metric (None: unscored).
    None when the agent or no baseline has a scored window.
    """
    by = {p: {(r["clip_id"], r["t0_us"]): r[metric] for r in rows if r["policy"] == p and r[metric] is not None}
          for p in (agent, *baselines)}
    present = [b for b in baselines if by[b]]
    if not by[agent] or not present:
        return None
    keys = sorted(set(by[agent]).intersection(*(by[b] for b in present)))
    if not keys:
        return None
    clips = [k[0] for k in keys]
    means = {b: float(np.mean([by[b][k] for k in keys])) for b in present}
    best = max(present, key=means.get) if higher_is_better else min(present, key=means.get)
    a, b = [by[agent][k] for k in keys], [by[best][k] for k in keys]
    return Verdict(metric, clip_bootstrap(a, clips, seed=seed), best, clip_bootstrap(b, clips, seed=seed),
                   paired_difference(a, b, clips, seed=seed), higher_is_better)
