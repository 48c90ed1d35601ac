"""Egomotion-first triage on a twin laid out like real PAI (100 clips per chunk): bytes read against a
whole-chunk download, and how well the chosen clips match the request against a random pick.

The twin is written once under --out (its config in a stamp), as a plain mirror and as an HF cache
read offline through the official reader; triage (labelers/triage.py) reads every chunk's
egomotion and calibration, ranks the clips by a request (default: the twin's hardest behaviours
for the agent, stopping, pulling away and overtaking), and reads the chosen clips' camera members
only. Printed: bytes per part, the ratio whole / fetched (the saving), the same selection costed
at real PAI's sizes (docs/references.md: ~2 GB of front camera and ~40 MB of egomotion per chunk of
100 clips), and the chosen clips' match score and scenarios against a random pick of as many.

    python -m benchmarks.bench_triage [--out benchmarks/out/triage] [--clips-per-chunk 100] [--pick 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from core.request import DataRequest
from labelers.triage import official_reader, triage, write_chosen
from transforms.source import write_hf_cache
from transforms.twin.writer import TwinConfig, write_twin

REAL_CAMERA_CHUNK_B = 2e9  # front-wide camera zip of a 100-clip PAI chunk
REAL_EGOMOTION_CHUNK_B = 40e6
REV = "1" * 40
REQUEST = DataRequest(250, meta_actions={"stop": 1.0, "go": 1.0, "overtake_left": 1.0, "slow_down": 0.5})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/out/triage")
    ap.add_argument("--clips-per-chunk", type=int, default=100)
    ap.add_argument("--chunks", type=int, default=1)
    ap.add_argument("--pick", type=int, default=10, help="clips to choose (a turn's budget)")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--height", type=int, default=144)
    a = ap.parse_args()
    out = Path(a.out)
    cfg = TwinConfig(chunks=a.chunks, clips_per_chunk=a.clips_per_chunk, seed=5, width=a.width, height=a.height)
    t0 = time.perf_counter()
    mirror = write_twin(out / "mirror", cfg)
    print(f"twin: {cfg.chunks} x {cfg.clips_per_chunk} clips at {cfg.width}x{cfg.height} ready in "
          f"{time.perf_counter() - t0:.0f} s")
    truth = pd.concat(pd.read_parquet(p) for p in sorted((mirror / "twin/scenario").glob("*.parquet")))
    scenario = dict(zip(truth["clip_id"], truth["scenario"], strict=True))
    results = {}
    for name in ("mirror", "hf_cache"):
        if name == "hf_cache":
            os.environ["HF_HUB_OFFLINE"] = "1"
            import huggingface_hub.constants as hc

            hc.HF_HUB_OFFLINE = True
            cache = out / "hf"
            if not cache.exists():
                write_hf_cache(mirror, cache, REV)
            reader = official_reader(cache, revision=REV)
        else:
            reader = official_reader(mirror)
        into = out / f"into_{name}"
        shutil.rmtree(into, ignore_errors=True)
        t = time.perf_counter()
        res = triage(reader, REQUEST, exclude=set(), clips=a.pick, max_chunks=a.chunks, log_fn=lambda s: None)
        write_chosen(reader, res, into)
        results[name] = (res, time.perf_counter() - t)
    res, secs = results["mirror"]
    assert [c.clip_id for c in res.chosen] == [c.clip_id for c in results["hf_cache"][0].chosen]
    fetched, whole = sum(res.bytes_fetched.values()), sum(res.bytes_whole.values())
    members = sum(res.member_bytes.values())
    print(f"\ntriage of {len(res.triaged)} clips, {len(res.chosen)} chosen ({secs:.1f} s from the mirror, "
          f"{results['hf_cache'][1]:.1f} s through the official reader over the HF cache; same clips):")
    print("| part | bytes |\n|---|---:|")
    print(f"| egomotion + calibration of every triaged chunk | {fetched - members:,} |")
    print(f"| camera members of the {len(res.chosen)} chosen clips | {members:,} |")
    print(f"| **fetched** | **{fetched:,}** |")
    print(f"| whole chunks (camera + egomotion + calibration) | {whole:,} |")
    print(f"\nsaving on this twin: whole / fetched = {whole / fetched:.1f}x")
    n, k = a.clips_per_chunk * a.chunks, len(res.chosen)
    real_fetched = REAL_EGOMOTION_CHUNK_B * a.chunks + REAL_CAMERA_CHUNK_B * k / a.clips_per_chunk
    real_whole = (REAL_EGOMOTION_CHUNK_B + REAL_CAMERA_CHUNK_B) * a.chunks
    print(f"the same selection at real PAI sizes ({k} of {n} clips): {real_fetched / 1e6:,.0f} MB fetched vs "
          f"{real_whole / 1e6:,.0f} MB whole: {real_whole / real_fetched:.1f}x")
    rng = np.random.default_rng(0)
    rand = [res.triaged[i] for i in rng.choice(len(res.triaged), k, replace=False)]
    for label, picked in (("chosen", res.chosen), ("random", rand)):
        mas = Counter()
        for c in picked:
            mas.update(c.meta_actions)
        print(f"{label}: mean match score {np.mean([c.score for c in picked]):.2f}; scenarios "
              f"{dict(Counter(scenario[c.clip_id] for c in picked))}; windows of the requested meta-actions "
              f"{sum(v for m, v in mas.items() if m in REQUEST.meta_actions)} of {sum(mas.values())}")
    (out / "triage.json").write_text(json.dumps({"fetched": fetched, "whole": whole, "members": members,
                                                 "chosen": [c.clip_id for c in res.chosen]}, indent=1))


if __name__ == "__main__":
    main()
