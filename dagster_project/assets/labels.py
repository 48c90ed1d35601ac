"""Gold: Commander labels per window (a trace and a command), versioned by labeler."""

from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg

from dagster_project.assets._meta import preview, sheet
from dagster_project.config import derived_config
from dagster_project.resources import LakeResource
from dagster_project.stages import chunk_asset
from engines import EmbeddedEngine, Engine
from engines.stage import StageJob, StageRun
from labelers.build import LABELS_STAGE, LabelPlan
from labelers.keyframes import KeyframeLabeler
from labelers.registry import IMAGE_LABELERS, MODEL_LABELERS, PROJECT, LabelConfig, make_labeler
from lake import tables as T
from transforms.pai_layout import chunk_id_of
from transforms.previews import chunk_sheet, label_picks
from transforms.source import chunk_files_from_manifest

CommanderLabelsConfig = derived_config(
    LabelConfig, name="CommanderLabelsConfig", doc="The labeling run: labelers/registry.py declares every field.")


def _job(context: dg.AssetExecutionContext, lake: LakeResource, key: str,
         config: Any) -> tuple[StageJob, Engine | None]:
    files = chunk_files_from_manifest(lake.read(T.CHUNKS, chunk=key), chunk_id_of(key))

    def launch(command: list[str], extras: dict) -> None:
        # through Dagster Pipes: the worker's log lines and its summary reach this run's events
        dg.PipesSubprocessClient(env={"PYTHONPATH": str(PROJECT)}).run(context=context, command=command, extras=extras)

    labeler = make_labeler(config.labeler, files, vlm_model_dir=config.vlm_model_dir, env_dir=config.labeler_env,
                           workdir=Path(lake.root) / ".labeling" / context.run_id / key, launch=launch,
                           workers=config.workers, jobs_dir=Path(lake.root) / ".labeling" / "sharded" / key,
                           log=context.log.info)
    if config.keyframes:
        labeler = KeyframeLabeler(labeler)
    # the gate is in the data: only clips the index still holds usable, whatever targets exist
    usable = set(lake.read(T.CLIPS, chunk=key, where={"status": "ok"}, columns=["clip_id"]).column("clip_id").to_pylist())
    clips = usable & set(lake.read(T.UNICYCLE_TARGETS, chunk=key, columns=["clip_id"]).column("clip_id").to_pylist())
    plan = LabelPlan(key, files, labeler, labeler.name in IMAGE_LABELERS, config.phrasing_seed)
    # a model labeler stays with its model, on this machine's accelerator; the others go to the engine
    return StageJob(plan, sorted(clips), extra=plan.job_keys()), EmbeddedEngine() if labeler.name in MODEL_LABELERS else None


def _summary(key: str, run: StageRun, job: StageJob) -> dict[str, Any]:
    labels, labeler = run.outputs["labels"], job.plan.labeler  # type: ignore[attr-defined]
    carried = sum('"carried_from_t0_us"' in t for t in labels.column("trace").to_pylist())
    return {
        "labeler": labeler.name, "labeler_version": labeler.version, "windows_labeled": labels.num_rows,
        "windows_flagged": run.quarantine.num_rows, "delta_version": run.versions[T.COMMANDER_LABELS.name],
        "windows_carried_from_keyframes": carried,
        "meta_actions": dg.MetadataValue.md(_counts_md(Counter(labels.column("meta_action").to_pylist()), "meta-action")),
        "commands": dg.MetadataValue.md(_counts_md(Counter(labels.column("command").to_pylist()), "command")),
        "sample": preview(labels, 8, ["clip_id", "t0_us", "meta_action", "command", "confidence"]),
        "contact_sheet": sheet(chunk_sheet(job.plan.files, label_picks(labels),  # type: ignore[attr-defined]
                                           f"{key}: commands of {labeler.name} {labeler.version}, one per meta-action"),
                               "labeled windows"),
    }


commander_labels, commander_labels_checks = chunk_asset(
    LABELS_STAGE, group="labels", deps=["unicycle_targets"], job=_job, summary=_summary, config=CommanderLabelsConfig,
    description="A structured trace and a short Commander command per window; each labeler version keeps its rows.")


def _counts_md(counts: Counter, what: str) -> str:
    total = sum(counts.values()) or 1
    rows = "\n".join(f"| {k} | {n} | {100 * n / total:.1f}% |" for k, n in counts.most_common())
    return f"| {what} | windows | share |\n|---|---|---|\n{rows}"
