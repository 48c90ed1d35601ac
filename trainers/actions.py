"""The (a, κ) action space: normalised model outputs -> physical controls -> trajectories.

Shards carry actions normalised with Alpamayo-R1's constants (transforms.unicycle.UnicycleParams);
the unicycle layer (transforms.unicycle_torch) integrates them from the speed at t0, differentiably.
"""

from __future__ import annotations

import torch

from transforms.unicycle import UnicycleParams
from transforms.unicycle_torch import integrate_unicycle_torch


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
