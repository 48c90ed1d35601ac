"""The VLM labeler's plumbing with a tiny random-init SmolVLM built offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labelers.base import LabelerUnavailable, LabelFailure, WindowContext
from labelers.trace import Trace, TraceError
from labelers.vlm import VLMLabeler, parse_trace
from trainers.tiny_backbone import build_tiny_backbone


def _window(i: int) -> WindowContext:
    z = np.zeros(64)
    return WindowContext(f"clip{i}", 2_000_000, 10.0, z, z, np.zeros((64, 3)), z,
                         image=np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8))


def test_parse_trace_takes_the_json_in_a_chatty_answer() -> None:
    answer = ('Sure! Here is the trace:\n```json\n{"scene": "highway", "meta_action": "follow_lead", "subject": "truck",'
              ' "reason": "a slow truck ahead", "hazards": [{"kind": "truck", "where": "ahead"}], "labeler": "me"}\n```')
    t = parse_trace(answer, labeler="vlm", version="v1")
    assert isinstance(t, Trace) and t.meta_action == "follow_lead" and t.labeler == "vlm" and t.confidence == 0.5
    with pytest.raises(TraceError, match="meta_action 'zoom'"):
        parse_trace('{"scene": "x", "meta_action": "zoom", "reason": "y"}', labeler="vlm", version="v1")
    with pytest.raises(TraceError, match="no JSON object"):
        parse_trace("keep lane please", labeler="vlm", version="v1")


def test_random_model_output_is_retried_then_flagged(tmp_path: Path) -> None:
    model_dir = build_tiny_backbone(tmp_path / "tiny_vlm", with_weights=True)
    labeler = VLMLabeler(model_dir, max_new_tokens=12, retries=1, batch_size=2)
    calls = []
    original = labeler._generate

    def counting(windows: list, attempt: int) -> list[str]:
        calls.append((len(windows), attempt))
        return original(windows, attempt)

    labeler._generate = counting  # type: ignore[method-assign]
    results = labeler.label([_window(i) for i in range(3)])
    assert all(isinstance(r, LabelFailure) and "after 2 tries" in r.reason for r in results)
    assert [a for _, a in calls] == [0, 0, 1, 1] and sum(n for n, a in calls if a == 0) == 3  # each window retried once
    assert labeler.version.startswith("tiny_vlm-") and labeler.version.endswith("-p1")


def test_valid_answers_become_traces(tmp_path: Path) -> None:
    model_dir = build_tiny_backbone(tmp_path / "tiny_vlm")
    labeler = VLMLabeler(model_dir, retries=0)
    answers = iter(['{"scene": "x", "meta_action": "stop", "subject": "line", "reason": "stop line", "confidence": 0.7}',
                    "garbage"])
    labeler._load = lambda: None  # type: ignore[method-assign]
    labeler._generate = lambda ws, attempt: [next(answers) for _ in ws]  # type: ignore[method-assign]
    ok, bad = labeler.label([_window(0), _window(1)])
    assert isinstance(ok, Trace) and ok.meta_action == "stop" and ok.confidence == 0.7
    assert isinstance(bad, LabelFailure)


def test_missing_model_or_image_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LabelerUnavailable, match="holds no model"):
        VLMLabeler(tmp_path)
    labeler = VLMLabeler(build_tiny_backbone(tmp_path / "m"))
    from dataclasses import replace

    with pytest.raises(ValueError, match="needs the front image"):
        labeler.label([replace(_window(0), image=None)])
