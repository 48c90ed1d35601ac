"""Which labels a downstream stage reads when it is not told: "the latest labels in the lake".

Rows of `commander_labels` and of `shard_manifest` carry (labeler, labeler_version). A stage that
names neither takes the one label set its input holds; where several match, the one the caller
knows to be the latest (`prefer`: the last labeling run of the chunk); else it stops and names them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

LabelSet = tuple[str, str]  # (labeler, labeler_version)


def label_set(rows: Sequence[dict[str, Any]], *, labeler: str = "", labeler_version: str = "", what: str,
              hint: str, prefer: LabelSet | None = None) -> LabelSet:
    """The one (labeler, labeler_version) of `rows` that matches the given ones; empty matches any.

    Empty and empty is "the labels the data holds now", so a relabel flows on without naming it.
    Rows of two label sets that both match resolve to `prefer` when it is one of them, else they
    are an error naming them, never a silent mix. `hint` says how to get the missing labels.
    """
    have = sorted({(r["labeler"], r["labeler_version"]) for r in rows})
    match = [p for p in have if labeler in ("", p[0]) and labeler_version in ("", p[1])]
    wanted = f"{labeler or 'any labeler'} {labeler_version or '(any version)'}"
    if not match:
        raise ValueError(f"no rows labelled by {wanted} in {what} (it has {have or 'none'}): {hint}")
    if len(match) > 1 and prefer in match:
        return prefer
    if len(match) > 1:
        chunks = {p: sorted({r["chunk"] for r in rows if (r["labeler"], r["labeler_version"]) == p}) for p in match}
        raise ValueError(f"{what} holds {len(match)} label sets matching {wanted}: "
                         + "; ".join(f"{a} {v} ({len(c)} chunks, e.g. {c[0]})" for (a, v), c in chunks.items())
                         + ". Name one (labeler, labeler_version)")
    return match[0]
