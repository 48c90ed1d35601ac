"""Which chunk partitions an incremental backfill must (re)run, and which of their assets: pure logic.

A partition's asset needs a run when it was never materialized, when the source's revision is not
the one its raw files came from, or when an upstream asset of the same partition was materialized
after it (a re-fetch, a relabel, a fix) — and then so does everything downstream of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Materialized:
    timestamp: float  # seconds since the epoch
    revision: str | None = None  # raw_chunks only: the source revision its files came from


def stale_assets(order: Sequence[str], deps: Mapping[str, Sequence[str]], latest: Mapping[str, Materialized | None],
                 *, source_revision: str | None, root: str = "raw_chunks") -> dict[str, str]:
    """Assets of one partition to run, each with why, in `order` (a topological order of the assets).

    `deps` maps an asset to its upstream assets within `order`; `latest` to its latest materialization.
    """
    why: dict[str, str] = {}
    for asset in order:
        mat, ups = latest.get(asset), [u for u in deps.get(asset, ()) if u in order]
        if mat is None:
            why[asset] = "never materialized"
        elif asset == root and source_revision and mat.revision and mat.revision != source_revision:
            why[asset] = f"source revision changed ({mat.revision} -> {source_revision})"
        elif rerun := [u for u in ups if u in why]:
            why[asset] = f"upstream {rerun[0]} runs"
        elif newer := [u for u in ups if (m := latest.get(u)) and m.timestamp > mat.timestamp]:
            why[asset] = f"upstream {newer[0]} changed after it"
    return why


def with_execution_sets(assets: Sequence[str], sets: Sequence[frozenset[str]]) -> list[str]:
    """Add the assets that must run together with the selected ones (one op, like chunk_index's three)."""
    out = set(assets)
    for group in sets:
        if out & group:
            out |= group
    return sorted(out)
