"""Gold: Commander labels per window (a trace and a command), versioned by labeler."""

from collections import Counter
from pathlib import Path

import dagster as dg

from dagster_project.assets._meta import preview, quarantine_rows
from dagster_project.partitions import chunks
from dagster_project.resources import EngineResource, LakeResource
from engines import EmbeddedEngine, Input
from labelers.build import LabelPlan, labels_part
from labelers.registry import IMAGE_LABELERS, MODEL_LABELERS, PROJECT, make_labeler
from lake import tables as T
from transforms.pai_layout import chunk_id_of
from transforms.source import chunk_files_from_manifest
from transforms.unicycle import WINDOW_QUARANTINE

STAGE = "commander_labels"


class CommanderLabelsConfig(dg.Config):
    labeler: str = "kinematic"  # kinematic | vlm | alpamayo | standin
    vlm_model_dir: str = ""  # a local image-text-to-text model, for labeler=vlm
    labeler_env: str = ""  # alpamayo, standin: their environment (default .labeler-envs/<labeler> of the project)
    phrasing_seed: int = 0  # picks among each meta-action's phrasings


@dg.asset(partitions_def=chunks, group_name="labels", kinds={"delta"}, deps=["unicycle_targets"])
def commander_labels(context: dg.AssetExecutionContext, config: CommanderLabelsConfig,
                     lake: LakeResource, engine: EngineResource) -> dg.MaterializeResult:
    """A structured trace and a short Commander command per window; each labeler version keeps its rows."""
    key = context.partition_key
    files = chunk_files_from_manifest(lake.read(T.CHUNKS, chunk=key), chunk_id_of(key))
    def launch(command: list[str], extras: dict) -> None:
        # through Dagster Pipes: the worker's log lines and its summary reach this run's events
        dg.PipesSubprocessClient(env={"PYTHONPATH": str(PROJECT)}).run(context=context, command=command, extras=extras)

    labeler = make_labeler(config.labeler, files, vlm_model_dir=config.vlm_model_dir, env_dir=config.labeler_env,
                           workdir=Path(lake.root) / ".labeling" / context.run_id / key, launch=launch)
    # a model labeler stays with its model, on this machine's accelerator; the others go to the engine
    eng = EmbeddedEngine() if labeler.name in MODEL_LABELERS else engine.engine()
    context.log.info(f"engine: {eng.describe()}")
    # the gate is in the data: only clips the index still holds usable, whatever targets exist
    usable = set(lake.read(T.CLIPS, chunk=key, where={"status": "ok"}, columns=["clip_id"]).column("clip_id").to_pylist())
    clips = usable & set(lake.read(T.UNICYCLE_TARGETS, chunk=key, columns=["clip_id"]).column("clip_id").to_pylist())
    out = eng.map_parts(labels_part, LabelPlan(key, files, labeler, labeler.name in IMAGE_LABELERS, config.phrasing_seed),
                        sorted(clips), {"targets": Input(T.UNICYCLE_TARGETS, key)},
                        {"labels": T.COMMANDER_LABELS.schema, "flagged": WINDOW_QUARANTINE}, root=lake.root)
    labels = out["labels"]
    flagged = [(r["clip_id"], "label_failed", f"{labeler.name} {labeler.version} t0={r['t0_us'] / 1e6:.1f} s: {r['reason']}")
               for r in out["flagged"].to_pylist()]
    for row in flagged:
        context.log.warning(f"{key}: window not labeled: {row[2]}")
    version_key = {"stage": f"{STAGE}:{labeler.name}:{labeler.version}"}
    lake.overwrite_partition(T.QUARANTINE, quarantine_rows(key, version_key["stage"], flagged), chunk=key,
                            extra=version_key, engine=eng)
    version = lake.overwrite_partition(T.COMMANDER_LABELS, labels, chunk=key,
                                      extra={"labeler": labeler.name, "labeler_version": labeler.version}, engine=eng)
    commands = Counter(labels.column("command").to_pylist())
    actions = Counter(labels.column("meta_action").to_pylist())
    return dg.MaterializeResult(metadata={
        "labeler": labeler.name, "labeler_version": labeler.version, "windows_labeled": labels.num_rows,
        "windows_flagged": len(flagged), "delta_version": version,
        "meta_actions": dg.MetadataValue.md(_counts_md(actions, "meta-action")),
        "commands": dg.MetadataValue.md(_counts_md(commands, "command")),
        "sample": preview(labels, 8, ["clip_id", "t0_us", "meta_action", "command", "confidence"]),
    })


def _counts_md(counts: Counter, what: str) -> str:
    total = sum(counts.values()) or 1
    rows = "\n".join(f"| {k} | {n} | {100 * n / total:.1f}% |" for k, n in counts.most_common())
    return f"| {what} | windows | share |\n|---|---|---|\n{rows}"
