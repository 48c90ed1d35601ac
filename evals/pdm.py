"""NAVSIM's aggregate scores and trajectory format (docs/references.md, *NAVSIM*), as plain functions.

PDMS (v1) = NC · DAC · (5·TTC + 5·EP + 2·C) / 12
EPDMS (v2, one stage) = NC · DAC · DDC · TLC · (5·EP + 5·TTC + 2·LK + 2·HC + 2·EC) / 16, and where a
frame has no previous frame (EC undefined, NaN) EC and its weight drop out: … / 14, as NAVSIM's
one-stage `compute_final_scores` (`run_pdm_score_one_stage.py`) does.
"""

from __future__ import annotations

import numpy as np

NAVSIM_POSES = 8  # a NAVSIM trajectory: 8 poses at 2 Hz over 4 s
NAVSIM_INTERVAL_S = 0.5


def _scores(*xs: np.ndarray | float, nan_ok: bool = False) -> list[np.ndarray]:
    arrs = [np.asarray(x, dtype=np.float64) for x in xs]
    for a in arrs:
        finite = np.isfinite(a) | (np.isnan(a) if nan_ok else False)
        if np.any((a < 0) | (a > 1)) or not np.all(finite):
            raise ValueError(f"sub-scores must lie in [0, 1], got {a}")
    return arrs


def pdms(nc: np.ndarray | float, dac: np.ndarray | float, ttc: np.ndarray | float, ep: np.ndarray | float,
         comfort: np.ndarray | float) -> np.ndarray:
    """NAVSIM v1's PDM score per window (DDC has weight 0 in v1)."""
    nc, dac, ttc, ep, comfort = _scores(nc, dac, ttc, ep, comfort)
    return nc * dac * (5 * ttc + 5 * ep + 2 * comfort) / 12


def epdms(nc: np.ndarray | float, dac: np.ndarray | float, ddc: np.ndarray | float, tlc: np.ndarray | float,
          ep: np.ndarray | float, ttc: np.ndarray | float, lk: np.ndarray | float, hc: np.ndarray | float,
          ec: np.ndarray | float) -> np.ndarray:
    """NAVSIM v2's extended PDM score per window, single stage (no human filter: it needs human-log scores).

    `ec` NaN (no previous frame): EC's weight leaves the denominator, as in NAVSIM.
    """
    nc, dac, ddc, tlc, ep, ttc, lk, hc = _scores(nc, dac, ddc, tlc, ep, ttc, lk, hc)
    (ec,) = _scores(ec, nan_ok=True)
    has_ec = ~np.isnan(ec)
    weighted = 5 * ep + 5 * ttc + 2 * lk + 2 * hc + 2 * np.where(has_ec, ec, 0.0)
    return nc * dac * ddc * tlc * weighted / np.where(has_ec, 16.0, 14.0)


def navsim_poses(xy_m: np.ndarray, yaw_rad: np.ndarray, dt_s: float = 0.1) -> np.ndarray:
    """A 10 Hz trajectory (step i at t0 + (i+1)·dt) -> NAVSIM's (8, 3) poses (x, y, heading) at 0.5 … 4.0 s.

    Works on one trajectory (T, 2)/(T,) or a batch (B, T, 2)/(B, T).
    """
    xy_m, yaw_rad = np.asarray(xy_m, np.float64), np.asarray(yaw_rad, np.float64)
    stride = round(NAVSIM_INTERVAL_S / dt_s)
    idx = stride * np.arange(1, NAVSIM_POSES + 1) - 1
    if xy_m.shape[-2] <= idx[-1] or xy_m.shape[:-1] != yaw_rad.shape:
        raise ValueError(f"need >= {idx[-1] + 1} steps of {dt_s} s with matching headings, got xy {xy_m.shape}, "
                         f"yaw {yaw_rad.shape}")
    return np.concatenate([xy_m[..., idx, :], yaw_rad[..., idx, None]], axis=-1)
