"""The (a, κ) action space: normalised model outputs -> physical controls -> trajectories.

Shards carry actions normalised with Alpamayo-R1's constants (transforms.unicycle.UnicycleParams);
the unicycle layer (transforms.unicycle_torch) integrates them from the speed at t0, differentiably.
"""

from __future__ import annotations

from typing import Literal

import torch

from transforms.unicycle import UnicycleParams
from transforms.unicycle_torch import integrate_unicycle_torch

ActionMode = Literal["absolute", "residual"]


def control_offset(state: torch.Tensor, p: UnicycleParams | None = None) -> torch.Tensor:
    """The controls at t0 from the ego state (B, 4: v, a, κ, yaw rate), normalised like the actions: (B, 1, 2)."""
    p = p or UnicycleParams()
    return torch.stack([(state[:, 1] - p.accel_mean) / p.accel_std,
                        (state[:, 2] - p.curvature_mean) / p.curvature_std], dim=-1)[:, None, :]


def to_model(actions: torch.Tensor, state: torch.Tensor, mode: ActionMode) -> torch.Tensor:
    """Normalised (a, κ) (B, 64, 2) -> what the policy learns.

    `residual`: the change from the controls at t0. A driver mostly keeps doing what it does, so the
    residual is near zero; learning absolute controls, a small model trained on a few clips carries
    their biases (a drift of 0.2 m/s² or 0.001 1/m is metres at 6.4 s) to clips it has not seen.
    """
    return actions - control_offset(state).to(actions) if mode == "residual" else actions


def from_model(out: torch.Tensor, state: torch.Tensor, mode: ActionMode) -> torch.Tensor:
    """The inverse of `to_model`: policy output -> normalised (a, κ)."""
    return out + control_offset(state).to(out) if mode == "residual" else out


def denormalize(norm: torch.Tensor, p: UnicycleParams | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, 2) normalised (a, κ) -> accel m/s² (B, T), curvature 1/m (B, T)."""
    p = p or UnicycleParams()
    return norm[..., 0] * p.accel_std + p.accel_mean, norm[..., 1] * p.curvature_std + p.curvature_mean


def rollout(norm: torch.Tensor, v0_mps: torch.Tensor, p: UnicycleParams | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised actions (B, T, 2) and v0 (B,) -> accel, curvature, xy (B, T, 2), yaw (B, T)."""
    accel, kappa = denormalize(norm.float(), p)
    xy, yaw, _ = integrate_unicycle_torch(accel, kappa, v0_mps.float().to(norm.device))
    return accel, kappa, xy, yaw
