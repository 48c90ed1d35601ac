"""Dagster code location of the AV data flywheel (`dagster ... -m dagster_project`)."""

from dagster_project.definitions import defs

__all__ = ["defs"]
