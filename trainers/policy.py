"""LeRobot's SmolVLA configured as the field agent: one front image, ego state, command, (a, κ) x 64.

The policy, its config and its processors are LeRobot's own (lerobot 0.6.1, pinned); this module
only chooses their settings. Profiles: `tiny` (a random-init SmolVLM-style backbone built offline,
CPU, minutes) and `full` (the SmolVLM2-500M backbone of `lerobot/smolvla_base`, GPU, bf16).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CAMERA_KEY = "observation.images.front_wide"
STATE_KEY = "observation.state"
STATE_DIM = 4  # v, a, κ, yaw rate at t0
ACTION_DIM = 2  # (a, κ), normalised with Alpamayo's constants at export
CHUNK = 64


@dataclass(frozen=True)
class Profile:
    name: str
    vlm_model_name: str  # a hub id or a local directory with config, tokenizer and processor
    load_vlm_weights: bool
    num_vlm_layers: int
    image_size: int  # SmolVLA resizes with padding to a square of this size
    tokenizer_max_length: int = 24


FULL_VLM = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"


def profile(name: str, *, backbone_dir: str | Path | None = None) -> Profile:
    """`tiny` needs `backbone_dir` (trainers.tiny_backbone.build_tiny_backbone writes one)."""
    if name == "tiny":
        if backbone_dir is None:
            raise ValueError("the tiny profile needs backbone_dir: build one with trainers.tiny_backbone")
        return Profile("tiny", str(backbone_dir), load_vlm_weights=False, num_vlm_layers=4, image_size=128)
    if name == "full":
        return Profile("full", str(backbone_dir or FULL_VLM), load_vlm_weights=True, num_vlm_layers=16,
                       image_size=512, tokenizer_max_length=48)
    raise ValueError(f"unknown profile {name!r}: choose tiny or full")


def smolvla_config(p: Profile, *, image_hw: tuple[int, int], device: str = "cpu") -> Any:
    """A SmolVLAConfig for (a, κ): max_action_dim = 2 so no padded action dims count in the loss."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    h, w = image_hw
    return SmolVLAConfig(
        input_features={CAMERA_KEY: PolicyFeature(FeatureType.VISUAL, (3, h, w)),
                        STATE_KEY: PolicyFeature(FeatureType.STATE, (STATE_DIM,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))},
        chunk_size=CHUNK, n_action_steps=CHUNK, max_state_dim=STATE_DIM, max_action_dim=ACTION_DIM,
        resize_imgs_with_padding=(p.image_size, p.image_size), num_vlm_layers=p.num_vlm_layers,
        vlm_model_name=p.vlm_model_name, load_vlm_weights=p.load_vlm_weights,
        tokenizer_max_length=p.tokenizer_max_length, device=device)


def dataset_stats(states: torch.Tensor, actions: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """Normalisation statistics in LeRobot's format from samples of state (N, 4) and actions (N, 64, 2).

    Images are already in [0, 1] (identity statistics); actions were normalised at export with
    Alpamayo's constants, so their statistics here are close to (0, 1) but measured, not assumed.
    """
    a = actions.reshape(-1, ACTION_DIM)

    def stats(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mean": x.mean(0), "std": x.std(0).clamp_min(1e-6), "min": x.min(0).values, "max": x.max(0).values}

    one = torch.ones(3, 1, 1)
    return {CAMERA_KEY: {"mean": 0 * one, "std": one, "min": 0 * one, "max": one}, STATE_KEY: stats(states),
            "action": stats(a)}


def to_policy_batch(batch: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """A loader batch (trainers.data) in the keys SmolVLA's preprocessor expects."""
    from trainers.data import images_to_float

    return {CAMERA_KEY: images_to_float(batch["image"].to(device)), STATE_KEY: batch["state"].to(device),
            "action": batch["actions"].to(device), "task": list(batch["command"])}
