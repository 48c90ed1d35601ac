"""The twin is a function of its config: the same seed writes the same bytes, before and after a refactor.

The digests below were taken at 314c2bd, before the driver became a state machine. The mp4 bytes are
left to the encoder (tests/labelers/test_features.py compares decoded frames); what the twin itself
decides is held byte for byte: the simulated worlds, every other file and zip member, and the frames
the renderer hands to the encoder.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from transforms.twin.render import FThetaCamera, render_frames
from transforms.twin.world import SCENARIOS, simulate
from transforms.twin.writer import TwinConfig, write_twin

WORLD_DIGEST = "f54b8ac90f8b7a4a90084140e16fd05d90106267bc6679f7435b0e0d089e4f5e"
FILES_DIGEST = "b8029de647b45e62225ee5e956806d37cfd8bf75cde3d805fac102d29180fa13"
FRAMES_DIGEST = "14ee101ef7caaa61d56dab1efe413e4ad4a856f150c060cfce89c13f9d11056e"

CFG = TwinConfig(chunks=1, clips_per_chunk=8, seed=3, width=96, height=64, seconds=10.0)


def _update(h: hashlib._Hash, obj: object) -> None:
    for key, value in vars(obj).items():
        if key.startswith("_"):
            continue
        h.update(key.encode())
        h.update(np.asarray(value).tobytes() if isinstance(value, np.ndarray) else repr(value).encode())


def world_digest() -> str:
    """Every array of 24 simulated clips: three seeds through every scenario."""
    h = hashlib.sha256()
    for seed in (1, 2, 3):
        for scenario in SCENARIOS:
            world = simulate(seed * 1000 + 17, 20.0, scenario)
            h.update(world.scenario.encode())
            for part in (world.road, world.ego, *world.tracks):
                _update(h, part)
    return h.hexdigest()


def files_digest(root: Path) -> str:
    """Every file of the twin; zips member by member, their mp4s left out (the encoder's bytes)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        if path.suffix != ".zip":
            h.update(hashlib.sha256(path.read_bytes()).digest())
            continue
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                h.update(name.encode())
                if not name.endswith(".mp4"):
                    h.update(hashlib.sha256(zf.read(name)).digest())
    return h.hexdigest()


def frames_digest() -> str:
    """The frames the renderer hands to the encoder, for two clips."""
    h = hashlib.sha256()
    for seed in (11, 12):
        world = simulate(seed, 10.0, SCENARIOS[seed % len(SCENARIOS)])
        cam = FThetaCamera.front_wide(96, 64, np.random.default_rng(seed))
        for frame in render_frames(world, cam, np.arange(0, 10_000_000, 250_000, dtype=np.int64)):
            h.update(frame.tobytes())
    return h.hexdigest()


def test_simulated_worlds_are_unchanged() -> None:
    assert world_digest() == WORLD_DIGEST


def test_twin_files_are_unchanged(tmp_path: Path) -> None:
    assert files_digest(write_twin(tmp_path / "twin", CFG)) == FILES_DIGEST


def test_rendered_frames_are_unchanged() -> None:
    assert frames_digest() == FRAMES_DIGEST
