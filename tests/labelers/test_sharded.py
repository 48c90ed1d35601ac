"""A model labeler split over 2 CPU workers (the tiny offline VLM): the same results as one process,
each window in exactly one shard, a finished shard kept when the job runs again, and a failed
worker named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labelers.base import LabelFailure, WindowContext
from labelers.sharded import ShardedLabeler, shard_of, shard_path, write_job
from labelers.trace import Trace
from labelers.vlm import VLMLabeler
from trainers.tiny_backbone import build_tiny_backbone

ROOT = Path(__file__).resolve().parents[2]
# batch 1 and no sampled retry: a window's answer does not depend on which others share its batch
OPTIONS = {"max_new_tokens": 8, "retries": 0, "batch_size": 1}


def _windows(n: int) -> list[WindowContext]:
    z = np.zeros(64)
    return [WindowContext(f"clip{i % 3}", 2_000_000 + 100_000 * i, 10.0 + i, z, z, np.zeros((64, 3)), z,
                          image=np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8))
            for i in range(n)]


def _as_json(results: list[Trace | LabelFailure]) -> list[str]:
    return [r.to_json() if isinstance(r, Trace) else f"failure: {r.reason}" for r in results]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_backbone(tmp_path_factory.mktemp("vlm") / "tiny_vlm", with_weights=True)


def _sharded(model_dir: Path, jobs: Path, lines: list[str], workers: int = 2) -> ShardedLabeler:
    version = VLMLabeler(model_dir).version
    return ShardedLabeler("vlm", version, workers=workers, python=sys.executable, jobs_dir=jobs, dataset_root="",
                          options={"model_dir": str(model_dir), **OPTIONS}, pythonpath=ROOT, log=lines.append)


def test_two_workers_label_what_one_process_labels(model_dir: Path, tmp_path: Path) -> None:
    windows = _windows(10)
    ranks = [shard_of(w.key, 2) for w in windows]
    assert 0 < sum(ranks) < len(windows), "both workers get windows"
    want = _as_json(VLMLabeler(model_dir, **OPTIONS).label(windows))
    lines: list[str] = []
    labeler = _sharded(model_dir, tmp_path, lines)
    got = labeler.label(windows)
    assert _as_json(got) == want
    assert [ln.split(":")[0] for ln in lines if ln.startswith("worker")] == ["worker 0/2", "worker 1/2"]
    assert labeler.last_run == {"workers": 2, "shards_resumed": 0, "shards_run": 2}
    assert not list(tmp_path.iterdir()), "the merged job's folder is removed"


def test_a_done_shard_is_kept_and_only_the_missing_one_runs(model_dir: Path, tmp_path: Path) -> None:
    windows = _windows(8)
    lines: list[str] = []
    labeler = _sharded(model_dir, tmp_path, lines)
    job = labeler.job_dir(windows)
    write_job(job, windows, labeler="vlm", version=labeler.version, dataset_root="", world=2,
              options=labeler.options)
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "2", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "labelers.worker", "--shard", str(job)], env=env, check=True, timeout=300)
    done = shard_path(job, 0, 2)
    header = json.loads(done.read_text().splitlines()[0])
    assert header["rank"] == 0 and header["world"] == 2  # shard 0 finished, as by a job cut short
    got = labeler.label(windows)
    assert "1 shards already done, kept" in lines[0]
    assert [ln.split(":")[0] for ln in lines if ln.startswith("worker")] == ["worker 1/2"]
    assert _as_json(got) == _as_json(VLMLabeler(model_dir, **OPTIONS).label(windows))


def test_a_failed_worker_is_named_and_the_job_kept(tmp_path: Path) -> None:
    lines: list[str] = []
    labeler = ShardedLabeler("vlm", "v", workers=2, python=sys.executable, jobs_dir=tmp_path, dataset_root="",
                             options={"model_dir": str(tmp_path / "no-model")}, pythonpath=ROOT, log=lines.append)
    with pytest.raises(RuntimeError, match=r"labeler workers \[0, 1\] of 2 failed .* run the labeling again"):
        labeler.label(_windows(4))
    job = next(tmp_path.iterdir())
    assert "holds no model" in (job / "worker-0.log").read_text()


def test_workers_below_one_are_refused_by_name(twin_dir: Path) -> None:
    from labelers.registry import make_labeler
    from transforms.source import mirror_source

    with pytest.raises(ValueError, match="workers=0"):
        make_labeler("kinematic", mirror_source(twin_dir).fetch_chunk(0), workers=0)
