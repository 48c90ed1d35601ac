"""The kinematic labeler against the twin's driver model: >= 95% agreement on the meta-action."""

from __future__ import annotations

import pandas as pd
import pytest

from labelers.build import confusion, label_windows, window_contexts
from labelers.kinematic import KinematicLabeler, lane_change_activity
from labelers.scene import reference_intents
from transforms.index import index_chunk
from transforms.source import mirror_source
from transforms.twin.truth import load_twin_gt
from transforms.twin.writer import TwinConfig, write_twin
from transforms.unicycle import targets_for_chunk

# 2 chunks x 8 clips: every scenario twice (they cycle per chunk), 20 s clips, tiny images
CFG = TwinConfig(chunks=2, clips_per_chunk=8, seed=21, width=64, height=48, seconds=20.0)


@pytest.fixture(scope="module")
def labeled(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list, list]:
    root = write_twin(tmp_path_factory.mktemp("twin_labels"), CFG)
    refs, preds, contexts = [], [], []
    for c in range(CFG.chunks):
        files = mirror_source(root).fetch_chunk(c)
        ix = index_chunk(files, chunk=f"chunk_{c:04d}")
        targets = targets_for_chunk(ix.egomotion, ix.clips, chunk=f"chunk_{c:04d}").table
        gt = load_twin_gt(files)
        ctx = window_contexts(targets, gt)
        out = label_windows(KinematicLabeler(), ctx, chunk=f"chunk_{c:04d}")
        assert not out.failures and out.table.num_rows == len(ctx)
        refs += reference_intents(gt["intent"], [w.clip_id for w in ctx], [w.t0_us for w in ctx])
        preds += out.table.column("meta_action").to_pylist()
        contexts += ctx
    return refs, preds, contexts


def test_agreement_with_the_driver_model(labeled: tuple) -> None:
    refs, preds, _ = labeled
    agree, table = confusion(refs, preds)
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(f"\nkinematic vs driver intent: {agree:.3f} agreement over {len(preds)} windows\n{table}")
    assert agree >= 0.95
    assert len(set(refs)) >= 9  # the twin showed (nearly) every behaviour, so the figure means something


def test_labels_are_deterministic(labeled: tuple) -> None:
    _, preds, contexts = labeled
    again = label_windows(KinematicLabeler(), contexts[:50], chunk="x").table.column("meta_action").to_pylist()
    assert again == preds[:50]


def test_without_scene_it_still_labels_from_motion_with_lower_confidence(labeled: tuple) -> None:
    _, _, contexts = labeled
    from dataclasses import replace

    blind = [replace(w, scene=None) for w in contexts[:40]]
    out = label_windows(KinematicLabeler(), blind, chunk="x")
    assert out.table.num_rows == 40 and max(out.table.column("confidence").to_pylist()) < 0.9


def test_lane_change_activity_marks_the_whole_manoeuvre() -> None:
    import numpy as np

    t = np.arange(65) * 0.1
    u = np.clip((t - 1.0) / 4.0, 0, 1)
    d = 3.5 * (10 * u**3 - 15 * u**4 + 6 * u**5)  # a 4 s lane change starting at 1 s
    act = lane_change_activity(d)
    on = np.flatnonzero(act > 0)
    assert act.min() == 0 and 9 <= on[0] <= 15 and 45 <= on[-1] <= 51  # ~1.0 .. 5.0 s
    sway = 0.12 * np.sin(2 * np.pi * t / 5.0)
    assert not lane_change_activity(sway).any()


class _Counting(KinematicLabeler):
    """The kinematic labeler standing in for an expensive one: counts the windows it is asked for."""

    def __init__(self, fail: bool = False) -> None:
        self.seen = 0
        self.fail = fail

    def label(self, windows: list) -> list:
        from labelers.base import LabelFailure

        self.seen += len(windows)
        return [LabelFailure("model down")] * len(windows) if self.fail else super().label(windows)


def test_keyframe_labeling_spends_the_labeler_where_the_meta_action_changes(labeled: tuple) -> None:
    from labelers.base import LabelFailure
    from labelers.keyframes import KeyframeLabeler

    _, preds, contexts = labeled
    inner = _Counting()
    kf = KeyframeLabeler(inner)
    out = kf.label(contexts)
    clips = {w.clip_id for w in contexts}
    print(f"\nkeyframes: {inner.seen} of {len(contexts)} windows labelled ({len(clips)} clips)")
    assert len(clips) <= inner.seen < len(contexts) / 2  # every clip's first window, and the changes
    assert kf.version == "1.0+keyframes" and all(t.labeler_version == kf.version for t in out)
    # with the kinematic labeler inside, carrying the keyframe's label loses nothing
    assert [t.meta_action for t in out] == preds
    carried = [t for t in out if "carried_from_t0_us" in t.extra]
    assert len(carried) == len(contexts) - inner.seen
    down = KeyframeLabeler(_Counting(fail=True)).label(contexts[:30])
    assert all(isinstance(r, LabelFailure) for r in down)
    assert any("its keyframe" in r.reason for r in down)
