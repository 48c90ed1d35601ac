"""Index time of a 100-clip twin chunk vs only reading the same parquet members (goal <= 2x).

Both sides run in this one process on the same files, so the ratio is what counts, not seconds.
The image size barely matters to indexing (the mp4 is only opened and its first frame decoded),
so the chunk is rendered small to keep generation short.

    python -m benchmarks.bench_index [--clips 100] [--out benchmarks/out/index]
"""

from __future__ import annotations

import argparse
import io
import time
import zipfile
from pathlib import Path

import pyarrow.parquet as pq

from transforms import pai_layout as L
from transforms.index import INDEX_WORKERS, index_chunk
from transforms.source import mirror_source
from transforms.twin.writer import TwinConfig, write_twin

GOAL = 2.0


def read_parquet_members(files_zip: dict[str, Path], clip_ids: list[str]) -> int:
    """The floor: open both zips, read each clip's egomotion and frame-timestamp parquet members."""
    rows = 0
    with zipfile.ZipFile(files_zip["ego"]) as ego, zipfile.ZipFile(files_zip["cam"]) as cam:
        for cid in clip_ids:
            rows += pq.read_table(io.BytesIO(ego.read(L.FEATURES[L.EGOMOTION].members(cid)["egomotion"]))).num_rows
            rows += pq.read_table(io.BytesIO(cam.read(L.FEATURES[L.FRONT_CAMERA].members(cid)["frame_timestamps"]))).num_rows
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--out", default="benchmarks/out/index")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cfg = TwinConfig(chunks=1, clips_per_chunk=args.clips, seed=11, width=64, height=48, seconds=20.0)
    t = time.perf_counter()
    root = write_twin(Path(args.out), cfg)
    print(f"twin chunk of {args.clips} clips ready in {time.perf_counter() - t:.0f} s ({root})")
    files = mirror_source(root).fetch_chunk(0)
    zips = {"ego": files.feature_path(L.EGOMOTION), "cam": files.feature_path(L.FRONT_CAMERA)}
    import pandas as pd

    ci = pd.read_parquet(root / "clip_index.parquet")
    clip_ids = sorted(ci.index[ci["chunk"] == 0])
    best = {"read": float("inf"), "index_1": float("inf"), f"index_{INDEX_WORKERS}": float("inf")}
    for _ in range(args.repeat):  # interleaved, best of n: every side sees the same machine noise
        t = time.perf_counter()
        read_parquet_members(zips, clip_ids)
        best["read"] = min(best["read"], time.perf_counter() - t)
        for workers in (1, INDEX_WORKERS):
            t = time.perf_counter()
            ix = index_chunk(files, chunk="chunk_0000", workers=workers)
            best[f"index_{workers}"] = min(best[f"index_{workers}"], time.perf_counter() - t)
    print(f"index {ix.counts()['clips_ok']} clips -> {ix.egomotion.num_rows} poses, {ix.frames.num_rows} frames; "
          f"reading the parquet members alone (1 thread): {best['read']:.3f} s")
    for workers in (1, INDEX_WORKERS):
        ratio = best[f"index_{workers}"] / best["read"]
        verdict = "PASS" if ratio <= GOAL else "FAIL"
        print(f"index_chunk({workers} thread{'s' if workers > 1 else ''}) / read-parquet-members = {ratio:.2f}x "
              f"(goal <= {GOAL}x) -> {verdict}")


if __name__ == "__main__":
    main()
