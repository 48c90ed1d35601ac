"""The field agent at inference: (front image, Commander command, ego state) -> (a, κ) x 64 + trajectory.

    agent = FieldAgent.load("lakehouse/checkpoints/<run>/checkpoint")
    out = agent.act(image_hwc_uint8, "Overtake the truck on the left", EgoState(v_mps=14.0))
    out.accel_mps2 (64,), out.curvature_1pm (64,), out.xy_m (64, 2), out.yaw_rad (64,)  # 10 Hz, ego frame at t0

Sampling is flow matching from noise: `seed` makes a call reproducible (the default, seed 0),
`seed=None` draws fresh noise; `noise_scale` scales that noise. The default, 0, starts every plan
from the noise distribution's mean: one deterministic plan per observation. A random draw adds
spread that a single plan is then scored on, not information: on the benchmark set it cost the
shipped recipe 0.4 m of ADE@6.4 s (docs/training.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainers.actions import from_model, rollout
from trainers.checkpoint import Loaded, load_checkpoint
from trainers.policy import CAMERA_KEY, STATE_DIM, STATE_KEY


@dataclass(frozen=True)
class EgoState:
    """The ego state at t0, as the shards carry it."""

    v_mps: float
    a_mps2: float = 0.0
    kappa_1pm: float = 0.0
    yaw_rate_radps: float = 0.0


@dataclass(frozen=True)
class AgentOutput:
    accel_mps2: np.ndarray  # (B, 64)
    curvature_1pm: np.ndarray  # (B, 64)
    xy_m: np.ndarray  # (B, 64, 2), x forward, y left, at t0 + 0.1 .. 6.4 s
    yaw_rad: np.ndarray  # (B, 64)

    def __getitem__(self, i: int) -> AgentOutput:
        return AgentOutput(self.accel_mps2[i], self.curvature_1pm[i], self.xy_m[i], self.yaw_rad[i])


class FieldAgent:
    def __init__(self, loaded: Loaded, device: str = "cpu") -> None:
        self.loaded, self.device = loaded, device
        self.image_hw: tuple[int, int] = tuple(loaded.meta["image_hw"])  # what it was trained on
        self.chunk = loaded.cfg.chunk_size
        self.max_action_dim = loaded.cfg.max_action_dim

    @classmethod
    def load(cls, ckpt: str | Path, device: str = "cpu") -> FieldAgent:
        return cls(load_checkpoint(ckpt, device=device), device)

    @property
    def meta(self) -> dict:
        return self.loaded.meta

    def _images(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(H, W, 3) uint8 RGB frames -> (B, 3, h, w) float in [0, 1] at the training size."""
        h, w = self.image_hw
        out = []
        for i, img in enumerate(images):
            img = np.asarray(img)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"image {i}: need an (H, W, 3) uint8 RGB frame, got {img.shape} {img.dtype}")
            if img.shape[:2] != (h, w):
                img = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
            out.append(img)
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div_(255.0)

    def act_batch(self, images: Sequence[np.ndarray], commands: Sequence[str],
                  states: Sequence[EgoState | Sequence[float]], *, seed: int | None = 0,
                  noise_scale: float = 0.0) -> AgentOutput:
        """B observations at once -> AgentOutput with a leading batch dimension."""
        if not len(images) == len(commands) == len(states) or not len(images):
            raise ValueError(f"need as many images ({len(images)}), commands ({len(commands)}) and states "
                             f"({len(states)}), at least one")
        st = torch.tensor([astuple(s) if isinstance(s, EgoState) else tuple(s) for s in states], dtype=torch.float32)
        if st.shape[1] != STATE_DIM or not torch.isfinite(st).all():
            raise ValueError(f"states must be finite (v, a, κ, yaw rate) rows, got {st.tolist()[:2]}")
        if not noise_scale >= 0:
            raise ValueError(f"noise_scale={noise_scale}: use 0 (the deterministic plan) or a positive scale such as 1")
        pre, post = self.loaded.pre, self.loaded.post
        obs = pre({CAMERA_KEY: self._images(images).to(self.device), STATE_KEY: st.to(self.device),
                   "task": [str(c) for c in commands]})
        shape = (len(images), self.chunk, self.max_action_dim)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        noise = (torch.randn(shape, generator=gen) * noise_scale).to(self.device)
        with torch.no_grad():
            chunk = post(self._chunk(obs, noise)).float().cpu()  # (B, 64, 2)
            chunk = from_model(chunk, st, self.loaded.spec.action_mode)  # normalised (a, κ)
            accel, kappa, xy, yaw = rollout(chunk, st[:, 0])
        return AgentOutput(accel.numpy(), kappa.numpy(), xy.numpy(), yaw.numpy())

    def _chunk(self, obs: dict, noise: torch.Tensor) -> torch.Tensor:
        """Preprocessed observations and noise -> the policy's normalised action chunk (B, 64, 2)."""
        return self.loaded.policy.predict_action_chunk(obs, noise=noise)

    def act(self, image: np.ndarray, command: str, state: EgoState | Sequence[float], *,
            seed: int | None = 0, noise_scale: float = 0.0) -> AgentOutput:
        """One observation -> (a, κ) x 64 and the trajectory they drive."""
        return self.act_batch([image], [command], [state], seed=seed, noise_scale=noise_scale)[0]
