"""Training in processes of its own: what `train_field_agent` launches through Dagster Pipes
(`launcher: pipes`), and what a cluster job runs.

    python -m trainers.launch --job JOB.json                                  # one process
    torchrun --nproc-per-node 8 -m trainers.launch --job JOB.json             # 8 GPUs on one node
    torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29500 -m trainers.launch --job JOB.json          # 4 nodes (one command per node)

JOB.json (`write_job`) names the config, the shard files, the runs folder and the data version;
every rank reads it. Under Dagster Pipes (the launching asset set DAGSTER_PIPES_* in the
environment) rank 0 sends its log lines to Dagster and, at the end, the run's result as a Pipes
custom message, from which the asset records the materialization; without Pipes the result is
printed as the last line (`result {json}`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainers.config import TrainConfig

RESULT_PREFIX = "result "


def write_job(path: Path, tc: TrainConfig, *, train_urls: list[str], val_urls: list[str], runs_dir: Path,
              data_version: str, restart: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"config": dataclasses.asdict(tc), "train_urls": train_urls, "val_urls": val_urls,
                               "runs_dir": str(runs_dir), "data_version": data_version, "restart": restart}, indent=1))
    tmp.replace(path)
    return path


def command(job: Path, nproc_per_node: int = 1) -> list[str]:
    """The command that runs `job`: this interpreter, under torchrun (standalone, one node) for > 1 process."""
    if nproc_per_node <= 1:
        return [sys.executable, "-m", "trainers.launch", "--job", str(job)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc_per_node}",
            "-m", "trainers.launch", "--job", str(job)]


def read_job(path: Path) -> dict[str, Any]:
    try:
        job = json.loads(path.read_text())
        job["config"] = TrainConfig(**job["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"training job {path}: {exc}: write it with trainers.launch.write_job") from exc
    return job


def result_doc(res: Any) -> dict[str, Any]:
    """A TrainResult as JSON (the checkpoint path as a string)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(res).items()}


def result_from_doc(doc: dict[str, Any]) -> Any:
    from trainers.train import TrainResult

    return TrainResult(**{**doc, "checkpoint": Path(doc["checkpoint"])})


def _run(job: dict[str, Any], log: Callable[[str], None]) -> Any:
    from trainers.train import train

    return train(job["config"], train_urls=job["train_urls"], val_urls=job["val_urls"], runs_dir=job["runs_dir"],
                 data_version=job["data_version"], restart=job["restart"], log=log, progress_bar=False,
                 on_batch=job.get("on_batch"))


def _keys_logger(path: Path) -> Callable[[int, int, list[str]], None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")

    def record(epoch: int, index: int, keys: list[str]) -> None:
        with path.open("a") as f:
            f.write(json.dumps({"epoch": epoch, "batch": index, "keys": keys}) + "\n")

    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainers.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("--job", required=True, type=Path, help="the job file (trainers.launch.write_job)")
    p.add_argument("--keys-log", type=Path, default=None,
                   help="audit: write the sample keys each rank trains on to DIR/rank<R>.jsonl (default: off)")
    args = p.parse_args(argv)
    job = read_job(args.job)
    rank = int(os.environ.get("RANK", "0"))
    main_rank = rank == 0
    if args.keys_log:
        job["on_batch"] = _keys_logger(args.keys_log / f"rank{rank}.jsonl")
    if main_rank and os.environ.get("DAGSTER_PIPES_CONTEXT"):
        from dagster_pipes import open_dagster_pipes

        with open_dagster_pipes() as pipes:
            res = _run(job, pipes.log.info)
            pipes.report_custom_message(result_doc(res))
    else:
        res = _run(job, lambda m: print(m, flush=True) if main_rank else None)
        if main_rank:
            print(RESULT_PREFIX + json.dumps(result_doc(res)), flush=True)
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
