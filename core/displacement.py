"""Displacement errors of predicted trajectories: ADE and FDE at NAVSIM/Alpamayo horizons.

Trajectories are (B, T, 2) xy in metres at 10 Hz in the ego frame at t0 (step i is t0 + 0.1 (i+1) s).
"""

from __future__ import annotations

import numpy as np

from core.windows import DT_S, N_FUT

HORIZONS_S = (1.0, 2.0, 3.0, 6.4)


def horizon_steps(horizon_s: float, dt_s: float = DT_S) -> int:
    return round(horizon_s / dt_s)


def horizon_name(horizon_s: float) -> str:
    """1.0 -> "1s", 6.4 -> "6p4s" (usable as a column or metric name)."""
    return f"{horizon_s:g}".replace(".", "p") + "s"


def displacement_errors(pred_xy: np.ndarray, true_xy: np.ndarray,
                        horizons_s: tuple[float, ...] = HORIZONS_S) -> dict[str, np.ndarray]:
    """Per-trajectory ADE and FDE (B,) at each horizon: {"ade_1s": ..., "fde_6p4s": ...}."""
    pred_xy, true_xy = np.asarray(pred_xy, dtype=np.float64), np.asarray(true_xy, dtype=np.float64)
    if pred_xy.shape != true_xy.shape or pred_xy.ndim != 3 or pred_xy.shape[-1] != 2:
        raise ValueError(f"need matching (B, T, 2) trajectories, got {pred_xy.shape} and {true_xy.shape}")
    err = np.linalg.norm(pred_xy - true_xy, axis=-1)  # (B, T)
    out: dict[str, np.ndarray] = {}
    for h in horizons_s:
        n = horizon_steps(h)
        if not 1 <= n <= err.shape[1]:
            raise ValueError(f"horizon {h} s needs {n} steps; the trajectories have {err.shape[1]}")
        out[f"ade_{horizon_name(h)}"] = err[:, :n].mean(axis=1)
        out[f"fde_{horizon_name(h)}"] = err[:, n - 1]
    return out


def constant_velocity_xy(v0_mps: np.ndarray, steps: int = N_FUT, dt_s: float = DT_S) -> np.ndarray:
    """The constant-velocity baseline: straight ahead at the speed at t0. (B,) -> (B, steps, 2)."""
    t = dt_s * np.arange(1, steps + 1)
    v = np.asarray(v0_mps, dtype=np.float64)[:, None]
    return np.stack([v * t, np.zeros_like(v * t)], axis=-1)
