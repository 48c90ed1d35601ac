"""Acquisition on the twin: new chunks whose scenario mix follows a data request.

The twin stands in for a fleet query ("send me 200 windows of stop-and-go and overtakes"): the
request's scenario shares become clip counts (largest remainder), the clips are shuffled with a
generator seeded by the request and the seed, and written as new chunks numbered from
ACQUIRED_BASE. A plan file per chunk (twin/acquired/) records the scenarios and the request; it
is written before the chunk's data, and a request that was acquired before gets its chunks back
instead of new ones, so a retried acquisition never doubles the data.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.request import DataRequest, allocate
from transforms.twin.world import SCENARIOS
from transforms.twin.writer import (
    ACQUIRED_BASE,
    ACQUIRED_DIR,
    TwinConfig,
    acquired_plan_path,
    chunk_is_written,
    clip_ids,
    write_chunk,
    write_metadata,
)
from transforms.unicycle import window_t0s


@dataclass(frozen=True)
class AcquiredChunk:
    chunk_id: int
    clip_ids: list[str]
    scenarios: list[str]
    request_id: str
    new: bool  # False: the request had been acquired before; these are its chunks


def windows_per_clip(seconds: float) -> int:
    return len(window_t0s(0, int(seconds * 1e6)))


def plan_scenarios(request: DataRequest, clips: int, seed: int) -> list[str]:
    """`clips` scenarios in the request's mix (an even one where it names none), in a shuffled order
    that depends only on the request and the seed."""
    shares = {s: v for s, v in request.scenarios.items() if s in SCENARIOS} or {s: 1.0 for s in SCENARIOS}
    counts = allocate(shares, clips)
    order = [s for s in sorted(counts) for _ in range(counts[s])]
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{request.request_id}/{seed}".encode()).digest()[:8],
                                               "little"))
    return [order[i] for i in rng.permutation(len(order))]


def _existing(root: Path, request_id: str) -> list[dict]:
    folder = root / ACQUIRED_DIR
    plans = [json.loads(p.read_text()) for p in sorted(folder.glob("chunk_*.json"))] if folder.is_dir() else []
    return [p for p in plans if p["request_id"] == request_id]


def acquire_twin(root: str | Path, cfg: TwinConfig, request: DataRequest, *, seed: int = 0,
                 clips: int | None = None) -> list[AcquiredChunk]:
    """Write the chunks that answer `request` into the twin at `root` (clips: enough for its windows)."""
    root = Path(root)
    if unknown := [s for s in request.scenarios if s not in SCENARIOS]:
        raise ValueError(f"request {request.request_id} asks for scenarios {unknown} the twin does not simulate; "
                         f"it knows {list(SCENARIOS)}")
    done = _existing(root, request.request_id)
    new = not done
    if new:
        n = clips if clips is not None else math.ceil(request.windows / windows_per_clip(cfg.seconds))
        if n < 1:
            raise ValueError(f"request {request.request_id} asks for {request.windows} windows: nothing to acquire")
        scenarios = plan_scenarios(request, n, seed)
        taken = [int(p.stem.split("_")[1]) for p in (root / ACQUIRED_DIR).glob("chunk_*.json")] \
            if (root / ACQUIRED_DIR).is_dir() else []
        first = max([ACQUIRED_BASE - 1, *taken]) + 1
        size = cfg.clips_per_chunk
        for k in range(0, n, size):
            plan = {"chunk": first + k // size, "scenarios": scenarios[k:k + size], "request_id": request.request_id,
                    "seed": seed}
            path = root / acquired_plan_path(plan["chunk"])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(plan, indent=1))
            tmp.replace(path)
            done.append(plan)
    write_metadata(root, cfg)  # the clip index now lists the acquired clips
    ids = clip_ids(cfg, {int(p["chunk"]): p["scenarios"] for p in done})
    out = []
    for p in done:
        chunk = int(p["chunk"])
        if not chunk_is_written(root, chunk):
            write_chunk(root, cfg, chunk)
        out.append(AcquiredChunk(chunk, ids[chunk], list(p["scenarios"]), request.request_id, new))
    return out


def acquisition_rows(acquired: list[AcquiredChunk], request: DataRequest, *, acquired_us: int,
                     seconds: float) -> list[dict]:
    """`acquisitions` rows (lake.tables.ACQUISITIONS): one per acquired clip, with its scenario and
    the request's share of it as the match score."""
    from transforms.pai_layout import chunk_key

    n = windows_per_clip(seconds)
    return [{"request_id": request.request_id, "run_id": request.run_id, "method": "twin", "source": "twin",
             "chunk": chunk_key(a.chunk_id), "clip_id": clip, "scenario": sc, "meta_actions": None,
             "match_score": request.scenarios.get(sc, 0.0) * max(len(request.scenarios), 1), "windows": n,
             "bytes_fetched": None, "bytes_whole": None,
             "note": "acquired before for this request" if not a.new else None, "acquired_us": acquired_us}
            for a in acquired for clip, sc in zip(a.clip_ids, a.scenarios, strict=True)]
