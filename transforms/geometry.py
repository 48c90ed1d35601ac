"""Small geometry helpers on plain arrays (quaternions scalar-last, as PAI and scipy store them)."""

from __future__ import annotations

import numpy as np


def slerp_quat(t: np.ndarray, quat_xyzw: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions at `query` times (within `t`).

    Equal to scipy's `Slerp(t, Rotation.from_quat(q))(query)`, which `physical_ai_av` uses, but it
    only touches the intervals that are queried (scipy's constructor computes all of them).
    """
    i = np.clip(np.searchsorted(t, query, side="right") - 1, 0, len(t) - 2)
    f = ((query - t[i]) / (t[i + 1] - t[i]))[:, None]
    q0, q1 = quat_xyzw[i], quat_xyzw[i + 1]
    dot = np.sum(q0 * q1, axis=1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)  # shortest arc, as scipy's rotation-vector form takes
    dot = np.abs(dot)
    omega = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(omega)
    small = sin < 1e-9
    w0 = np.where(small, 1 - f, np.sin((1 - f) * omega) / np.where(small, 1, sin))
    w1 = np.where(small, f, np.sin(f * omega) / np.where(small, 1, sin))
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def yaw_of_quat(q: np.ndarray) -> np.ndarray:
    """yaw = atan2(R10, R00) of scalar-last quaternions (Alpamayo's convention)."""
    x, y, z, w = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.arctan2(2 * (x * y + w * z), 1 - 2 * (y * y + z * z))


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) scalar-last unit quaternions -> (..., 3, 3) rotation matrices."""
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def wrap_angle(a: np.ndarray) -> np.ndarray:
    """Angles into (-pi, pi]."""
    return np.pi - np.mod(np.pi - a, 2 * np.pi)


def unwrap_from_zero(yaw: np.ndarray) -> np.ndarray:
    """Cumulative heading from 0 along the last axis: successive differences re-wrapped into (-pi, pi]."""
    steps = wrap_angle(np.diff(np.concatenate([np.zeros_like(yaw[..., :1]), yaw], -1), axis=-1))
    return np.cumsum(steps, axis=-1)
