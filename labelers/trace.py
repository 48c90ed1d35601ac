"""The structured driving trace (perception -> prediction -> plan) and the Commander command.

A `Trace` is what every labeler produces for a window: the scene, the hazards it mentions, a
prediction, one meta-action from a closed vocabulary, the reason, and who labeled it. It is
stored as JSON (`TRACE_SCHEMA_VERSION`); the short command SmolVLA is trained to follow is
rendered from it with a few seeded phrasings per meta-action.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from core.vocab import DEFAULT_SUBJECT, HAZARD_KINDS, META_ACTIONS, PHRASINGS

TRACE_SCHEMA_VERSION = "1.0"


class TraceError(ValueError):
    """A trace does not follow the schema (caught by labelers to retry or flag the window)."""


@dataclass(frozen=True)
class Hazard:
    kind: str  # from HAZARD_KINDS
    where: str = "ahead"  # ahead | left | right | behind | oncoming
    distance_m: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in HAZARD_KINDS:
            raise TraceError(f"hazard kind {self.kind!r} is not one of {', '.join(HAZARD_KINDS)}")


@dataclass(frozen=True)
class Trace:
    scene: str
    meta_action: str
    reason: str
    labeler: str
    labeler_version: str
    confidence: float
    hazards: tuple[Hazard, ...] = ()
    prediction: str = ""
    subject: str = ""  # what the action is about ("truck", "stop line"); used by the command
    schema_version: str = TRACE_SCHEMA_VERSION
    extra: dict[str, str] = field(default_factory=dict)  # labeler-specific (e.g. the raw CoC text)

    def __post_init__(self) -> None:
        if self.meta_action not in META_ACTIONS:
            raise TraceError(f"meta_action {self.meta_action!r} is not one of {', '.join(META_ACTIONS)}")
        if not 0.0 <= self.confidence <= 1.0:
            raise TraceError(f"confidence {self.confidence!r} must be within [0, 1]")
        if not self.labeler or not self.labeler_version:
            raise TraceError("a trace needs its labeler and labeler_version")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Trace:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TraceError(f"not JSON: {exc}") from exc
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: object) -> Trace:
        if not isinstance(d, dict):
            raise TraceError(f"a trace is a JSON object, got {type(d).__name__}")
        missing = [k for k in ("scene", "meta_action", "reason", "labeler", "labeler_version", "confidence") if k not in d]
        if missing:
            raise TraceError(f"trace lacks fields {missing}")
        try:
            hazards = tuple(Hazard(**h) for h in d.get("hazards", ()))
            return cls(scene=str(d["scene"]), meta_action=str(d["meta_action"]), reason=str(d["reason"]),
                       labeler=str(d["labeler"]), labeler_version=str(d["labeler_version"]),
                       confidence=float(d["confidence"]), hazards=hazards, prediction=str(d.get("prediction", "")),
                       subject=str(d.get("subject", "")), schema_version=str(d.get("schema_version", TRACE_SCHEMA_VERSION)),
                       extra={str(k): str(v) for k, v in dict(d.get("extra", {})).items()})
        except (TypeError, ValueError) as exc:
            raise TraceError(f"bad trace field: {exc}") from exc


def render_command(trace: Trace, key: str, seed: int = 0) -> str:
    """The Commander command for a trace: one of a few phrasings, chosen by a hash of (key, seed).

    `key` identifies the window (e.g. "clip_id/t0_us"), so a window always gets the same words
    for the same seed, and different windows spread over the phrasings.
    """
    options = PHRASINGS[trace.meta_action]
    h = int.from_bytes(hashlib.sha256(f"{key}/{seed}".encode()).digest()[:4], "little")
    subject = trace.subject or DEFAULT_SUBJECT.get(trace.meta_action, "")
    return options[h % len(options)].format(subject=subject)
