"""Slow tests, run by .ci/run (deselected in the quick suite): the main job and a real-size clip."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from transforms import pai_layout as L
from transforms.index import index_chunk
from transforms.pai_reader import LocalPAIDataset
from transforms.source import mirror_source
from transforms.twin.writer import TwinConfig, write_twin

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_main_job_runs_the_graph_from_a_fresh_dagster_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env.update(DAGSTER_HOME=str(home), FLYWHEEL_LAKE=str(tmp_path / "lake"), FLYWHEEL_TWIN_DIR=str(tmp_path / "twin"),
               FLYWHEEL_TWIN_CHUNKS="2", FLYWHEEL_TWIN_CLIPS="3", FLYWHEEL_TWIN_WIDTH="96", FLYWHEEL_TWIN_HEIGHT="64",
               FLYWHEEL_TWIN_SECONDS="10")
    proc = subprocess.run([sys.executable, "-m", "flywheel.cli", "demo"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    counts = dict(re.findall(r"^(\S+)\s+([\d,]+)$", proc.stdout, re.M))
    assert counts["silver.clips"] == "6" and int(counts["silver.frames"].replace(",", "")) > 1500, proc.stdout


@pytest.mark.slow
def test_real_size_clip_is_read_by_the_official_reader(tmp_path: Path) -> None:
    cfg = TwinConfig(chunks=1, clips_per_chunk=1, seed=1, width=1920, height=1080, seconds=8.0)
    root = write_twin(tmp_path / "twin", cfg)
    ds = LocalPAIDataset(root)
    clip = ds.clip_index.index[0]
    imgs, _ = ds.get_clip_feature(clip, L.FRONT_CAMERA).decode_images_from_timestamps(np.array([4_000_000]))
    assert imgs.shape == (1, 1080, 1920, 3)
    intr = ds.get_clip_feature(clip, "camera_intrinsics").camera_models[L.FRONT_CAMERA]
    assert (intr.width, intr.height) == (1920, 1080) and 850 < intr.th2r.coef[1] < 1000  # ~917 px/rad at 120 deg
    ix = index_chunk(mirror_source(root).fetch_chunk(0), chunk="chunk_0000")
    assert ix.counts()["clips_ok"] == 1 and ix.clips.column("image_width")[0].as_py() == 1920
