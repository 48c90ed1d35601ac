"""One typed reader for `unicycle_targets`: its rows as arrays with named shapes.

Labels, shards and the evaluation all read the same table; they read it through `read_targets`,
so the list widths (core/windows.py) are decoded in one place. B is the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from core.windows import N_FUT, N_HIST, XYZ, fixed_lists


@dataclass(frozen=True)
class TargetRows:
    """`unicycle_targets` rows, in the table's order."""

    chunk: tuple[str, ...]  # (B,)
    clip_id: tuple[str, ...]  # (B,)
    t0_us: np.ndarray  # (B,) int64
    split: tuple[str, ...]  # (B,)
    v0_mps: np.ndarray  # (B,)
    accel_mps2: np.ndarray  # (B, N_FUT)
    curvature_1pm: np.ndarray  # (B, N_FUT)
    accel_norm: np.ndarray  # (B, N_FUT), Alpamayo's normalisation
    curvature_norm: np.ndarray  # (B, N_FUT)
    history_xyz: np.ndarray  # (B, N_HIST, 3), ego frame at t0; the last pose is the origin
    history_yaw: np.ndarray  # (B, N_HIST)
    future_xyz: np.ndarray  # (B, N_FUT, 3)
    future_yaw: np.ndarray  # (B, N_FUT)

    def __len__(self) -> int:
        return len(self.clip_id)

    def keys(self) -> list[tuple[str, int]]:
        """(clip_id, t0_us) per row: the table's key."""
        return list(zip(self.clip_id, self.t0_us.tolist(), strict=True))

    def normalised_actions(self) -> np.ndarray:
        """(B, N_FUT, 2): (accel_norm, curvature_norm) per step, what the policy learns."""
        return np.stack([self.accel_norm, self.curvature_norm], -1)


def read_targets(table: pa.Table) -> TargetRows:
    """Decode a `unicycle_targets` read (any row subset, all columns) into arrays."""
    missing = [c for c in TargetRows.__dataclass_fields__ if c not in table.column_names]
    if missing:
        raise ValueError(f"unicycle_targets read lacks columns {missing}: read the table with all its columns")

    def lists(name: str, *shape: int) -> np.ndarray:
        return fixed_lists(table.column(name), int(np.prod(shape))).reshape(-1, *shape)

    def strings(name: str) -> tuple[str, ...]:
        return tuple(str(v) for v in table.column(name).to_pylist())

    return TargetRows(
        chunk=strings("chunk"), clip_id=strings("clip_id"),
        t0_us=table.column("t0_us").to_numpy().astype(np.int64), split=strings("split"),
        v0_mps=table.column("v0_mps").to_numpy(zero_copy_only=False).astype(np.float64),
        accel_mps2=lists("accel_mps2", N_FUT), curvature_1pm=lists("curvature_1pm", N_FUT),
        accel_norm=lists("accel_norm", N_FUT), curvature_norm=lists("curvature_norm", N_FUT),
        history_xyz=lists("history_xyz", N_HIST, XYZ), history_yaw=lists("history_yaw", N_HIST),
        future_xyz=lists("future_xyz", N_FUT, XYZ), future_yaw=lists("future_yaw", N_FUT))
