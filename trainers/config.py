"""What a training run is configured by: the one declaration of the training knobs.

`TrainConfig` is the trainer's; `TrainData` says which shards it reads. The asset's launchpad config
(dagster_project/assets/training.py) and `flywheel train`'s flags are derived from both. Light to
import (no torch): the CLI builds its flags from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from core.config import knob

if TYPE_CHECKING:
    from trainers.policy import PolicySpec

FULL_BASE = "lerobot/smolvla_base"


@dataclass(frozen=True)
class TrainConfig:
    profile: Literal["auto", "tiny", "full"] = knob(
        "auto", "tiny (CPU, offline, random init), full (GPU, SmolVLA from its base), auto: full where CUDA is")
    # 4800 steps and the trajectory term at 1.0: on 104 training clips this beats constant (a, κ) on the
    # benchmark set in ADE@6.4 s and EPDMS in ~10 min on one core (docs/training.md)
    steps: int = knob(4800, "optimiser steps")
    batch_size: int = knob(16, "samples per step")
    # The optimiser and schedule: None takes the profile's preset (trainers.policy.optimizer_preset):
    # tiny's own for a random init, SmolVLA's (lr 1e-4, warmup 1000, clip 10) for a pretrained base.
    lr: float | None = knob(None, "peak learning rate; unset: the profile's preset (tiny 1e-3, full SmolVLA's 1e-4)")
    warmup_steps: int | None = knob(None, "linear warmup steps; unset: the profile's preset")
    min_lr_ratio: float | None = knob(None, "cosine decay floor as a fraction of lr; unset: the profile's preset")
    weight_decay: float | None = knob(None, "AdamW weight decay; unset: the profile's preset")
    grad_clip: float | None = knob(None, "gradient norm clip; unset: the profile's preset")
    ema_decay: float = knob(0.999, "validate and ship an exponential moving average of the weights; 0: off")
    freeze_backbone: bool | None = knob(None, "freeze the vision encoder; unset: the profile's default "
                                              "(tiny no, full yes)")
    train_expert_only: bool | None = knob(None, "freeze the whole VLM, train the action expert and projections; "
                                                "unset: the profile's default")
    lora_rank: int = knob(0, "peft LoRA rank on the VLM text attention; 0: off")
    lora_alpha: int = knob(0, "LoRA alpha; 0: the rank")
    traj_loss_weight: float = knob(1.0, "weight of the ADE (m) of the one-step denoised chunk, through the unicycle "
                                        "layer; 0: flow matching alone")
    flow_steps: int = knob(10, "flow-matching integration steps of a plan")
    action_mode: Literal["residual", "absolute"] = knob(
        "residual", "the policy learns the change of (a, κ) from t0 (residual) or (a, κ) as they are")
    # zero_mean: "keep the controls of t0" is the noise mean a plan starts from (trainers.policy.dataset_stats);
    # on the benchmark set it scored EPDMS +0.012 over LeRobot's mean/std, same ADE (one seed each)
    action_norm: Literal["mean_std", "zero_mean"] = knob(
        "zero_mean", "LeRobot's mean/std of the actions, or zero_mean: a zero (residual) action stays zero")
    val_every: int = knob(600, "validate every this many steps")
    val_max_samples: int = knob(512, "validation samples (at most)")
    checkpoint_every: int = knob(600, "checkpoint (and resume point) every this many steps")
    stats_samples: int = knob(4096, "samples the normalisation statistics are computed from")
    seed: int = knob(0, "the run's seed: the same config, data and seed give the same run")
    sample_weights: str = knob("", "reweighting: meta_action=weight,... repeats each training sample that often on "
                                   "average (1 where unnamed); empty: off. `flywheel turn --reweight` derives it from "
                                   "the latest data request")
    num_workers: int = knob(-1, "data loader workers; -1: 0 on CPU (decoding is cheap next to a step), 4 on GPU")
    shuffle_buffer: int = knob(500, "samples in the WebDataset shuffle buffer")
    threads: int = knob(0, "torch CPU threads; 0: one (steadier and faster on 2 busy cores than two)")
    device: str = knob("auto", "cpu, cuda, cuda:N; auto: cuda where available")
    base: str = knob(FULL_BASE, "full profile: the SmolVLA checkpoint to fine-tune (hub repo id or local directory)")
    base_revision: str = knob("", "full profile: the hub commit to pin")
    vlm: str = knob("", "full profile: override the base's backbone reference (hub id or local directory)")

    def __post_init__(self) -> None:
        bad = {k: getattr(self, k) for k in ("steps", "batch_size", "val_every", "checkpoint_every", "stats_samples",
                                             "val_max_samples") if getattr(self, k) < 1}
        if bad:
            raise ValueError(f"TrainConfig: {bad} must be >= 1")
        lr, floor, warm, clip, wd = self.lr, self.min_lr_ratio, self.warmup_steps, self.grad_clip, self.weight_decay
        if (lr is not None and not lr > 0) or (floor is not None and not 0 <= floor <= 1) or \
                (warm is not None and warm < 0) or (clip is not None and clip <= 0) or (wd is not None and wd < 0):
            raise ValueError(f"TrainConfig: lr={lr} (> 0), min_lr_ratio={floor} (0..1), warmup_steps={warm} (>= 0), "
                             f"grad_clip={clip} (> 0), weight_decay={wd} (>= 0); None takes the profile's preset")
        if self.traj_loss_weight < 0:
            raise ValueError(f"traj_loss_weight={self.traj_loss_weight}: must be >= 0")
        from core.request import parse_weights

        parse_weights(self.sample_weights)  # names the bad item
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay={self.ema_decay}: use 0 (off) or a decay in (0, 1) such as 0.999")

    def resolved(self) -> TrainConfig:
        """Concrete profile, device and workers for this machine."""
        import torch

        from trainers.policy import optimizer_preset

        cuda = torch.cuda.is_available()
        device = self.device if self.device != "auto" else ("cuda" if cuda else "cpu")
        profile = self.profile if self.profile != "auto" else ("full" if device.startswith("cuda") else "tiny")
        workers = self.num_workers if self.num_workers >= 0 else (4 if device.startswith("cuda") else 0)
        preset = dataclasses.asdict(optimizer_preset(profile))  # type: ignore[arg-type]
        chosen = {k: v if getattr(self, k) is None else getattr(self, k) for k, v in preset.items()}
        return dataclasses.replace(self, profile=profile, device=device, num_workers=workers, **chosen)

    def spec(self) -> PolicySpec:
        if self.profile == "auto":
            raise ValueError("TrainConfig.spec() needs a concrete profile: call resolved() first")
        from trainers.policy import PolicySpec

        return PolicySpec.for_profile(self.profile, freeze_backbone=self.freeze_backbone,
                                      train_expert_only=self.train_expert_only, lora_rank=self.lora_rank,
                                      lora_alpha=self.lora_alpha, flow_steps=self.flow_steps,
                                      action_mode=self.action_mode)

    def run_id(self, data_version: str) -> str:
        """Same config + same data -> same run (so an interrupted run resumes); device-independent."""
        doc = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("device", "num_workers", "threads")}
        if not doc["sample_weights"]:  # runs from before reweighting existed keep their ids
            del doc["sample_weights"]
        h = hashlib.sha256(json.dumps({"config": doc, "data": data_version}, sort_keys=True).encode())
        return f"{self.profile}-{h.hexdigest()[:12]}"


@dataclass(frozen=True)
class TrainData:
    """Which shards a run trains on, and whether to train again."""

    labeler: str = knob("", "train on the shards labelled by this labeler; empty: the labels every chunk's shards "
                            "hold now (its latest export)")
    labeler_version: str = knob("", "... and this version of it; empty: the one the shards hold")
    restart: bool = knob(False, "train again even if this config and data already have a finished run")
    reweight: bool = knob(False, "weight training samples by the latest data request (gold.data_requests): the "
                                 "zero-download answer to the agent's failures; sets sample_weights")
    launcher: Literal["in_process", "pipes"] = knob(
        "in_process", "in_process: train in the Dagster run's process; pipes: in processes of its own, launched "
                      "through Dagster Pipes (torchrun when nproc_per_node > 1), which report logs and the result back")
    nproc_per_node: int = knob(1, "training processes (data parallel, one per GPU) under torchrun; > 1 needs "
                                  "launcher pipes; batch_size stays the global batch")

    def __post_init__(self) -> None:
        if self.nproc_per_node < 1:
            raise ValueError(f"nproc_per_node={self.nproc_per_node}: must be >= 1")
        if self.nproc_per_node > 1 and self.launcher != "pipes":
            raise ValueError(f"nproc_per_node={self.nproc_per_node} needs launcher='pipes' (torchrun starts the "
                             "processes; the Dagster run's own process is one)")
