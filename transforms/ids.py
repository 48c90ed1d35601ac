"""Identifiers that data carries and that can reach a file path, a tar member, a predicate or a key.

Data chooses none of them freely. Every value is checked where it enters (the index, the source,
the partition key) against one rule here, and a bad one becomes a quarantine row naming it; paths
are then built through `inside`, which refuses to leave its root even if a check was missed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

# PAI's clip ids are lowercase UUIDs (docs/references.md, *PAI layout*); the twin writes UUID4s.
CLIP_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DATA_SPLITS = ("train", "val", "test")  # what PAI's clip_index assigns
BENCHMARK_SPLIT = "benchmark"  # the held-out twin's only split (evals/benchmark.py)
SPLITS = (*DATA_SPLITS, BENCHMARK_SPLIT)
SAMPLE_KEY_RE = re.compile(r"^[0-9A-Za-z_-]{1,200}$")  # webdataset keys: no dots, no slashes


class UnsafePathError(ValueError):
    """A path built from data would leave its root."""


def clip_id_problem(value: object) -> str | None:
    """Why `value` cannot be a clip id, or None when it is one."""
    if isinstance(value, str) and CLIP_ID_RE.match(value):
        return None
    return f"clip id {value!r} is not a lowercase UUID (PAI's clip ids are, e.g. '25cd4769-5dcf-4b53-a351-bf2c5deb6124')"


def split_problem(value: object) -> str | None:
    """Why `value` cannot be a split, or None when it is one."""
    if isinstance(value, str) and value in SPLITS:
        return None
    return f"split {value!r} is not one of {list(SPLITS)}"


def check_split(value: object) -> str:
    if (why := split_problem(value)) is not None:
        raise ValueError(why)
    return str(value)


def check_sample_key(key: str) -> str:
    if not SAMPLE_KEY_RE.match(key):
        raise UnsafePathError(f"sample key {key!r} may only hold letters, digits, '_' and '-': it names tar members")
    return key


def relative_path_problem(rel: str) -> str | None:
    """Why `rel` is not a plain relative path below its root (absolute, '..', backslash, NUL), or None."""
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel or "\x00" in rel or ":" in rel:
        return f"path {rel!r} must be relative and stay below its root (no leading '/', no '..' part, no '\\', ':' or NUL)"
    return None


def inside(root: str | Path, rel: str) -> Path:
    """`root / rel`, refusing any `rel` that is absolute or climbs with '..'.

    The check is on the string, not on resolved links: an HF cache snapshot is a tree of symlinks
    into its blobs folder, and those links are the dataset's own layout, not data's choice.
    """
    if (why := relative_path_problem(rel)) is not None:
        raise UnsafePathError(f"{why}; root {root}")
    out = Path(root) / rel
    if os.path.normpath(out) != os.path.normpath(root) and not os.path.normpath(out).startswith(
            os.path.join(os.path.normpath(root), "")):
        raise UnsafePathError(f"path {rel!r} leaves its root {root}")
    return out
