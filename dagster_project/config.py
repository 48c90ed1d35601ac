"""Dagster `Config` classes derived from the stages' config dataclasses (core/config.py).

`derived_config(TrainConfig, TrainData)` is the launchpad form of those dataclasses: the same
fields, defaults and descriptions. Nothing here declares a knob of its own.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pydantic

from core.config import build, knobs


def derived_config(*dcs: type, name: str, doc: str, exclude: tuple[str, ...] = ()) -> type[dg.Config]:
    """A `dg.Config` with the fields of the dataclasses `dcs` (in order), less `exclude`."""
    fields: dict[str, Any] = {}
    for dc in dcs:
        for k in knobs(dc, exclude=tuple(e for e in exclude if e in dc.__dataclass_fields__)):
            if k.name in fields:
                raise ValueError(f"{name}: field {k.name!r} is declared by two of {[d.__name__ for d in dcs]}")
            help_ = k.help or None
            default = pydantic.Field(default_factory=lambda d=k.default: list(d), description=help_) if k.many else \
                pydantic.Field(default=k.default, description=help_)
            fields[k.name] = (k.annotation, default)
    return pydantic.create_model(name, __base__=dg.Config, __doc__=doc, __module__=__name__, **fields)


def to_dataclass[T](config: dg.Config, dc: type[T], **overrides: Any) -> T:
    """The dataclass `dc` from a derived config's values (its own fields only)."""
    return build(dc, {**config.model_dump(), **overrides})
