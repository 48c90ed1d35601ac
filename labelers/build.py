"""From `unicycle_targets` rows (and the twin's ground truth) to labels: the labeling step, pure."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from engines.stage import ChunkStage
from labelers.base import Labeler, LabelFailure, WindowContext
from labelers.scene import twin_scenes
from labelers.trace import Trace, render_command
from lake import tables as T
from lake.tables import quarantine_rows, window_reason
from transforms import pai_layout as L
from transforms.frames import FrameDecodeError, decode_frames
from transforms.source import ChunkFiles
from transforms.twin.truth import load_twin_gt
from transforms.windows import read_targets
from transforms.zipread import MemberError, ZipMembers

STAGE = "commander_labels"


def window_contexts(targets: pa.Table, gt: dict[str, pd.DataFrame] | None) -> list[WindowContext]:
    """One context per `unicycle_targets` row, in row order."""
    w = read_targets(targets)
    t0s = w.t0_us.tolist()
    scenes = twin_scenes(gt, list(w.clip_id), t0s) if gt is not None else [None] * len(w)
    return [WindowContext(c, int(t), float(w.v0_mps[i]), w.accel_mps2[i], w.curvature_1pm[i], w.future_xyz[i],
                          w.future_yaw[i], scenes[i])
            for i, (c, t) in enumerate(zip(w.clip_id, t0s, strict=True))]


@dataclass(frozen=True)
class Labeled:
    table: pa.Table  # rows of lake.tables.COMMANDER_LABELS
    failures: tuple[tuple[str, int, str], ...]  # (clip_id, t0_us, reason): flagged, not stored


def label_windows(labeler: Labeler, contexts: list[WindowContext], *, chunk: str, seed: int = 0) -> Labeled:
    results = labeler.label(contexts)
    if len(results) != len(contexts):
        raise RuntimeError(f"labeler {labeler.name} returned {len(results)} results for {len(contexts)} windows")
    rows, failures = [], []
    for w, r in zip(contexts, results, strict=True):
        if isinstance(r, LabelFailure):
            failures.append((w.clip_id, w.t0_us, r.reason))
            continue
        assert isinstance(r, Trace)
        rows.append({"chunk": chunk, "clip_id": w.clip_id, "t0_us": w.t0_us, "labeler": labeler.name,
                     "labeler_version": labeler.version, "meta_action": r.meta_action,
                     "command": render_command(r, w.key, seed), "trace": r.to_json(), "confidence": r.confidence})
    from lake.tables import COMMANDER_LABELS

    return Labeled(pa.Table.from_pylist(rows, schema=COMMANDER_LABELS.schema), tuple(failures))


def confusion(reference: list[str | None], predicted: list[str]) -> tuple[float, pd.DataFrame]:
    """Agreement of predicted meta-actions with reference intents, and the confusion table."""
    pairs = [(r, p) for r, p in zip(reference, predicted, strict=True) if r is not None]
    agree = sum(r == p for r, p in pairs) / max(len(pairs), 1)
    counts = Counter(pairs)
    labels = sorted({x for pair in pairs for x in pair})
    table = pd.DataFrame([[counts.get((r, p), 0) for p in labels] for r in labels], index=labels, columns=labels)
    table.index.name, table.columns.name = "reference", "predicted"
    return agree, table


def attach_front_images(contexts: list[WindowContext],
                        files: ChunkFiles) -> tuple[list[WindowContext], list[tuple[str, int, str]]]:
    """Contexts with the front camera frame at t0 (one decoding pass per clip).

    Returns the contexts that got an image, and (clip_id, t0_us, reason) for each that did not.
    """
    feat = files.features[L.FRONT_CAMERA]
    zm = ZipMembers(files.feature_path(L.FRONT_CAMERA))
    by_clip: dict[str, list[WindowContext]] = {}
    for w in contexts:
        by_clip.setdefault(w.clip_id, []).append(w)
    out, failed = [], []
    try:
        for clip, ws in by_clip.items():
            names = feat.members(clip)
            try:
                times = pq.read_table(io.BytesIO(zm.read(names["frame_timestamps"]))).column("timestamp").to_numpy()
                with zm.open(names["video"]) as video:
                    frames = decode_frames(video, times, np.array([w.t0_us for w in ws]))
            except (MemberError, FrameDecodeError, pa.ArrowInvalid, OSError) as exc:
                failed += [(w.clip_id, w.t0_us, f"no front frame ({exc})") for w in ws]
                continue
            out += [replace(w, image=frames[w.t0_us]) for w in ws]
    finally:
        zm.close()
    return out, failed


@dataclass(frozen=True)
class LabelPlan:
    chunk: str
    files: ChunkFiles
    labeler: Labeler  # built on the driver; model labelers never leave it (registry.MODEL_LABELERS)
    image: bool  # attach the front frame at t0 (registry.IMAGE_LABELERS)
    seed: int = 0

    @property
    def stage_key(self) -> str:
        """The quarantine `stage` of this labeler version: each version keeps its own flagged windows."""
        return f"{STAGE}:{self.labeler.name}:{self.labeler.version}"

    @property
    def label_set(self) -> dict[str, str]:
        return {"labeler": self.labeler.name, "labeler_version": self.labeler.version}

    def job_keys(self) -> dict[str, dict[str, str]]:
        """The partition keys (beyond the chunk) its outputs replace: this version's rows only."""
        return {"quarantine": {"stage": self.stage_key}, "labels": self.label_set}


def labels_part(plan: LabelPlan, clip_ids: list[str], inputs: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Label the windows of some clips (an engine part function: see engines/__init__.py).

    Input: their `unicycle_targets` rows. Output: `labels` rows and the `quarantine` rows of the
    windows that got no label. Each window is labeled on its own, so any split of
    the clips gives the same rows.
    """
    targets = inputs["targets"].sort_by([("clip_id", "ascending"), ("t0_us", "ascending")])
    contexts = window_contexts(targets, load_twin_gt(plan.files))
    no_image: list[tuple[str, int, str]] = []
    if plan.image:
        contexts, no_image = attach_front_images(contexts, plan.files)
    out = label_windows(plan.labeler, contexts, chunk=plan.chunk, seed=plan.seed)
    who = f"{plan.labeler.name} {plan.labeler.version}"
    flagged = [(c, "label_failed", f"{who} {window_reason(t, r)}") for c, t, r in [*out.failures, *no_image]]
    return {"labels": out.table, "quarantine": quarantine_rows(plan.chunk, plan.stage_key, flagged)}


# The stage: a trace and a command per window of the chunk's usable clips; windows a labeler could
# not label are quarantined under its version (LabelPlan.job_keys).
LABELS_STAGE = ChunkStage(STAGE, labels_part, reads={"targets": T.UNICYCLE_TARGETS},
                          writes=(("quarantine", T.QUARANTINE), ("labels", T.COMMANDER_LABELS)))
