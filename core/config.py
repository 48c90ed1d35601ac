"""One declaration per config: a frozen dataclass whose fields carry their help.

A stage's config is declared once, as a frozen dataclass next to the code it configures, each field
with `knob(default, help)`. The Dagster `Config` an operator edits in the launchpad
(dagster_project/config.py) and the CLI's flags (flywheel/cli.py) are derived from it, so a default
or a description changes in one place.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

SCALARS = (bool, int, float, str)


def knob(default: Any, help: str) -> Any:
    """A config field with its default and what it means (shown in the launchpad and in --help)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Knob:
    """One field of a config dataclass, its type taken apart for the derived forms."""

    name: str
    scalar: type  # bool, int, float or str (a list's item type for `many`)
    default: Any
    help: str
    optional: bool = False  # None is allowed (it means "the preset", say)
    many: bool = False  # a tuple of scalars (a list in the launchpad, nargs on the CLI)
    choices: tuple[Any, ...] = ()  # from a Literal

    @property
    def annotation(self) -> Any:
        """The field's type as the Dagster Config declares it (lists, not tuples)."""
        base: Any = Literal[self.choices] if self.choices else self.scalar
        if self.many:
            base = list[base]
        return base | None if self.optional else base


def _unpack(name: str, hint: Any) -> tuple[type, bool, bool, tuple[Any, ...]]:
    optional, many, choices = False, False, ()
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        optional = True
        (hint,) = [a for a in args if a is not type(None)]
        args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        many, hint = True, args[0]
        args = typing.get_args(hint)
    if typing.get_origin(hint) is Literal:
        choices, hint = args, type(args[0])
    if hint not in SCALARS:
        raise TypeError(f"config field {name!r}: type {hint!r} is not one of bool, int, float, str (or a tuple or "
                        "Literal of them): declare it as one, or keep it out of the derived config")
    return hint, optional, many, choices


def knobs(dc: type, *, exclude: tuple[str, ...] = ()) -> list[Knob]:
    """The fields of config dataclass `dc`, in declaration order, less `exclude`."""
    unknown = set(exclude) - {f.name for f in dataclasses.fields(dc)}
    if unknown:
        raise ValueError(f"{dc.__name__} has no fields {sorted(unknown)} to exclude")
    hints = typing.get_type_hints(dc)
    out = []
    for f in dataclasses.fields(dc):
        if f.name in exclude:
            continue
        scalar, optional, many, choices = _unpack(f.name, hints[f.name])
        out.append(Knob(f.name, scalar, f.default, f.metadata.get("help", ""), optional, many, choices))
    return out


def build(dc: type, values: dict[str, Any]) -> Any:
    """An instance of `dc` from derived values (lists back to tuples); fields not given keep their default."""
    fields = {k.name: k for k in knobs(dc)}
    return dc(**{k: tuple(v) if fields[k].many and v is not None else v for k, v in values.items() if k in fields})
