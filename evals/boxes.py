"""Oriented boxes in the plane: corners, intersection tests and relative bearings, batched in numpy.

NAVSIM scores with shapely polygons one query at a time; the twin's scenes are small, so
separating-axis tests over whole (proposal, step, agent) grids do the same job in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VehicleShape:
    """A vehicle footprint referenced to its rear axle (NAVSIM scores with nuPlan's Pacifica)."""

    length_m: float = 5.176
    width_m: float = 2.297
    rear_axle_to_center_m: float = 1.461

    @property
    def front_m(self) -> float:
        """Rear axle to front bumper."""
        return self.rear_axle_to_center_m + self.length_m / 2


PACIFICA = VehicleShape()


def box_corners(x: np.ndarray, y: np.ndarray, yaw: np.ndarray, length: np.ndarray | float,
                width: np.ndarray | float) -> np.ndarray:
    """Centre poses (...) and sizes -> corners (..., 4, 2): front-left, front-right, rear-right, rear-left."""
    x, y, yaw = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(yaw, np.float64)
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    hl = np.asarray(length, np.float64)[..., None] / 2 * np.array([1, 1, -1, -1])
    hw = np.asarray(width, np.float64)[..., None] / 2 * np.array([1, -1, -1, 1])
    return np.stack([x[..., None] + c * hl - s * hw, y[..., None] + s * hl + c * hw], axis=-1)


def ego_center(x: np.ndarray, y: np.ndarray, yaw: np.ndarray, shape: VehicleShape = PACIFICA
               ) -> tuple[np.ndarray, np.ndarray]:
    """Rear-axle poses -> box centres."""
    return x + shape.rear_axle_to_center_m * np.cos(yaw), y + shape.rear_axle_to_center_m * np.sin(yaw)


def ego_corners(x: np.ndarray, y: np.ndarray, yaw: np.ndarray, shape: VehicleShape = PACIFICA) -> np.ndarray:
    """Rear-axle poses (...) -> the footprint's corners (..., 4, 2)."""
    cx, cy = ego_center(x, y, yaw, shape)
    return box_corners(cx, cy, yaw, shape.length_m, shape.width_m)


def front_bumper(corners: np.ndarray, depth_m: float = 0.01) -> np.ndarray:
    """The front edge of boxes (..., 4, 2) as a sliver box (..., 4, 2) `depth_m` deep, for the same SAT test."""
    fl, fr, rr = corners[..., 0, :], corners[..., 1, :], corners[..., 2, :]
    back = (rr - fr) / np.maximum(np.linalg.norm(rr - fr, axis=-1, keepdims=True), 1e-9) * depth_m
    return np.stack([fl, fr, fr + back, fl + back], axis=-2)


def _axes(corners: np.ndarray) -> np.ndarray:
    """The two edge normals of each rectangle (..., 2, 2)."""
    e1 = corners[..., 1, :] - corners[..., 0, :]
    e2 = corners[..., 3, :] - corners[..., 0, :]
    return np.stack([np.stack([-e1[..., 1], e1[..., 0]], -1), np.stack([-e2[..., 1], e2[..., 0]], -1)], axis=-2)


def boxes_intersect(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Do rectangles a (..., 4, 2) and b (..., 4, 2) overlap (touching counts)? Broadcasts; NaN boxes never do.

    Separating-axis test: two convex polygons are disjoint iff their projections on one of their
    edge normals are disjoint.
    """
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    axes = np.concatenate([_axes(a), _axes(b)], axis=-2)  # (..., 4, 2)
    pa = np.einsum("...kd,...cd->...kc", axes, a)  # (..., 4 axes, 4 corners)
    pb = np.einsum("...kd,...cd->...kc", axes, b)
    overlap = (pa.max(-1) >= pb.min(-1)) & (pb.max(-1) >= pa.min(-1))  # NaN compares False: no overlap
    return overlap.all(-1)


def bearing_deg(x: np.ndarray, y: np.ndarray, yaw: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """Unsigned angle (degrees) between a heading and the direction to a target point."""
    ang = np.arctan2(ty - y, tx - x) - yaw
    return np.degrees(np.abs(np.arctan2(np.sin(ang), np.cos(ang))))


def is_ahead(x: np.ndarray, y: np.ndarray, yaw: np.ndarray, tx: np.ndarray, ty: np.ndarray,
             tolerance_deg: float = 30.0) -> np.ndarray:
    """nuPlan's `is_agent_ahead`: the target lies within ±tolerance of the heading."""
    return bearing_deg(x, y, yaw, tx, ty) < tolerance_deg


def is_behind(x: np.ndarray, y: np.ndarray, yaw: np.ndarray, tx: np.ndarray, ty: np.ndarray,
              tolerance_deg: float = 150.0) -> np.ndarray:
    """nuPlan's `is_agent_behind`: the target lies more than `tolerance` off the heading."""
    return bearing_deg(x, y, yaw, tx, ty) > tolerance_deg
