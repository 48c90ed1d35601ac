"""The unicycle inverse in torch: differentiable (a, κ) -> trajectory, for training and evaluation.

Same equations as `transforms.unicycle.integrate_unicycle` (tests check they agree).
"""

from __future__ import annotations

import torch

from transforms.unicycle import DT_S


def integrate_unicycle_torch(accel: torch.Tensor, curvature: torch.Tensor, v0: torch.Tensor,
                             dt: float = DT_S) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a, κ) (B, T) from v0 (B,), θ0 = 0, p0 = 0 -> xy (B, T, 2), yaw (B, T), speed (B, T)."""
    v = torch.cat([v0[:, None], v0[:, None] + torch.cumsum(accel * dt, dim=1)], dim=1)  # (B, T+1)
    dtheta = curvature * v[:, :-1] * dt + curvature * accel * dt**2 / 2
    theta = torch.cat([torch.zeros_like(v0)[:, None], torch.cumsum(dtheta, dim=1)], dim=1)
    vel = v[..., None] * torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)  # (B, T+1, 2)
    xy = torch.cumsum(0.5 * dt * (vel[:, :-1] + vel[:, 1:]), dim=1)
    return xy, theta[:, 1:], v[:, 1:]
