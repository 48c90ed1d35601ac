"""Labelers by name, as the asset config and the CLI choose them."""

from __future__ import annotations

from labelers.base import Labeler, LabelerUnavailable
from labelers.kinematic import KinematicLabeler
from transforms import pai_layout as L
from transforms.source import ChunkFiles

LABELERS = ("kinematic", "vlm", "alpamayo")
IMAGE_LABELERS = ("vlm",)  # need the front frame attached to each window
# hold a model on this machine's accelerator: they label in the driver process on every engine
MODEL_LABELERS = ("vlm", "alpamayo")


def labeler_class(name: str) -> type[Labeler]:
    if name == "kinematic":
        return KinematicLabeler
    if name == "vlm":
        from labelers.vlm import VLMLabeler

        return VLMLabeler
    if name == "alpamayo":
        from labelers.alpamayo import AlpamayoLabeler

        return AlpamayoLabeler
    raise ValueError(f"unknown labeler {name!r}: choose one of {', '.join(LABELERS)}")


def features_for(names: tuple[str, ...]) -> tuple[str, ...]:
    """The PAI features to fetch so that these labelers can run: the required ones and theirs."""
    extra = sorted({f for n in names for f in labeler_class(n).features} - set(L.REQUIRED_FEATURES))
    return (*L.REQUIRED_FEATURES, *extra)


def make_labeler(name: str, files: ChunkFiles, *, vlm_model_dir: str = "") -> Labeler:
    if name == "kinematic":
        return KinematicLabeler()
    if name == "vlm":
        from labelers.vlm import VLMLabeler

        if not vlm_model_dir:
            raise LabelerUnavailable("labeler=vlm needs vlm_model_dir: a local image-text-to-text model folder")
        return VLMLabeler(vlm_model_dir)
    if name == "alpamayo":
        from labelers.alpamayo import AlpamayoLabeler
        from transforms.pai_reader import LocalPAIDataset

        # the chunk's files sit at their repo paths under one root (a PAI copy, a twin, an HF snapshot)
        return AlpamayoLabeler(dataset=LocalPAIDataset(files.path("features.csv").parent))
    raise ValueError(f"unknown labeler {name!r}: choose one of {', '.join(LABELERS)}")
