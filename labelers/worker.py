"""The labeler worker: `python -m labelers.worker`, run by a labeler's own environment.

Launched through Dagster Pipes (dagster-pipes is the only Dagster package it needs): the extras
name the labeler, the windows file, the results file and the dataset root. It imports only the
labeler's own module, so it runs beside dependencies the pipeline could not hold (transformers 4
beside lerobot's transformers 5). The results file starts with a header row: format, labeler,
version, and the versions of the packages that matter.
"""

from __future__ import annotations

import importlib.metadata as md
import os
from pathlib import Path
from typing import Any

from labelers.base import Labeler
from labelers.remote import RESULTS_FORMAT, read_jsonl, result_to_dict, window_from_dict, write_jsonl


def make(name: str, dataset_root: str, options: dict[str, Any]) -> Labeler:
    if name == "standin":
        from labelers.standin import StandInLabeler

        return StandInLabeler(**options)
    if name == "vlm":
        from labelers.vlm import VLMLabeler

        return VLMLabeler(**options)
    if name == "alpamayo":
        from labelers.alpamayo import AlpamayoLabeler
        from transforms.pai_reader import LocalPAIDataset

        return AlpamayoLabeler(dataset=LocalPAIDataset(dataset_root), **options)
    raise ValueError(f"labeler {name!r} has no worker: the worker runs standin, alpamayo and vlm")


def _version(pkg: str) -> str:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return ""


def run(extras: dict[str, Any], log: Any) -> dict[str, Any]:
    labeler = make(extras["labeler"], extras["dataset_root"], dict(extras.get("options") or {}))
    windows = [window_from_dict(d) for d in read_jsonl(Path(extras["windows"]))]
    log.info(f"labeler {labeler.name} {labeler.version}: {len(windows)} windows; transformers "
             f"{_version('transformers')}, torch {_version('torch')}")
    results = labeler.label(windows)
    header = {"format": RESULTS_FORMAT, "labeler": labeler.name, "version": labeler.version,
              "packages": {p: _version(p) for p in ("transformers", "torch", "huggingface_hub")}}
    rows = [result_to_dict(w, r) for w, r in zip(windows, results, strict=True)]
    write_jsonl(Path(extras["out"]), [header, *rows])
    failed = sum("failure" in row for row in rows)
    return {**header["packages"], "labeled": len(windows) - failed, "failed": failed}


def run_shard(job: Path, log: Any) -> dict[str, Any]:
    """This rank's shard of a sharded job (labelers.sharded): RANK and WORLD_SIZE as torchrun sets them,
    the device `cuda:LOCAL_RANK` where there is one. Results go to the shard's file in one rename."""
    import numpy as np

    from labelers.sharded import job_windows, shard_path
    from transforms.ids import inside

    spec = read_jsonl(job / "job.jsonl")[0]
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world != spec["world"]:
        raise SystemExit(f"{job} was split for {spec['world']} workers; this one was started with WORLD_SIZE={world}")
    options = dict(spec["options"])
    if spec["labeler"] in ("vlm", "alpamayo") and "device" not in options:
        import torch

        if torch.cuda.is_available():
            options["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    labeler = make(spec["labeler"], spec["dataset_root"], options)
    mine = job_windows(job, rank, world)
    # the image paths come from the job's own file: still, none may leave the job folder
    windows = [window_from_dict(d, image=np.load(inside(job, d["image"])) if "image" in d else None) for _, d in mine]
    log.info(f"worker {rank}/{world}: {labeler.name} {labeler.version} on {len(windows)} windows")
    results = labeler.label(windows)
    header = {"format": RESULTS_FORMAT, "labeler": labeler.name, "version": labeler.version, "rank": rank,
              "world": world, "packages": {p: _version(p) for p in ("transformers", "torch")}}
    rows = [result_to_dict(w, r) for w, r in zip(windows, results, strict=True)]
    out = shard_path(job, rank, world)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, [header, *rows])
    failed = sum("failure" in row for row in rows)
    log.info(f"worker {rank}/{world}: labeled {len(rows) - failed}, failed {failed}")
    return {"labeled": len(rows) - failed, "failed": failed}


def main() -> None:
    """Under Dagster Pipes, extras and logs go through it; run by hand (or by `subprocess_launch`),
    the extras come as a JSON file named on the command line and the log goes to stderr."""
    import json
    import logging
    import sys

    if sys.argv[1:2] == ["--shard"]:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        run_shard(Path(sys.argv[2]), logging.getLogger("labelers.worker"))
        return
    if "DAGSTER_PIPES_CONTEXT" not in os.environ:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        summary = run(json.loads(Path(sys.argv[1]).read_text()), logging.getLogger("labelers.worker"))
        print(json.dumps(summary))
        return
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        summary = run(dict(pipes.extras), pipes.log)
        pipes.log.info(f"labeled {summary['labeled']}, failed {summary['failed']}")
        pipes.report_custom_message(summary)


if __name__ == "__main__":
    main()
