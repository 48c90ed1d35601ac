"""Keyframe labeling: spend an expensive labeler only where the behaviour changes.

NVIDIA's chain-of-causation auto-labeler picks keyframes where the ego's meta-action changes and
labels those. `KeyframeLabeler` does the same around any labeler: the kinematic labeler (cheap,
egomotion only) gives every window a meta-action; a window is a keyframe when it is its clip's
first or its meta-action differs from the window before it; the wrapped labeler (Alpamayo, a VLM)
labels the keyframes only, and every other window carries the trace of the keyframe before it,
marked as carried. Its version says so (`<version>+keyframes`): a keyframe labeling is a label set
of its own beside the full one, never an overwrite of it.
"""

from __future__ import annotations

from dataclasses import replace

from labelers.base import Labeler, LabelFailure, WindowContext
from labelers.kinematic import KinematicLabeler
from labelers.trace import Trace


def keyframes(windows: list[WindowContext], meta_actions: list[str | None]) -> list[int]:
    """Indices of the keyframes: each clip's first window (by t0) and every window whose meta-action
    differs from its clip's previous one. `windows` may come in any order."""
    order = sorted(range(len(windows)), key=lambda i: (windows[i].clip_id, windows[i].t0_us))
    out, prev_clip, prev_ma = [], None, None
    for i in order:
        if windows[i].clip_id != prev_clip or meta_actions[i] != prev_ma:
            out.append(i)
        prev_clip, prev_ma = windows[i].clip_id, meta_actions[i]
    return sorted(out)


class KeyframeLabeler(Labeler):
    def __init__(self, inner: Labeler) -> None:
        self.inner = inner
        self.name = inner.name
        self.version = f"{inner.version}+keyframes"
        self.features = inner.features

    def label(self, windows: list[WindowContext]) -> list[Trace | LabelFailure]:
        cheap = KinematicLabeler().label(windows)
        mas = [r.meta_action if isinstance(r, Trace) else None for r in cheap]
        keys = keyframes(windows, mas)
        labelled = dict(zip(keys, self.inner.label([windows[i] for i in keys]), strict=True))
        out: list[Trace | LabelFailure] = [LabelFailure("no keyframe")] * len(windows)
        order = sorted(range(len(windows)), key=lambda i: (windows[i].clip_id, windows[i].t0_us))
        key_of: int | None = None
        for i in order:
            if i in labelled:
                key_of = i
                r = labelled[i]
                out[i] = replace(r, labeler_version=self.version) if isinstance(r, Trace) else r
                continue
            assert key_of is not None and windows[key_of].clip_id == windows[i].clip_id  # a clip starts with a keyframe
            r = labelled[key_of]
            out[i] = LabelFailure(f"its keyframe t0={windows[key_of].t0_us / 1e6:.1f} s failed: {r.reason}") \
                if isinstance(r, LabelFailure) else \
                replace(r, labeler_version=self.version,
                        extra={**r.extra, "carried_from_t0_us": str(windows[key_of].t0_us)})
        return out
