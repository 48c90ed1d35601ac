"""Gold: Commander labels per window (a trace and a command), versioned by labeler."""

from collections import Counter

import dagster as dg

from dagster_project.assets._meta import preview, quarantine_rows
from dagster_project.partitions import chunks
from dagster_project.resources import LakeResource
from labelers.build import attach_front_images, label_windows, load_twin_gt, window_contexts
from labelers.registry import IMAGE_LABELERS, make_labeler
from lake import tables as T
from transforms.pai_layout import chunk_id_of
from transforms.source import chunk_files_from_manifest

STAGE = "commander_labels"


class CommanderLabelsConfig(dg.Config):
    labeler: str = "kinematic"  # kinematic | vlm | alpamayo
    vlm_model_dir: str = ""  # a local image-text-to-text model, for labeler=vlm
    phrasing_seed: int = 0  # picks among each meta-action's phrasings


@dg.asset(partitions_def=chunks, group_name="labels", kinds={"delta"}, deps=["unicycle_targets"])
def commander_labels(context: dg.AssetExecutionContext, config: CommanderLabelsConfig,
                     lake: LakeResource) -> dg.MaterializeResult:
    """A structured trace and a short Commander command per window; each labeler version keeps its rows."""
    key = context.partition_key
    files = chunk_files_from_manifest(lake.read(T.CHUNKS, chunk=key), chunk_id_of(key))
    labeler = make_labeler(config.labeler, files, vlm_model_dir=config.vlm_model_dir)
    contexts = window_contexts(lake.read(T.UNICYCLE_TARGETS, chunk=key), load_twin_gt(files))
    no_image: list[tuple[str, int, str]] = []
    if labeler.name in IMAGE_LABELERS:
        contexts, no_image = attach_front_images(contexts, files)
    out = label_windows(labeler, contexts, chunk=key, seed=config.phrasing_seed)
    flagged = [(c, "label_failed", f"{labeler.name} {labeler.version} t0={t / 1e6:.1f} s: {r}")
               for c, t, r in [*out.failures, *no_image]]
    for row in flagged:
        context.log.warning(f"{key}: window not labeled: {row[2]}")
    version_key = {"stage": f"{STAGE}:{labeler.name}:{labeler.version}"}
    lake.overwrite_partition(T.QUARANTINE, quarantine_rows(key, version_key["stage"], flagged), chunk=key,
                             extra=version_key)
    version = lake.overwrite_partition(T.COMMANDER_LABELS, out.table, chunk=key,
                                       extra={"labeler": labeler.name, "labeler_version": labeler.version})
    commands = Counter(out.table.column("command").to_pylist())
    actions = Counter(out.table.column("meta_action").to_pylist())
    return dg.MaterializeResult(metadata={
        "labeler": labeler.name, "labeler_version": labeler.version, "windows_labeled": out.table.num_rows,
        "windows_flagged": len(flagged), "delta_version": version,
        "meta_actions": dg.MetadataValue.md(_counts_md(actions, "meta-action")),
        "commands": dg.MetadataValue.md(_counts_md(commands, "command")),
        "sample": preview(out.table, 8, ["clip_id", "t0_us", "meta_action", "command", "confidence"]),
    })


def _counts_md(counts: Counter, what: str) -> str:
    total = sum(counts.values()) or 1
    rows = "\n".join(f"| {k} | {n} | {100 * n / total:.1f}% |" for k, n in counts.most_common())
    return f"| {what} | windows | share |\n|---|---|---|\n{rows}"
