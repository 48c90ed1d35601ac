"""WebDataset export and loading, each against its floor, measured in one run:

- export frames/s vs decoding the same frames with PyAV alone (goal >= 0.7x);
- loader samples/s vs reading the tars and decoding the JPEGs (and arrays) by hand (goal >= 0.8x).

    python -m benchmarks.bench_shards [--clips 16] [--out benchmarks/out/shards]
"""

from __future__ import annotations

import argparse
import io
import shutil
import tarfile
import time
import zipfile
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from labelers.build import label_windows, window_contexts
from labelers.kinematic import KinematicLabeler
from trainers.data import make_loader
from transforms import pai_layout as L
from transforms.index import index_chunk
from transforms.shards import ShardConfig, export_shards, windows_for_chunk
from transforms.source import mirror_source
from transforms.twin.truth import load_twin_gt
from transforms.twin.writer import TwinConfig, write_twin


def decode_only(files, windows) -> int:
    """The floor: PyAV decodes each clip up to its last needed frame and converts the needed ones."""
    n = 0
    feat = files.features[L.FRONT_CAMERA]
    with zipfile.ZipFile(files.feature_path(L.FRONT_CAMERA)) as zf:
        by_clip: dict[str, list[int]] = {}
        for w in windows:
            by_clip.setdefault(w.clip_id, []).append(w.t0_us)
        for clip, t0s in by_clip.items():
            names = feat.members(clip)
            times = pq.read_table(io.BytesIO(zf.read(names["frame_timestamps"]))).column("timestamp").to_numpy()
            need = set((np.searchsorted(times, np.array(t0s), side="right") - 1).tolist())
            with av.open(io.BytesIO(zf.read(names["video"]))) as c:
                for i, frame in enumerate(c.decode(video=0)):
                    if i in need:
                        frame.to_ndarray(format="rgb24")
                        n += 1
                    if i >= max(need):
                        break
    return n


def read_by_hand(urls: list[str]) -> int:
    n = 0
    for u in urls:
        with tarfile.open(u) as tf:
            for m in tf:
                data = tf.extractfile(m).read()
                if m.name.endswith(".jpg"):
                    np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                    n += 1
                elif m.name.endswith(".npy"):
                    np.load(io.BytesIO(data))
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--out", default="benchmarks/out/shards")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    root = write_twin(Path(args.out) / "twin", TwinConfig(chunks=1, clips_per_chunk=args.clips, seed=3, width=256,
                                                            height=144, seconds=20.0))
    files = mirror_source(root).fetch_chunk(0)
    ix = index_chunk(files, chunk="chunk_0000")
    from transforms.unicycle import targets_for_chunk

    targets = targets_for_chunk(ix.egomotion, ix.clips, chunk="chunk_0000").table
    labels = label_windows(KinematicLabeler(), window_contexts(targets, load_twin_gt(files)), chunk="chunk_0000").table
    windows = windows_for_chunk(targets, labels, ix.egomotion, chunk="chunk_0000")
    shards = Path(args.out) / "shards"
    best_dec, best_exp = np.inf, np.inf
    for _ in range(args.repeat):
        t = time.perf_counter()
        n = decode_only(files, windows)
        best_dec = min(best_dec, (time.perf_counter() - t) / n)
        shutil.rmtree(shards, ignore_errors=True)
        t = time.perf_counter()
        res = export_shards(files, windows, shards, ShardConfig(), chunk="chunk_0000", version="bench")
        best_exp = min(best_exp, (time.perf_counter() - t) / res.frames_decoded)
    ratio = best_dec / best_exp
    print(f"export: {1 / best_exp:.0f} frames/s ({len(windows)} windows, {len(res.shards)} shards); PyAV decode only: "
          f"{1 / best_dec:.0f} frames/s; ratio {ratio:.2f}x (goal >= 0.7x) -> {'PASS' if ratio >= 0.7 else 'FAIL'}")
    urls = sorted(str(p) for p in shards.rglob("*.tar"))
    best_raw, best_ld = np.inf, np.inf
    for _ in range(args.repeat):
        t = time.perf_counter()
        n = read_by_hand(urls)
        best_raw = min(best_raw, (time.perf_counter() - t) / n)
        t = time.perf_counter()
        m = sum(len(b["key"]) for b in make_loader(urls, batch_size=16, num_workers=0, shuffle_buffer=200))
        best_ld = min(best_ld, (time.perf_counter() - t) / m)
    ratio = best_raw / best_ld
    print(f"loader: {1 / best_ld:.0f} samples/s (batches of 16, shuffle buffer 200, decode + tensors); tar + JPEG by "
          f"hand: {1 / best_raw:.0f} samples/s; ratio {ratio:.2f}x (goal >= 0.8x) -> {'PASS' if ratio >= 0.8 else 'FAIL'}")


if __name__ == "__main__":
    main()
