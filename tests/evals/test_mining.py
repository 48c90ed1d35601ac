"""Mining hard examples and the data request they make; the request's arithmetic."""

from __future__ import annotations

import pytest

from core.request import DataRequest, allocate, format_weights, parse_weights, speed_band
from evals.mining import data_request, group_hard, mine_hard_examples, strongest_baseline, windows_of


def _row(policy: str, clip: str, t0: int, epdms: float, ade: float, **subs: float) -> dict:
    return {"policy": policy, "split": "benchmark", "chunk": "chunk_0000", "clip_id": clip, "t0_us": t0,
            "meta_action": "keep_lane" if clip == "a" else "stop", "command": "Go", "epdms": epdms, "ade_6p4s": ade,
            **{m: subs.get(m, 1.0) for m in ("nc", "dac", "ddc", "tlc", "ttc", "lk", "hc", "ec")}}


ROWS = [
    # clip a (cruise): the agent loses EPDMS to constant (a, κ), the strongest baseline on average
    _row("field_agent", "a", 0, 0.5, 1.0), _row("constant_controls", "a", 0, 0.9, 1.0),
    _row("constant_velocity", "a", 0, 0.8, 2.0),
    # clip b (stop_and_go): both fail TTC here; the agent alone fails LK at t0=1
    _row("field_agent", "b", 0, 0.8, 1.0, ttc=0.0), _row("constant_controls", "b", 0, 0.8, 1.0, ttc=0.0),
    _row("constant_velocity", "b", 0, 0.6, 3.0),
    _row("field_agent", "b", 1, 0.85, 1.0, lk=0.0), _row("constant_controls", "b", 1, 0.85, 1.0),
    _row("constant_velocity", "b", 1, 0.7, 3.0),
]
SCENARIO = {"a": "cruise", "b": "stop_and_go"}
V0 = {("a", 0): 25.0, ("b", 0): 1.0, ("b", 1): 5.0}


def test_hard_examples_are_judged_against_the_strongest_baseline() -> None:
    assert strongest_baseline(ROWS) == "constant_controls"
    hard, base = mine_hard_examples(ROWS, SCENARIO, V0)
    by = {(h["clip_id"], h["t0_us"]): h for h in hard}
    assert base == "constant_controls" and set(by) == {("a", 0), ("b", 0), ("b", 1)}
    assert by[("a", 0)]["severity"] == pytest.approx(0.4) and "epdms 0.50 < constant_controls 0.90" in by[("a", 0)]["reasons"]
    assert by[("b", 0)]["severity"] == 0 and "so does constant_controls" in by[("b", 0)]["reasons"]
    assert by[("b", 1)]["severity"] == pytest.approx(0.25) and by[("b", 1)]["failed"] == "lk"
    assert by[("a", 0)]["speed_band"] == "highway" and by[("b", 0)]["speed_band"] == "standing"
    groups = {(g["kind"], g["group"]): g for g in group_hard(hard, windows_of(ROWS, SCENARIO, V0))}
    assert groups[("scenario", "stop_and_go")]["hard"] == 2 and groups[("scenario", "stop_and_go")]["windows"] == 2
    assert groups[("failed", "worse_than_baseline")]["hard"] == 1 and groups[("failed", "ttc")]["hard"] == 1


def test_the_request_asks_for_the_severity_and_keeps_a_floor_for_every_group() -> None:
    hard, _ = mine_hard_examples(ROWS, SCENARIO, V0)
    req = data_request(hard, windows_of(ROWS, SCENARIO, V0), budget_windows=100, run_id="r")
    assert req.windows == 100 and req.run_id == "r"
    assert sum(req.scenarios.values()) == pytest.approx(1.0)
    # severity 0.4 in cruise, 0.25 in stop_and_go; a 25% floor spread over both
    assert req.scenarios["cruise"] == pytest.approx(0.75 * 0.4 / 0.65 + 0.125)
    assert req.scenarios["cruise"] > req.scenarios["stop_and_go"] > 0.125 - 1e-9
    assert req.request_id == DataRequest.from_json(req.to_json()).request_id
    none = data_request([], windows_of(ROWS, SCENARIO, V0), budget_windows=10)
    assert none.scenarios == {"cruise": 0.5, "stop_and_go": 0.5} and "even spread" in none.note


def test_request_arithmetic_and_errors() -> None:
    assert allocate({"a": 0.5, "b": 0.3, "c": 0.2}, 7) == {"a": 4, "b": 2, "c": 1}
    assert sum(allocate({"x": 1 / 3, "y": 1 / 3, "z": 1 / 3}, 10).values()) == 10
    req = DataRequest(10, meta_actions={"stop": 3.0, "keep_lane": 1.0})
    w = req.sample_weights({"keep_lane": 90, "stop": 10})
    assert w["stop"] > 1 > w["keep_lane"] and w["stop"] <= 4.0
    # the training mix moves from the data's 10% towards the request's 75% of stop (the cap holds it short)
    assert 0.1 < 10 * w["stop"] / (90 * w["keep_lane"] + 10 * w["stop"]) < 0.75
    assert req.sample_weights({"keep_lane": 25, "stop": 75}) == {"keep_lane": 1.0, "stop": 1.0}  # already there
    assert parse_weights(format_weights(w)) == w
    assert req.clip_score(["stop", "stop"], [0.0, 0.0]) > req.clip_score(["keep_lane", "keep_lane"], [9.0, 9.0])
    assert speed_band(12.0) == "road"
    with pytest.raises(ValueError, match="unknown meta-actions"):
        DataRequest(10, meta_actions={"fly": 1.0})
    with pytest.raises(ValueError, match="sample weight 'stop=-1'"):
        parse_weights("stop=-1")
    with pytest.raises(ValueError, match="negative or NaN speed"):
        speed_band(float("nan"))
    with pytest.raises(ValueError, match="shares"):
        DataRequest(10, scenarios={"cruise": -1.0})


def test_a_request_read_back_from_json_keeps_its_id() -> None:
    """Normalising shares is idempotent: a request stored as JSON hashes to the id it was stored under
    (normalising twice moved the last bits of about one request in seven)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(300):
        shares = {f"s{j}": float(rng.random()) for j in range(int(rng.integers(1, 9)))}
        bands = {"urban": float(rng.random()), "road": float(rng.random())}
        req = DataRequest(10, scenarios=shares, meta_actions={"stop": 0.3, "go": 0.7}, speed_bands=bands).mixed()
        back = DataRequest.from_json(req.to_json())
        assert back == req and back.request_id == req.request_id
