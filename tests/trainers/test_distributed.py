"""Data-parallel training on CPU: 2 processes under torchrun (gloo) train what 1 process trains at
the same global batch, see every sample once per epoch, and a run stopped at 2 processes resumes
at 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file

from tests.trainers.conftest import QUICK
from trainers.config import TrainConfig
from trainers.data import make_dataset
from trainers.launch import RESULT_PREFIX, result_from_doc, write_job
from trainers.train import train

ROOT = Path(__file__).resolve().parents[2]
# the 2-process loss may differ from the 1-process one by float summation order alone (the
# all-reduce adds the ranks' gradients in another order); measured: ~1e-7 relative
LOSS_RTOL = 1e-4


def _launch(job: Path, nproc: int, keys: Path | None = None, **popen: object) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trainers.launch", "--job", str(job)]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "trainers.launch", "--job", str(job)]
    if keys:
        cmd += ["--keys-log", str(keys)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)  # type: ignore[call-overload]


def _result(proc: subprocess.Popen) -> object:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    line = next(ln for ln in reversed(out.splitlines()) if ln.startswith(RESULT_PREFIX))
    return result_from_doc(json.loads(line[len(RESULT_PREFIX):]))


def _losses(res: object) -> list[float]:
    return [r["value"] for r in res.metrics if r["split"] == "train" and r["name"] == "loss"]  # type: ignore[attr-defined]


def test_rank_slices_partition_each_epoch_and_each_global_batch(shard_urls: dict[str, list[str]]) -> None:
    def batches(rank: int, world: int) -> list[list[str]]:
        return [list(b["key"]) for b in make_dataset(shard_urls["train"], batch_size=8 // world, seed=7,
                                                     rank=rank, world=world)]

    one, r0, r1 = batches(0, 1), batches(0, 2), batches(1, 2)
    assert len(one) >= 2
    for k, whole in enumerate(one):  # the ranks' k-th batches are the one-process k-th batch
        assert sorted(r0[k] + r1[k]) == sorted(whole), k
        assert not set(r0[k]) & set(r1[k])
    with pytest.raises(ValueError, match=r"rank 2 is not in 0\.\.1"):
        make_dataset(shard_urls["train"], batch_size=4, rank=2, world=2)


def test_two_processes_train_like_one_and_see_each_sample_once_per_epoch(shard_urls: dict[str, list[str]],
                                                                         tmp_path: Path) -> None:
    tc = TrainConfig(profile="tiny", steps=12, **QUICK)
    jobs = {n: write_job(tmp_path / f"p{n}" / "job.json", tc, train_urls=shard_urls["train"],
                         val_urls=shard_urls["val"], runs_dir=tmp_path / f"p{n}" / "runs", data_version="d",
                         restart=False) for n in (1, 2)}
    one = _result(_launch(jobs[1], 1))
    two = _result(_launch(jobs[2], 2, keys=tmp_path / "keys"))
    assert one.run_id == two.run_id  # the world size is not part of the run's identity
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == 12
    worst = max(abs(x - y) / abs(x) for x, y in zip(a, b, strict=True))
    assert worst < LOSS_RTOL, f"2-process loss differs from 1-process by {worst:.2e} relative: {a} vs {b}"
    assert abs(one.final["ade_6p4s"] - two.final["ade_6p4s"]) < 1e-3
    w1, w2 = (load_file(str(r.checkpoint / "weights.safetensors")) for r in (one, two))
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-4  # rank 0 wrote the same weights

    ranks = [[json.loads(ln) for ln in (tmp_path / "keys" / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    every = {k for b in make_dataset(shard_urls["train"], batch_size=64, shuffle_buffer=1) for k in b["key"]}
    epochs = sorted({row["epoch"] for rows in ranks for row in rows})
    complete = [e for e in epochs if e < max(epochs)]  # the last one may stop mid-epoch at 12 steps
    assert complete, "the test trains over more than one epoch"
    for e in complete:
        seen = [k for rows in ranks for row in rows if row["epoch"] == e for k in row["keys"]]
        assert sorted(seen) == sorted(every), f"epoch {e}: {len(seen)} keys seen for {len(every)} samples"


def test_a_run_stopped_at_two_processes_resumes_at_one(shard_urls: dict[str, list[str]], tmp_path: Path) -> None:
    tc = TrainConfig(profile="tiny", steps=40, **{**QUICK, "checkpoint_every": 4, "val_every": 100})
    kw = dict(train_urls=shard_urls["train"], val_urls=[], data_version="d")
    whole = train(tc, runs_dir=tmp_path / "whole", **kw)
    job = write_job(tmp_path / "job.json", tc, runs_dir=tmp_path / "cut", restart=False, **kw)
    proc = _launch(job, 2)
    meta = tmp_path / "cut" / whole.run_id / "checkpoint" / "checkpoint.json"
    deadline = time.monotonic() + 300
    while not (meta.exists() and json.loads(meta.read_text())["step"] >= 4):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    # torchrun starts each rank in a session of its own: kill the tree, ranks first (a node lost mid-run)
    tree = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    for p in tree:
        p.send_signal(signal.SIGKILL)
    proc.communicate()
    cut_at = json.loads(meta.read_text())["step"]
    assert 4 <= cut_at < 40
    resumed = train(tc, runs_dir=tmp_path / "cut", **kw)
    assert resumed.resumed_from == cut_at
    a, b = _losses(whole), _losses(resumed)
    worst = max(abs(x - y) / abs(x) for x, y in zip(a, b, strict=True))
    assert worst < LOSS_RTOL, f"resumed at 1 process after {cut_at} steps at 2: {worst:.2e} relative"
