"""Pictures of the data for the assets' metadata: which frames a contact sheet shows, and the sheet.

Each sheet is a few camera frames with what a researcher checks them against: the clip and time
(`frames`), the command the labeler gave (`commander_labels`), the command and speed a training
sample carries (`webdataset_shards`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from transforms.plots import contact_sheet_png
from transforms.shards import front_frames
from transforms.source import ChunkFiles

SHEET_FRAMES = 8


def frame_picks(frames: pa.Table, n: int = SHEET_FRAMES) -> list[tuple[str, int, str]]:
    """(clip_id, timestamp, caption) of n frames: two per clip (a quarter and three quarters in) over as
    many clips as it takes, so a sheet shows both the variety of clips and motion within one."""
    rows = frames.select(["clip_id", "timestamp_us", "speed_mps"]).to_pylist()
    by_clip: dict[str, list[dict]] = {}
    for r in rows:
        by_clip.setdefault(r["clip_id"], []).append(r)
    picks = []
    for clip in sorted(by_clip):
        rs = sorted(by_clip[clip], key=lambda r: r["timestamp_us"])
        t_start = rs[0]["timestamp_us"]
        for q in (0.25, 0.75):
            r = rs[int(q * (len(rs) - 1))]
            speed = f", {r['speed_mps']:.1f} m/s" if r["speed_mps"] is not None else ""
            picks.append((clip, int(r["timestamp_us"]), f"{clip[:8]}  t={(r['timestamp_us'] - t_start) / 1e6:.1f} s{speed}"))
        if len(picks) >= n:
            break
    return picks[:n]


def label_picks(labels: pa.Table, n: int = SHEET_FRAMES) -> list[tuple[str, int, str]]:
    """(clip_id, t0, caption) of n labeled windows, one per meta-action first (the rarest are the ones to
    check), then more of the commonest; the caption is the command and the meta-action."""
    rows = sorted(labels.select(["clip_id", "t0_us", "meta_action", "command"]).to_pylist(),
                  key=lambda r: (r["clip_id"], r["t0_us"]))
    by_action: dict[str, list[dict]] = {}
    for r in rows:
        by_action.setdefault(str(r["meta_action"]), []).append(r)
    order = sorted(by_action, key=lambda a: len(by_action[a]))
    rng = np.random.default_rng(0)  # the same windows every run of the same labels
    shuffled = {a: [by_action[a][i] for i in rng.permutation(len(by_action[a]))] for a in order}
    picked = [shuffled[a][depth] for depth in range(n) for a in order if depth < len(shuffled[a])][:n]
    return [(r["clip_id"], int(r["t0_us"]), f"\"{r['command']}\"\n{r['meta_action']}  {r['clip_id'][:8]} "
             f"t0={r['t0_us'] / 1e6:.1f} s") for r in picked]


def chunk_sheet(files: ChunkFiles, picks: Sequence[tuple[str, int, str]], title: str) -> bytes | None:
    """The picks' front-camera frames as a contact sheet (None when no frame could be decoded)."""
    frames = front_frames(files, [(c, t) for c, t, _ in picks])
    got = [(frames[(c, t)], cap) for c, t, cap in picks if (c, t) in frames]
    if not got:
        return None
    return contact_sheet_png([g[0] for g in got], [g[1] for g in got], title=title)


def shard_sheet(paths: Sequence[str], title: str, n: int = SHEET_FRAMES) -> bytes | None:
    """n training samples spread over the shards' first samples, as the agent sees them: the image, the
    command (its task) and the speed in its state."""
    import tarfile

    from PIL import Image

    samples: dict[str, dict[str, bytes]] = {}
    for path in paths:
        with tarfile.open(path) as tar:
            for m in tar:
                key, _, ext = m.name.partition(".")
                if ext in ("jpg", "json") and m.isfile():
                    samples.setdefault(key, {})[ext] = tar.extractfile(m).read()  # type: ignore[union-attr]
        if len(samples) >= 20 * n:
            break
    keys = [k for k in samples if {"jpg", "json"} <= set(samples[k])]
    if not keys:
        return None
    picked = [keys[i] for i in np.linspace(0, len(keys) - 1, min(n, len(keys))).round().astype(int)]
    images, captions = [], []
    for k in picked:
        meta = json.loads(samples[k]["json"])
        images.append(np.asarray(Image.open(io.BytesIO(samples[k]["jpg"])).convert("RGB")))
        captions.append(f"\"{meta['command']}\"\n{meta['split']}  {meta['clip_id'][:8]} t0={int(meta['t0_us']) / 1e6:.1f} s, "
                        f"v={meta['state']['v_mps']:.1f} m/s")
    return contact_sheet_png(images, captions, title=title)
