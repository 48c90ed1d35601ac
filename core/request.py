"""A data request: what the flywheel asks the next turn's data to hold more of.

Mined from the agent's hard examples (evals/mining.py) and answered per source: the twin writes
chunks with that scenario mix (transforms/twin/acquire.py), PAI triage ranks clips by their
meta-actions (transforms/triage.py), and reweighting repeats training samples by meta-action
(trainers/data.py). One frozen record, JSON in the lake, identified by a hash of its content.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from core.vocab import META_ACTIONS

# Speed bands of a window's v0: what a request may ask for beyond its scenario and meta-action.
SPEED_BANDS = (("standing", 0.0, 3.0), ("urban", 3.0, 10.0), ("road", 10.0, 20.0), ("highway", 20.0, math.inf))
# A share no group of a request goes below, once mixed in (`mixed`): a request that asked for one
# scenario only would starve the others, and the agent would unlearn what it does well.
FLOOR = 0.25
MAX_WEIGHT = 4.0  # reweighting: no sample is repeated more than this many times on average


def speed_band(v_mps: float) -> str:
    for name, lo, hi in SPEED_BANDS:
        if lo <= v_mps < hi:
            return name
    raise ValueError(f"speed {v_mps!r} m/s is not in any band {SPEED_BANDS}: a negative or NaN speed")


def _normalised(shares: Mapping[str, float], what: str) -> dict[str, float]:
    bad = {k: v for k, v in shares.items() if not (math.isfinite(v) and v >= 0)}
    total = sum(shares.values())
    if bad or (shares and total <= 0):
        raise ValueError(f"{what} shares {dict(shares)}: need finite, non-negative shares with a positive sum")
    # shares that already sum to 1 (within rounding) are kept as they are: normalising twice would move
    # their last bits, and a request read back from JSON would no longer hash to its own request_id
    scale = 1.0 if abs(total - 1.0) <= 1e-9 else total
    return {k: v / scale for k, v in sorted(shares.items()) if v > 0}


@dataclass(frozen=True)
class DataRequest:
    """Shares (summing to 1 per kind) of what to acquire, and how many windows in all."""

    windows: int
    scenarios: dict[str, float] = field(default_factory=dict)  # twin scenario -> share
    meta_actions: dict[str, float] = field(default_factory=dict)  # meta-action -> share
    speed_bands: dict[str, float] = field(default_factory=dict)  # SPEED_BANDS name -> share
    run_id: str = ""  # the evaluated run whose hard examples it answers ("" for a hand-made one)
    note: str = ""

    def __post_init__(self) -> None:
        if self.windows < 0:
            raise ValueError(f"windows={self.windows}: a request asks for >= 0 windows")
        unknown = [m for m in self.meta_actions if m not in META_ACTIONS]
        bands = [b for b in self.speed_bands if b not in {n for n, _, _ in SPEED_BANDS}]
        if unknown or bands:
            raise ValueError(f"unknown meta-actions {unknown} or speed bands {bands}: use core.vocab.META_ACTIONS "
                             f"and {[n for n, _, _ in SPEED_BANDS]}")
        for name in ("scenarios", "meta_actions", "speed_bands"):
            object.__setattr__(self, name, _normalised(getattr(self, name), name))

    @property
    def request_id(self) -> str:
        return "req-" + hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DataRequest:
        d = json.loads(text)
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def mixed(self, uniform: Mapping[str, list[str]] | None = None, floor: float = FLOOR) -> DataRequest:
        """The request with `floor` of each kind spread evenly over all its groups (the names in
        `uniform`, else the ones it has), so that every group keeps a share."""
        uniform = uniform or {}

        def mix(shares: dict[str, float], names: list[str]) -> dict[str, float]:
            names = sorted(set(names) | set(shares))
            return {n: (1 - floor) * shares.get(n, 0.0) + floor / len(names) for n in names} if names else {}

        return DataRequest(self.windows, mix(self.scenarios, uniform.get("scenarios", [])),
                           mix(self.meta_actions, uniform.get("meta_actions", [])),
                           mix(self.speed_bands, uniform.get("speed_bands", [])), self.run_id, self.note)

    def clip_score(self, meta_actions: list[str], speeds_mps: list[float]) -> float:
        """How well a clip's windows match the request: the mean share of their meta-actions (and
        speed bands, where the request names any), relative to an even spread; > 1 is wanted."""
        if not meta_actions:
            return 0.0
        n_ma = max(len(self.meta_actions), 1)
        score = sum(self.meta_actions.get(m, 0.0) * n_ma for m in meta_actions) / len(meta_actions) \
            if self.meta_actions else 1.0
        if self.speed_bands:
            n_sb = len(self.speed_bands)
            score *= sum(self.speed_bands.get(speed_band(v), 0.0) * n_sb for v in speeds_mps) / len(speeds_mps)
        return score

    def sample_weights(self, counts: Mapping[str, int]) -> dict[str, float]:
        """Reweighting: per meta-action, how often to repeat a training sample so that the training
        mix moves towards the request. weight = request share / data share, scaled to a mean of 1
        over the data and capped at MAX_WEIGHT; meta-actions the request does not name keep 1."""
        total = sum(counts.values())
        if total <= 0 or not self.meta_actions:
            return {}
        raw = {m: (self.meta_actions[m] / (c / total) if m in self.meta_actions else 1.0)
               for m, c in counts.items() if c > 0}
        mean = sum(raw[m] * counts[m] for m in raw) / total
        return {m: round(min(w / mean, MAX_WEIGHT), 4) for m, w in sorted(raw.items())}


def allocate(shares: Mapping[str, float], n: int) -> dict[str, int]:
    """`n` items split by `shares` (largest remainder): integers that sum to n, deterministic."""
    if n < 0 or not shares:
        raise ValueError(f"cannot split {n} items over shares {dict(shares)}")
    exact = {k: v * n for k, v in sorted(shares.items())}
    out = {k: math.floor(x) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[: n - sum(out.values())]:
        out[k] += 1
    return out


def parse_weights(text: str) -> dict[str, float]:
    """`keep_lane=0.5,stop=2` -> {"keep_lane": 0.5, "stop": 2.0}, checked against the vocabulary."""
    out: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            w = float(value)
        except ValueError:
            w = -1.0
        if not sep or name not in META_ACTIONS or not (math.isfinite(w) and w >= 0):
            raise ValueError(f"sample weight {item!r}: write meta_action=weight (a number >= 0) with a meta-action "
                             f"from {list(META_ACTIONS)}, e.g. stop=2.5,keep_lane=0.6")
        out[name] = w
    return out


def format_weights(weights: Mapping[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in sorted(weights.items()))
