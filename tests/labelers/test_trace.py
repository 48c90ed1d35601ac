"""The trace schema and command rendering."""

from __future__ import annotations

import pytest

from labelers.trace import META_ACTIONS, PHRASINGS, Hazard, Trace, TraceError, render_command


def _trace(**kw: object) -> Trace:
    base = {"scene": "two-lane road", "meta_action": "overtake_left", "reason": "slow truck", "labeler": "kinematic",
            "labeler_version": "1.0", "confidence": 0.9, "hazards": (Hazard("truck", "ahead", 30.0),),
            "subject": "truck"}
    return Trace(**{**base, **kw})


def test_json_round_trip() -> None:
    t = _trace(extra={"cot": "..."})
    assert Trace.from_json(t.to_json()) == t


@pytest.mark.parametrize("kw, match", [
    ({"meta_action": "fly"}, "meta_action 'fly' is not one of"),
    ({"confidence": 1.5}, r"confidence 1\.5 must be within"),
    ({"labeler": ""}, "labeler and labeler_version"),
])
def test_schema_violations_name_the_field(kw: dict, match: str) -> None:
    with pytest.raises(TraceError, match=match):
        _trace(**kw)


def test_bad_json_and_bad_hazard_are_trace_errors() -> None:
    with pytest.raises(TraceError, match="not JSON"):
        Trace.from_json("{meta_action: keep_lane")
    with pytest.raises(TraceError, match="hazard kind 'dragon'"):
        Trace.from_dict({**_trace().__dict__, "hazards": [{"kind": "dragon"}]})


def test_commands_are_seeded_per_window_and_spread() -> None:
    t = _trace()
    assert render_command(t, "c/1", seed=0) == render_command(t, "c/1", seed=0)
    assert len({render_command(t, f"c/{i}") for i in range(40)}) == len(PHRASINGS["overtake_left"])
    assert all("truck" in render_command(t, f"c/{i}") for i in range(10))
    for action in META_ACTIONS:  # every meta-action renders without a dangling placeholder
        assert "{" not in render_command(_trace(meta_action=action, subject=""), "k")
