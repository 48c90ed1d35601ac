"""A window's geometry, the contract `unicycle_targets` is written and read by.

A window is (clip_id, t0) seen from the ego frame at t0 (x forward, y left): N_HIST poses at 10 Hz
up to and including t0 (t0 - 1.5 ... t0 s) and N_FUT poses after it (t0 + 0.1 ... t0 + 6.4 s), the
horizon Alpamayo-R1 plans over; its targets are N_FUT (acceleration, curvature) pairs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

DT_S = 0.1  # 10 Hz
N_HIST = 16  # poses t0 - 1.5 ... t0
N_FUT = 64  # poses t0 + 0.1 ... t0 + 6.4 s, and (a, κ) pairs
XYZ = 3  # a pose list holds x, y, z per step, row-major


def fixed_lists(col: pa.ChunkedArray, width: int) -> np.ndarray:
    """A list<float64> column whose rows all hold `width` values -> (rows, width) array, one copy."""
    flat = pa.concat_arrays([c.flatten() for c in col.chunks]) if col.num_chunks else pa.array([], pa.float64())
    values = flat.to_numpy(zero_copy_only=False)
    if values.size % width:
        raise ValueError(f"column {col.type}: {values.size} values are not rows of {width}; "
                         "the table was not written by this version's window contract (core/windows.py)")
    return values.reshape(-1, width)
