"""A model labeler split over N workers (one per GPU): shards by rank, resumable per shard.

The windows of a labeling job are written once to a job folder; worker `rank` of `world` labels
the windows whose key hashes to its rank (`shard_of`: a window's shard does not depend on which
other windows are in the job, nor on their order) and writes its results to
`shards/rank-<r>-of-<n>.jsonl` in one rename. A shard whose file is there is done: a job started
again (the same windows, labeler version and world size name the same folder) launches only the
workers of missing shards. The merge reads every shard back in the windows' order; the stage
then commits them as any labeler's results (commander_labels replaces this labeler version's rows
of the chunk, so merging twice writes the same rows once).

Workers are `python -m labelers.worker --shard JOB` with RANK, WORLD_SIZE and LOCAL_RANK in their
environment (what torchrun sets), started here as N processes of the labeler's interpreter (its
own environment for alpamayo). On a GPU node the same command runs under torchrun, each worker on
`cuda:LOCAL_RANK`; on a Spark cluster with GPU executors, one task per rank (docs/labels.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from labelers.base import Labeler, LabelFailure, WindowContext
from labelers.remote import RESULTS_FORMAT, read_jsonl, window_to_dict, write_jsonl
from labelers.trace import Trace

Log = Callable[[str], None]


def shard_of(key: str, world: int) -> int:
    """The rank that labels the window `key` (clip_id/t0_us) among `world` workers."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") % world


def shard_path(job: Path, rank: int, world: int) -> Path:
    return job / "shards" / f"rank-{rank}-of-{world}.jsonl"


def write_job(job: Path, windows: list[WindowContext], *, labeler: str, version: str, dataset_root: str,
              options: dict[str, Any], world: int) -> None:
    """The job folder: job.json, windows.jsonl and each window's image (images/<i>.npy) if it has one."""
    (job / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, w in enumerate(windows):
        d = window_to_dict(w)
        if w.image is not None:
            np.save(job / "images" / f"{i}.npy", w.image)
            d["image"] = f"images/{i}.npy"
        rows.append(d)
    write_jsonl(job / "windows.jsonl", rows)
    write_jsonl(job / "job.jsonl", [{"labeler": labeler, "version": version, "dataset_root": dataset_root,
                                     "options": options, "world": world}])


def job_windows(job: Path, rank: int, world: int) -> list[tuple[int, dict[str, Any]]]:
    """(index, window dict) of the job's windows that are this rank's."""
    return [(i, d) for i, d in enumerate(read_jsonl(job / "windows.jsonl"))
            if shard_of(f"{d['clip_id']}/{d['t0_us']}", world) == rank]


class ShardedLabeler(Labeler):
    """`name` at `version`, labeled by `workers` processes of `python` (the labeler's interpreter)."""

    def __init__(self, name: str, version: str, *, workers: int, python: str | Path, jobs_dir: str | Path,
                 dataset_root: str | Path, options: dict[str, Any] | None = None, pythonpath: str | Path = "",
                 log: Log = print) -> None:
        if workers < 1:
            raise ValueError(f"workers={workers}: must be >= 1")
        self.name, self.version, self.workers = name, version, workers
        self.python, self.jobs_dir, self.dataset_root = str(python), Path(jobs_dir), str(dataset_root)
        self.options, self.pythonpath, self.log = options or {}, str(pythonpath), log
        self.last_run: dict[str, Any] = {}

    def job_dir(self, windows: list[WindowContext]) -> Path:
        """Named by what it labels: the same windows, labeler version and world size find the same folder."""
        h = hashlib.sha256(json.dumps([self.name, self.version, self.workers, self.options,
                                       [w.key for w in windows]], sort_keys=True).encode()).hexdigest()[:16]
        return self.jobs_dir / f"{self.name}-{h}"

    def label(self, windows: list[WindowContext]) -> list[Trace | LabelFailure]:
        if not windows:
            return []
        job = self.job_dir(windows)
        if not (job / "job.jsonl").exists():
            write_job(job, windows, labeler=self.name, version=self.version, dataset_root=self.dataset_root,
                      options=self.options, world=self.workers)
        todo = [r for r in range(self.workers) if not shard_path(job, r, self.workers).exists()]
        kept = self.workers - len(todo)
        self.log(f"labeling {len(windows)} windows with {self.name} {self.version} over {self.workers} workers"
                 + (f"; {kept} shards already done, kept" if kept else "") + f" ({job})")
        self._run_workers(job, todo)
        results = self.merge(job, windows)
        self.last_run = {"workers": self.workers, "shards_resumed": kept, "shards_run": len(todo)}
        import shutil

        shutil.rmtree(job)  # merged: the stage commits the results; a failed run keeps its done shards
        return results

    def _run_workers(self, job: Path, ranks: list[int]) -> None:
        procs = []
        for r in ranks:
            env = {**os.environ, "RANK": str(r), "WORLD_SIZE": str(self.workers), "LOCAL_RANK": str(r),
                   **({"PYTHONPATH": self.pythonpath} if self.pythonpath else {})}
            out = open(job / f"worker-{r}.log", "w")  # closed below, once the worker has ended
            procs.append((r, out, subprocess.Popen([self.python, "-m", "labelers.worker", "--shard", str(job)],
                                                   env=env, stdout=out, stderr=subprocess.STDOUT)))
        failed = []
        for r, out, p in procs:
            p.wait()
            out.close()
            tail = (job / f"worker-{r}.log").read_text().strip().splitlines()[-1:] or [""]
            self.log(f"worker {r}/{self.workers}: exit {p.returncode}; {tail[0]}")
            if p.returncode != 0:
                failed.append(r)
        if failed:
            raise RuntimeError(f"labeler workers {failed} of {self.workers} failed (logs: {job}/worker-<rank>.log); "
                               "the other shards are kept: run the labeling again to redo only those")

    def merge(self, job: Path, windows: list[WindowContext]) -> list[Trace | LabelFailure]:
        """Every shard's results, in the windows' order; a window in no shard (or in two) is an error."""
        by_key: dict[str, dict[str, Any]] = {}
        for r in range(self.workers):
            path = shard_path(job, r, self.workers)
            if not path.exists():
                raise RuntimeError(f"shard {r} of {self.workers} has no results ({path}): run the labeling again")
            header, *rows = read_jsonl(path)
            if header.get("format") != RESULTS_FORMAT or header.get("version") != self.version:
                raise RuntimeError(f"{path}: written by {header}, expected {self.name} {self.version}: delete it and "
                                   "run again")
            for row in rows:
                key = f"{row['clip_id']}/{row['t0_us']}"
                if key in by_key or shard_of(key, self.workers) != r:
                    raise RuntimeError(f"{path}: window {key} is not this shard's or came twice")
                by_key[key] = row
        missing = [w.key for w in windows if w.key not in by_key]
        if missing:
            raise RuntimeError(f"{len(missing)} windows have no result in any shard, e.g. {missing[:3]}")
        return [Trace.from_dict(by_key[w.key]["trace"]) if "trace" in by_key[w.key]
                else LabelFailure(str(by_key[w.key]["failure"])) for w in windows]
