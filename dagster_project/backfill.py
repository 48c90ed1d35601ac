"""Which chunk partitions an incremental backfill must (re)run, and which of their assets: pure logic.

A partition's asset needs a run when it was never materialized, when the source's revision is not
the one its raw files came from, or when an upstream asset of the same partition was materialized
after it (a re-fetch, a relabel, a fix) — and then so does everything downstream of it.
"""

from __future__ import annotations

import hashlib
import json
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


@dataclass(frozen=True)
class TurnDue:
    due: bool
    new_windows: int  # training windows in the shards now, beyond those the last run trained on
    why: str
    data_key: str  # identifies the data a turn would train on (a run key: one turn per state)


def turn_due(manifest: Sequence[Mapping], runs: Sequence[Mapping], *, min_windows: int) -> TurnDue:
    """Whether the flywheel should turn: enough new training windows since the last training run.

    `manifest`: shard_manifest rows; `runs`: training_runs rows (their config records the training
    windows they read, `train_samples`). The label set counted is the last run's, else the largest.
    """
    last = max(runs, key=lambda r: r["finished_us"]) if runs else None
    trained = json.loads(str(last["config"])) if last else {}
    sets: dict[tuple[str, str], list[Mapping]] = {}
    for r in manifest:
        sets.setdefault((r["labeler"] or "", r["labeler_version"] or ""), []).append(r)
    if not sets:
        return TurnDue(False, 0, "no shards yet: ingest chunks first (the new_chunks sensor and incremental_backfill)", "")
    key = (trained.get("labeler", ""), trained.get("labeler_version", ""))
    rows = sets.get(key) or max(sets.values(), key=lambda rs: sum(r["samples"] for r in rs if r["split"] == "train"))
    now = sum(r["samples"] for r in rows if r["split"] == "train")
    before = int(trained.get("train_samples", 0))
    new = now - before
    data_key = hashlib.sha256(json.dumps(sorted((r["path"], r["sha256"]) for r in rows)).encode()).hexdigest()[:16]
    since = f"since run {last['run_id']} ({before} windows)" if last else "and no run yet"
    if new < min_windows:
        return TurnDue(False, new, f"{new} new training windows {since}; a turn starts at {min_windows} "
                                   "(FLYWHEEL_RETRAIN_MIN_WINDOWS)", data_key)
    return TurnDue(True, new, f"{new} new training windows {since} >= {min_windows}", data_key)
