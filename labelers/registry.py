"""Labelers by name, as the asset config and the CLI choose them."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.config import knob
from labelers.base import Labeler, LabelerUnavailable
from labelers.kinematic import KinematicLabeler
from labelers.remote import Launch
from transforms import pai_layout as L
from transforms.source import ChunkFiles

PROJECT = Path(__file__).resolve().parents[1]  # the worker imports the project's modules from here
LABELERS = ("kinematic", "vlm", "alpamayo", "standin")
DEFAULT_LABELER = "kinematic"  # the one that needs nothing but the egomotion
IMAGE_LABELERS = ("vlm",)  # need the front frame attached to each window
# hold a model on this machine's accelerator: they label in the driver process on every engine
MODEL_LABELERS = ("vlm", "alpamayo", "standin")
# run in an environment of their own (labelers/envs/<name>.txt), through labelers.remote.EnvLabeler
ENV_LABELERS = ("alpamayo", "standin")


@dataclass(frozen=True)
class LabelConfig:
    """What a labeling run is configured by: the one declaration of commander_labels' knobs."""

    labeler: Literal[*LABELERS] = knob(DEFAULT_LABELER, "who labels the windows")
    vlm_model_dir: str = knob("", "labeler=vlm: a local image-text-to-text model directory")
    labeler_env: str = knob("", "alpamayo, standin: their environment (default .labeler-envs/<labeler> of the "
                                "project, made by `make labeler-env NAME=<labeler>`)")
    phrasing_seed: int = knob(0, "picks among each meta-action's phrasings of the command")
    workers: int = knob(1, "model labelers (vlm, alpamayo, standin): split the windows over this many worker "
                           "processes, one per GPU (cuda:LOCAL_RANK); each shard resumes on its own "
                           "(labelers/sharded.py)")
    keyframes: bool = knob(False, "label only the windows where the kinematic meta-action changes (and each clip's "
                                  "first); the others carry their keyframe's trace. A label set of its own "
                                  "(version +keyframes): spends an expensive labeler where behaviour changes")


def labeler_class(name: str) -> type[Labeler]:
    if name == "kinematic":
        return KinematicLabeler
    if name == "vlm":
        from labelers.vlm import VLMLabeler

        return VLMLabeler
    if name == "alpamayo":
        from labelers.alpamayo import AlpamayoLabeler

        return AlpamayoLabeler
    if name == "standin":
        from labelers.standin import StandInLabeler

        return StandInLabeler
    raise ValueError(f"unknown labeler {name!r}: choose one of {', '.join(LABELERS)}")


def features_for(names: tuple[str, ...]) -> tuple[str, ...]:
    """The PAI features to fetch so that these labelers can run: the required ones and theirs."""
    extra = sorted({f for n in names for f in labeler_class(n).features} - set(L.REQUIRED_FEATURES))
    return (*L.REQUIRED_FEATURES, *extra)


def make_labeler(name: str, files: ChunkFiles, *, vlm_model_dir: str = "", env_dir: str | Path = "",
                 workdir: str | Path = "", launch: Launch | None = None, workers: int = 1,
                 jobs_dir: str | Path = "", log: Callable[[str], None] = print) -> Labeler:
    """A labeler by name. Those of ENV_LABELERS run in their own environment (`env_dir`, default
    .labeler-envs/<name> of the project) through `launch` (default: a plain subprocess). With
    `workers` > 1 a model labeler runs as that many worker processes (labelers.sharded), its
    resumable shards under `jobs_dir`."""
    if workers < 1:
        raise ValueError(f"workers={workers}: use 1 (one process) or the number of GPUs/worker processes")
    if name == "kinematic":
        return KinematicLabeler()
    if workers > 1 and name in MODEL_LABELERS:
        return _sharded(name, files, vlm_model_dir=vlm_model_dir, env_dir=env_dir, workers=workers,
                        jobs_dir=jobs_dir or Path(tempfile.mkdtemp(prefix=f"labeler-{name}-")), log=log)
    if name == "vlm":
        from labelers.vlm import VLMLabeler

        if not vlm_model_dir:
            raise LabelerUnavailable("labeler=vlm needs vlm_model_dir: a local image-text-to-text model folder")
        return VLMLabeler(vlm_model_dir)
    if name in ENV_LABELERS:
        from labelers.remote import EnvLabeler, subprocess_launch

        missing = [f for f in labeler_class(name).features
                   if f not in files.features or files.features[f].path(files.chunk_id) not in files.files]
        if missing:
            raise LabelerUnavailable(f"labeler {name} reads {missing}, which chunk {files.chunk_id} was fetched without: "
                                     f"add {name} to FLYWHEEL_LABELERS (or the source's `labelers`) and re-materialize "
                                     "raw_chunks for it")

        work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"labeler-{name}-"))
        # the chunk's files sit at their repo paths under one root (a PAI copy, a twin, an HF snapshot)
        return EnvLabeler(name, labeler_class(name).version, env_dir=env_dir or PROJECT / ".labeler-envs" / name,
                          dataset_root=files.path("features.csv").parent, workdir=work,
                          launch=launch or subprocess_launch(work, pythonpath=PROJECT))
    raise ValueError(f"unknown labeler {name!r}: choose one of {', '.join(LABELERS)}")



def _sharded(name: str, files: ChunkFiles, *, vlm_model_dir: str, env_dir: str | Path, workers: int,
             jobs_dir: str | Path, log: Callable[[str], None]) -> Labeler:
    """The labeler split over worker processes of its interpreter (its own environment's for ENV_LABELERS)."""
    import sys

    from labelers.sharded import ShardedLabeler

    options: dict[str, object] = {}
    if name == "vlm":
        from labelers.vlm import VLMLabeler

        if not vlm_model_dir:
            raise LabelerUnavailable("labeler=vlm needs vlm_model_dir: a local image-text-to-text model folder")
        version, options, python = VLMLabeler(vlm_model_dir).version, {"model_dir": str(vlm_model_dir)}, sys.executable
    else:
        env = Path(env_dir or PROJECT / ".labeler-envs" / name)
        python = str(env / "bin" / "python")
        if not Path(python).exists():
            raise LabelerUnavailable(f"labeler {name} runs in its own environment and {env} holds none: build it "
                                     f"with `make labeler-env NAME={name}` (labelers/envs/{name}.txt)")
        version = labeler_class(name).version
    return ShardedLabeler(name, version, workers=workers, python=python, jobs_dir=jobs_dir, options=options,
                          dataset_root=files.path("features.csv").parent, pythonpath=PROJECT, log=log)
