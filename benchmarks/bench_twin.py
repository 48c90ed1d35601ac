"""Twin generation cost: seconds per 20 s clip at the default size and at PAI's 1920x1080.

    python -m benchmarks.bench_twin [--sizes 256x144 1920x1080] [--clips 2] [--seconds 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from transforms.twin.writer import TwinConfig, write_twin


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["256x144", "1920x1080"])
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        clips = args.clips if w * h < 1_000_000 else 1
        cfg = TwinConfig(chunks=1, clips_per_chunk=clips, seed=5, width=w, height=h, seconds=args.seconds)
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            write_twin(Path(d), cfg)
            dt = time.perf_counter() - t
            mb = sum(p.stat().st_size for p in Path(d).rglob("*") if p.is_file()) / 1e6
        print(f"twin {w}x{h}, {args.seconds:g} s clips: {dt / clips:.1f} s per clip ({clips} clips, {mb:.1f} MB)")


if __name__ == "__main__":
    main()
