"""The flywheel's code location: assets, partitions, discovery, resources per deployment."""

from __future__ import annotations

import os
from functools import partial

import dagster as dg

from dagster_project.assets import evaluation, flywheel, ingest, labels, qa, shards, targets, training
from dagster_project.checks import qa_checks
from dagster_project.resources import resources_from_env
from dagster_project.schedules import incremental_backfill
from dagster_project.sensors import flywheel_turn, new_chunks

DEPLOYMENT = os.environ.get("FLYWHEEL_DEPLOYMENT", "local")
# Both read the FLYWHEEL_* environment. `local`: twin source and the embedded engine by default;
# `cluster`: the Spark engine by default, and its pods set FLYWHEEL_SOURCE=hub, FLYWHEEL_LAKE, ...
RESOURCES_BY_DEPLOYMENT = {"local": resources_from_env, "cluster": partial(resources_from_env, engine="spark")}
if DEPLOYMENT not in RESOURCES_BY_DEPLOYMENT:
    raise ValueError(f"FLYWHEEL_DEPLOYMENT={DEPLOYMENT!r}: choose one of {sorted(RESOURCES_BY_DEPLOYMENT)}")

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest, targets, labels, shards, training, evaluation, flywheel, qa]),
    asset_checks=qa_checks,
    schedules=[incremental_backfill],
    sensors=[new_chunks, flywheel_turn],
    resources=RESOURCES_BY_DEPLOYMENT[DEPLOYMENT](),
)
