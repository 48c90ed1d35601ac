"""Labelers that run in an environment of their own, as a separate process.

Alpamayo-R1 pins transformers 4.57 and torch 2.8; the pipeline runs lerobot on transformers 5.
Such a labeler is therefore launched as `python -m labelers.worker` with its environment's
interpreter. `EnvLabeler` is its stand-in inside the pipeline: it writes the windows to a JSON
Lines file, launches the worker, and reads one result per window back. The launcher is passed
in (the Dagster asset launches through Dagster Pipes, so the worker's logs reach the run); this
module stays free of dagster, like every stage module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from labelers.base import Labeler, LabelerUnavailable, LabelFailure, WindowContext
from labelers.trace import Trace

# (command, extras) -> returns when the worker has finished; raises when it failed
Launch = Callable[[list[str], dict[str, Any]], None]
RESULTS_FORMAT = "flywheel-labels/1"


def window_to_dict(w: WindowContext) -> dict[str, Any]:
    return {"clip_id": w.clip_id, "t0_us": w.t0_us, "v0_mps": w.v0_mps, "accel_mps2": w.accel_mps2.tolist(),
            "curvature_1pm": w.curvature_1pm.tolist(), "future_xyz": np.asarray(w.future_xyz).tolist(),
            "future_yaw": w.future_yaw.tolist()}


def window_from_dict(d: dict[str, Any], image: np.ndarray | None = None) -> WindowContext:
    return WindowContext(str(d["clip_id"]), int(d["t0_us"]), float(d["v0_mps"]), np.asarray(d["accel_mps2"]),
                         np.asarray(d["curvature_1pm"]), np.asarray(d["future_xyz"]), np.asarray(d["future_yaw"]),
                         image=image)


def result_to_dict(w: WindowContext, r: Trace | LabelFailure) -> dict[str, Any]:
    if isinstance(r, Trace):
        return {"clip_id": w.clip_id, "t0_us": w.t0_us, "trace": json.loads(r.to_json())}
    return {"clip_id": w.clip_id, "t0_us": w.t0_us, "failure": r.reason}


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Written aside and renamed: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def subprocess_launch(workdir: str | Path, *, pythonpath: str | Path) -> Launch:
    """A launcher without Dagster: the extras as a JSON file beside the windows, the worker's log on
    this process's stderr."""

    def launch(command: list[str], extras: dict[str, Any]) -> None:
        import subprocess

        path = Path(workdir) / "extras.json"
        path.write_text(json.dumps(extras))
        subprocess.run([*command, str(path)], check=True, env={**os.environ, "PYTHONPATH": str(pythonpath)})

    return launch


class EnvLabeler(Labeler):
    """A labeler of another environment, seen from the pipeline: same name and version, same results."""

    def __init__(self, name: str, version: str, *, env_dir: str | Path, dataset_root: str | Path,
                 workdir: str | Path, launch: Launch, options: dict[str, Any] | None = None) -> None:
        self.name, self.version = name, version
        self.env_dir, self.dataset_root, self.workdir = Path(env_dir), Path(dataset_root), Path(workdir)
        self.launch, self.options = launch, options or {}
        self.python = self.env_dir / "bin" / "python"
        self.last_header: dict[str, Any] = {}
        if not self.python.exists():
            raise LabelerUnavailable(f"labeler {name} runs in its own environment and {self.env_dir} holds none: "
                                     f"build it with `make labeler-env NAME={name}` (labelers/envs/{name}.txt)")

    def label(self, windows: list[WindowContext]) -> list[Trace | LabelFailure]:
        if not windows:
            return []
        self.workdir.mkdir(parents=True, exist_ok=True)
        inp, out = self.workdir / "windows.jsonl", self.workdir / "labels.jsonl"
        out.unlink(missing_ok=True)
        write_jsonl(inp, (window_to_dict(w) for w in windows))
        self.launch([str(self.python), "-m", "labelers.worker"],
                    {"labeler": self.name, "windows": str(inp), "out": str(out), "dataset_root": str(self.dataset_root),
                     "options": self.options})
        if not out.exists():
            raise RuntimeError(f"labeler {self.name}'s worker ended without writing {out}: see its log above")
        rows = read_jsonl(out)
        header, results = rows[0], rows[1:]
        if header.get("format") != RESULTS_FORMAT or header.get("version") != self.version:
            raise RuntimeError(f"labeler {self.name}'s worker answered {header}; expected format {RESULTS_FORMAT} and "
                               f"version {self.version}: rebuild its environment (make labeler-env NAME={self.name})")
        self.last_header = header  # what the worker ran on (versions of its packages)
        for f in (inp, out, self.workdir / "extras.json"):  # kept only when the run failed, to look into
            f.unlink(missing_ok=True)
        by_key = {(r["clip_id"], r["t0_us"]): r for r in results}
        out_list: list[Trace | LabelFailure] = []
        for w in windows:
            r = by_key.get((w.clip_id, w.t0_us))
            if r is None:
                out_list.append(LabelFailure(f"the {self.name} worker returned no result"))
            elif "trace" in r:
                out_list.append(Trace.from_dict(r["trace"]))
            else:
                out_list.append(LabelFailure(str(r["failure"])))
        return out_list
