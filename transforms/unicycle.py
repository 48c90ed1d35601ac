"""(a, κ) ground truth: training windows from egomotion, and Alpamayo-R1's unicycle fit, batched.

A window is (clip_id, t0): the ego frame at t0 (x forward, y left), 16 history poses at 10 Hz
(t0 - 1.5 ... t0 s) and 64 future poses (t0 + 0.1 ... t0 + 6.4 s). Its targets are 64
(acceleration, curvature) pairs whose unicycle integration reproduces the future.

The fit follows docs/references.md (*Alpamayo-R1*) step by step (v0 from the history, smoothed
heading, speed, acceleration, curvature; each a Tikhonov least-squares problem solved through
its normal equations with a Cholesky factorisation, the ridge ×10 on failure), for a whole batch
of windows at once: the per-window matrices are stacked and factorised together.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.interpolate import CubicSpline

from core.windows import DT_S, N_FUT, N_HIST
from engines.stage import ChunkStage
from lake import tables as T
from lake.tables import quarantine_rows, window_reason
from transforms.geometry import quat_to_matrix, slerp_quat, unwrap_from_zero


@dataclass(frozen=True)
class UnicycleParams:
    """Alpamayo-R1's release `action_space_cfg` (HF config.json), overridable."""

    dt_s: float = DT_S
    accel_mean: float = 0.029027
    accel_std: float = 0.681043
    curvature_mean: float = 0.00026922
    curvature_std: float = 0.0261483
    accel_bound: float = 9.8
    curvature_bound: float = 0.33
    theta_lambda: float = 1e-6
    theta_ridge: float = 1e-8
    v_lambda: float = 1e-6
    v_ridge: float = 1e-4
    a_lambda: float = 1e-4
    a_ridge: float = 1e-4
    kappa_lambda: float = 1e-4
    kappa_ridge: float = 1e-4
    # flags
    low_speed_mps: float = 1.0
    reversing_mps: float = -0.2
    # a window is not a training sample when a pose step implies more than this acceleration
    max_step_accel_mps2: float = 30.0

    def __post_init__(self) -> None:
        bad = {k: v for k, v in vars(self).items() if k.endswith(("std", "bound", "dt_s")) and not v > 0}
        if bad:
            raise ValueError(f"UnicycleParams: {bad} must be > 0")
        bad = {k: v for k, v in vars(self).items() if k.endswith(("lambda", "ridge")) and v < 0}
        if bad:
            raise ValueError(f"UnicycleParams: {bad} must be >= 0")


# ---------------------------------------------------------------- windows


def window_t0s(ego_start_us: int, ego_end_us: int, *, step_s: float = 0.5, min_t0_s: float = 1.6) -> np.ndarray:
    """t0 on a grid (multiples of step_s) with t0 >= 1.6 s and the whole window inside the egomotion."""
    step = round(step_s * 1e6)
    if step <= 0:
        raise ValueError(f"window step must be > 0 s, got {step_s}")
    lo = max(int(np.ceil(min_t0_s * 1e6)), ego_start_us + round((N_HIST - 1) * DT_S * 1e6))
    hi = ego_end_us - round(N_FUT * DT_S * 1e6)
    first = -(-lo // step) * step
    return np.arange(first, hi + 1, step, dtype=np.int64) if hi >= first else np.zeros(0, np.int64)


@dataclass(frozen=True)
class Windows:
    """A batch of windows in their ego frames at t0. B windows."""

    clip_id: np.ndarray  # (B,) object
    t0_us: np.ndarray  # (B,) int64
    history_xyz: np.ndarray  # (B, 16, 3); index 15 is the origin
    history_yaw: np.ndarray  # (B, 16)
    future_xyz: np.ndarray  # (B, 64, 3)
    future_yaw: np.ndarray  # (B, 64)

    def __len__(self) -> int:
        return len(self.t0_us)

    def take(self, mask: np.ndarray) -> Windows:
        return Windows(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))

    @staticmethod
    def concat(parts: list[Windows]) -> Windows:
        if not parts:
            z = np.zeros
            return Windows(np.zeros(0, object), z(0, np.int64), z((0, N_HIST, 3)), z((0, N_HIST)), z((0, N_FUT, 3)),
                           z((0, N_FUT)))
        return Windows(*(np.concatenate([getattr(p, f) for p in parts]) for f in Windows.__dataclass_fields__))


def sample_windows(clip_id: str, ego: dict[str, np.ndarray], t0_us: np.ndarray) -> Windows:
    """Resample one clip's egomotion at each window's 80 times, in the ego frame at t0.

    Like the official reader: cubic spline on translation and slerp on rotation (times relative
    to the first sample); the frame change uses the full 3D rotation, as Alpamayo's loader does:
    xyz = R_t0^-1 (xyz - xyz_t0), rot = R_t0^-1 R, yaw = atan2(R10, R00).
    """
    t = ego["timestamp"]
    offsets = np.round(np.arange(-(N_HIST - 1), N_FUT + 1) * DT_S * 1e6).astype(np.int64)  # (80,)
    times = (t0_us[:, None] + offsets[None, :]).ravel()
    if len(t0_us) and (times.min() < t[0] or times.max() > t[-1]):
        raise ValueError(f"{clip_id}: windows need {times.min()}..{times.max()} us, egomotion has {t[0]}..{t[-1]}")
    pos = np.c_[ego["x"], ego["y"], ego["z"]]
    quat_in = np.c_[ego["qx"], ego["qy"], ego["qz"], ego["qw"]]
    finite = np.isfinite(pos).all(1) & np.isfinite(quat_in).all(1)
    rel, q = (t - t[0]).astype(np.float64), (times - t[0]).astype(np.float64)
    # Interpolate over the finite samples; a window spanning a non-finite one becomes NaN below,
    # so `screen_windows` quarantines just those windows, not the clip.
    xyz = CubicSpline(rel[finite], pos[finite])(q).reshape(len(t0_us), -1, 3)
    quat = slerp_quat(rel[finite], quat_in[finite], q)
    rot = quat_to_matrix(quat).reshape(len(t0_us), -1, 3, 3)
    r0 = rot[:, N_HIST - 1]  # (B, 3, 3) at t0
    local_xyz = np.einsum("bji,bkj->bki", r0, xyz - xyz[:, N_HIST - 1: N_HIST])
    local_rot = np.einsum("bji,bkjl->bkil", r0, rot)
    yaw = np.arctan2(local_rot[..., 1, 0], local_rot[..., 0, 0])
    if not finite.all():
        bad_t = t[~finite]
        lo, hi = t0_us + offsets[0] - 10_000, t0_us + offsets[-1] + 10_000
        spans = (np.searchsorted(bad_t, hi, side="right") - np.searchsorted(bad_t, lo, side="left")) > 0
        local_xyz[spans], yaw[spans] = np.nan, np.nan
    return Windows(np.full(len(t0_us), clip_id, dtype=object), t0_us.astype(np.int64),
                   local_xyz[:, :N_HIST], yaw[:, :N_HIST], local_xyz[:, N_HIST:], yaw[:, N_HIST:])


# ---------------------------------------------------------------- the batched fit


def _diff_matrix(order: int, n: int) -> np.ndarray:
    """k-th forward-difference matrix ((n - k) x n): D2 rows [1, -2, 1], D3 rows [-1, 3, -3, 1]."""
    d = np.eye(n)
    for _ in range(order):
        d = d[1:] - d[:-1]
    return d


def _bands(dense: np.ndarray, bw: int) -> np.ndarray:
    """Lower band storage of a symmetric matrix: out[..., i, d] = A[..., i, i - d], d = 0..bw."""
    n = dense.shape[-1]
    out = np.zeros((*dense.shape[:-2], n, bw + 1))
    for d in range(bw + 1):
        out[..., d:, d] = np.diagonal(dense, offset=-d, axis1=-2, axis2=-1)
    return out


def _smoothness_bands(order: int, n: int, weight: float, bw: int, drop_first: bool = False) -> np.ndarray:
    d = _diff_matrix(order, n + int(drop_first))
    d = d[:, 1:] if drop_first else d
    return _bands(weight * (d.T @ d), bw)


def banded_cholesky_solve(h: np.ndarray, g: np.ndarray, ridge: float) -> np.ndarray:
    """Solve H x = g for a batch of symmetric positive-definite banded H.

    h: (B, n, bw+1) lower band storage (h[:, i, d] = H[i, i-d]); g: (B, n). The factorisation is
    Cholesky's, row by row, each step vectorised over the whole batch, so its cost does not grow
    with a Python loop over windows, and a banded factor costs O(n bw²) instead of O(n³).
    Where a pivot fails (rank-deficient data), that window's ridge is multiplied by 10 and it is
    factorised again, as Alpamayo's `solve_xs_eq_y` does; the others are untouched.
    """
    b, n, w = h.shape
    bw = w - 1
    chol = np.zeros_like(h)  # chol[:, i, d] = L[i, i-d]
    failed = np.zeros(b, bool)
    for i in range(n):
        for j in range(max(0, i - bw), i + 1):
            acc = h[:, i, i - j].copy()
            for k in range(max(0, i - bw), j):
                acc -= chol[:, i, i - k] * chol[:, j, j - k]
            if i == j:
                bad = ~(acc > 0)
                failed |= bad
                chol[:, i, 0] = np.sqrt(np.where(bad, 1.0, acc))
            else:
                chol[:, i, i - j] = acc / chol[:, j, 0]
    x = _banded_substitute(chol, g)
    if failed.any():
        if ridge > 1e3:
            raise ValueError(f"normal equations of {int(failed.sum())} windows are not positive definite even with "
                             f"ridge {ridge:g}; their poses are degenerate")
        bumped = max(ridge, 1e-12) * 10
        retry = h[failed].copy()
        retry[:, :, 0] += bumped - ridge
        x[failed] = banded_cholesky_solve(retry, g[failed], bumped)
    return x


def _banded_substitute(chol: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Solve L Lᵀ x = g with L in lower band storage."""
    _b, n, w = chol.shape
    bw = w - 1
    y = np.zeros_like(g)
    for i in range(n):
        acc = g[:, i].copy()
        for k in range(max(0, i - bw), i):
            acc -= chol[:, i, i - k] * y[:, k]
        y[:, i] = acc / chol[:, i, 0]
    x = np.zeros_like(g)
    for i in range(n - 1, -1, -1):
        acc = y[:, i].copy()
        for k in range(i + 1, min(n, i + bw + 1)):
            acc -= chol[:, k, k - i] * x[:, k]
        x[:, i] = acc / chol[:, i, 0]
    return x


def _trapezoid_speed(u: np.ndarray, dp: np.ndarray, dt: float, lam: float, ridge: float,
                     v_first: np.ndarray | None) -> np.ndarray:
    """min_v Σ_i ‖v_i u_i + v_{i+1} u_{i+1} - 2 Δp_i / dt‖² + (λ/dt⁶)‖D3 v‖² + ridge‖v_free‖².

    u: (B, n, 2) unit headings; dp: (B, n-1, 2). With `v_first` given, v_0 is held at it.
    Returns v (B, n). The data term's normal matrix is tridiagonal and built directly in bands.
    """
    b, n, _ = u.shape
    c = 2 * dp / dt  # (B, n-1, 2)
    h = np.zeros((b, n, 4))
    h[:, :, 0] = 2.0  # interior speeds appear in two residuals, the ends in one
    h[:, [0, -1], 0] = 1.0
    h[:, 1:, 1] = np.sum(u[:, :-1] * u[:, 1:], axis=-1)  # u_i . u_{i+1}
    g = np.zeros((b, n))
    g[:, :-1] += np.sum(u[:, :-1] * c, axis=-1)
    g[:, 1:] += np.sum(u[:, 1:] * c, axis=-1)
    h += _smoothness_bands(3, n, lam / dt**6, 3)
    if v_first is None:
        h[:, :, 0] += ridge
        return banded_cholesky_solve(h, g, ridge)
    # hold v_0: move its column to the right-hand side, solve for v_1..v_{n-1}
    g_free = g[:, 1:].copy()
    for d in range(1, 4):
        g_free[:, d - 1] -= h[:, d, d] * v_first
    h_free = h[:, 1:].copy()
    for d in range(1, 4):  # entries that referred to column 0 no longer exist
        h_free[:, d - 1, d:] = 0.0
    h_free[:, :, 0] += ridge
    return np.concatenate([v_first[:, None], banded_cholesky_solve(h_free, g_free, ridge)], axis=1)


@dataclass(frozen=True)
class UnicycleFit:
    """Fitted controls and their round trip for B windows."""

    accel_mps2: np.ndarray  # (B, 64) physical units, clipped to the bounds
    curvature_1pm: np.ndarray  # (B, 64)
    accel_norm: np.ndarray  # (B, 64) (a - mean) / std
    curvature_norm: np.ndarray  # (B, 64)
    v0_mps: np.ndarray  # (B,)
    speed_mps: np.ndarray  # (B, 65) fitted v_0 .. v_64
    heading_rad: np.ndarray  # (B, 65) smoothed θ_0 .. θ_64
    roundtrip_xy: np.ndarray  # (B, 64, 2) integration of the (clipped) controls
    rt_mean_err_m: np.ndarray  # (B,) mean xy error over the 64 future poses
    rt_max_err_m: np.ndarray  # (B,)
    low_speed: np.ndarray  # (B,) bool
    reversing: np.ndarray  # (B,) bool
    clipped: np.ndarray  # (B,) bool


def fit_unicycle(history_xy: np.ndarray, history_yaw: np.ndarray, future_xy: np.ndarray, future_yaw: np.ndarray,
                 p: UnicycleParams | None = None) -> UnicycleFit:
    """Batched Tikhonov fit of (a, κ) to windows in their ego frame at t0.

    Args:
        history_xy: (B, 16, 2), index 15 the origin. history_yaw: (B, 16).
        future_xy: (B, 64, 2). future_yaw: (B, 64).
    """
    p = p or UnicycleParams()
    dt = p.dt_s
    b = history_xy.shape[0]
    if history_xy.shape[1:] != (N_HIST, 2) or future_xy.shape[1:] != (N_FUT, 2):
        raise ValueError(f"expected history (B, {N_HIST}, 2) and future (B, {N_FUT}, 2), got {history_xy.shape}, "
                         f"{future_xy.shape}")
    bad = ~(np.isfinite(history_xy).all((1, 2)) & np.isfinite(future_xy).all((1, 2))
            & np.isfinite(history_yaw).all(1) & np.isfinite(future_yaw).all(1))
    if bad.any():
        raise ValueError(f"{int(bad.sum())} windows hold NaN/inf poses (first: index {int(np.argmax(bad))}); "
                         "screen them with `screen_windows` first")

    # 1. v0 from the history: trapezoid speeds along the (unwrapped) history headings
    th_hist = unwrap_from_zero(history_yaw)  # |yaw| < pi 1.5 s before t0, so the start needs no unwrap
    u_hist = np.stack([np.cos(th_hist), np.sin(th_hist)], -1)
    v_hist = _trapezoid_speed(u_hist, np.diff(history_xy, axis=1), dt, p.v_lambda, p.v_ridge, None)
    v0 = v_hist[:, -1]

    # 2. heading: smooth the unwrapped future yaw, θ_0 = 0 held (the same matrix for every window)
    theta_hat = unwrap_from_zero(future_yaw)  # (B, 64)
    h_theta = _smoothness_bands(3, N_FUT, p.theta_lambda / dt**6, 3, drop_first=True)
    h_theta[:, 0] += 1 + p.theta_ridge
    theta = np.concatenate([np.zeros((b, 1)), banded_cholesky_solve(np.broadcast_to(h_theta, (b, N_FUT, 4)).copy(),
                                                                    theta_hat, p.theta_ridge)], 1)

    # 3. speed along the future with v_0 held at the history's estimate
    u = np.stack([np.cos(theta), np.sin(theta)], -1)
    pos = np.concatenate([np.zeros((b, 1, 2)), future_xy], 1)
    v = _trapezoid_speed(u, np.diff(pos, axis=1), dt, p.v_lambda, p.v_ridge, v0)

    # 4. acceleration from speed differences (the same matrix for every window)
    h_a = _smoothness_bands(2, N_FUT, p.a_lambda / dt**4, 2)
    h_a[:, 0] += 1 + p.a_ridge
    accel = banded_cholesky_solve(np.broadcast_to(h_a, (b, N_FUT, 3)).copy(), np.diff(v, axis=1) / dt, p.a_ridge)

    # 5. curvature: heading change per arc length s_k = dt v_k + dt²/2 a_k; at standstill s ≈ 0
    # and only smoothness and ridge hold κ (pulled to 0), as in the reference
    s = dt * v[:, :-1] + 0.5 * dt**2 * accel
    h_k = np.broadcast_to(_smoothness_bands(2, N_FUT, p.kappa_lambda / dt**4, 2), (b, N_FUT, 3)).copy()
    h_k[:, :, 0] += s**2 + p.kappa_ridge
    kappa = banded_cholesky_solve(h_k, s * np.diff(theta, axis=1), p.kappa_ridge)

    # 6. bounds, normalisation, round trip
    accel_c = np.clip(accel, -p.accel_bound, p.accel_bound)
    kappa_c = np.clip(kappa, -p.curvature_bound, p.curvature_bound)
    clipped = (accel_c != accel).any(1) | (kappa_c != kappa).any(1)
    xy, _, _ = integrate_unicycle(accel_c, kappa_c, v0, dt)
    err = np.linalg.norm(xy - future_xy, axis=-1)
    return UnicycleFit(
        accel_mps2=accel_c, curvature_1pm=kappa_c,
        accel_norm=(accel_c - p.accel_mean) / p.accel_std, curvature_norm=(kappa_c - p.curvature_mean) / p.curvature_std,
        v0_mps=v0, speed_mps=v, heading_rad=theta, roundtrip_xy=xy, rt_mean_err_m=err.mean(1), rt_max_err_m=err.max(1),
        low_speed=np.maximum(np.abs(v0), np.abs(v).max(1)) < p.low_speed_mps,
        reversing=v.min(1) < p.reversing_mps, clipped=clipped)


def integrate_unicycle(accel: np.ndarray, curvature: np.ndarray, v0: np.ndarray,
                       dt: float = DT_S) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inverse: (a, κ) (B, T) from v0 (B,), θ0 = 0, p0 = 0 -> xy (B, T, 2), yaw (B, T), speed (B, T).

    v_{k+1} = v_k + a_k dt; θ_{k+1} = θ_k + κ_k v_k dt + κ_k a_k dt²/2; positions by the trapezoid
    rule on v (cos θ, sin θ). Returns the states at steps 1..T.
    """
    v = np.concatenate([v0[:, None], v0[:, None] + np.cumsum(accel * dt, axis=1)], 1)  # (B, T+1)
    dtheta = curvature * v[:, :-1] * dt + curvature * accel * dt**2 / 2
    theta = np.concatenate([np.zeros_like(v0)[:, None], np.cumsum(dtheta, axis=1)], 1)
    vel = v[..., None] * np.stack([np.cos(theta), np.sin(theta)], -1)  # (B, T+1, 2)
    xy = np.cumsum(0.5 * dt * (vel[:, :-1] + vel[:, 1:]), axis=1)
    return xy, theta[:, 1:], v[:, 1:]


def screen_windows(w: Windows, p: UnicycleParams | None = None) -> tuple[np.ndarray, list[str]]:
    """Which windows can be fitted at all: (ok mask, reason per window, "" when ok).

    NaN/inf poses and pose jumps (a step implying > max_step_accel_mps2, i.e. a teleport in
    the egomotion) make a window unusable as a training target: it is quarantined, not flagged.
    """
    p = p or UnicycleParams()
    xy = np.concatenate([w.history_xyz[..., :2], w.future_xyz[..., :2]], 1)  # (B, 80, 2)
    finite = np.isfinite(xy).all((1, 2)) & np.isfinite(w.history_yaw).all(1) & np.isfinite(w.future_yaw).all(1)
    with np.errstate(invalid="ignore"):
        jerk_acc = np.linalg.norm(np.diff(xy, n=2, axis=1), axis=-1) / p.dt_s**2  # (B, 78)
        worst = np.where(finite, np.nanmax(np.where(np.isfinite(jerk_acc), jerk_acc, 0), axis=1), 0.0)
    jump = finite & (worst > p.max_step_accel_mps2)
    reasons = []
    for i in range(len(w)):
        if not finite[i]:
            reasons.append("window poses hold NaN/inf")
        elif jump[i]:
            k = int(np.argmax(jerk_acc[i]))
            reasons.append(f"pose jump near t0{(k + 1 - (N_HIST - 1)) * p.dt_s:+.1f} s: a step implies "
                           f"{worst[i]:.0f} m/s² (> {p.max_step_accel_mps2:g})")
        else:
            reasons.append("")
    return finite & ~jump, reasons


# ---------------------------------------------------------------- a chunk's targets


@dataclass(frozen=True)
class ChunkTargets:
    table: pa.Table  # rows of lake.tables.UNICYCLE_TARGETS
    quarantine: tuple[tuple[str, int, str], ...]  # (clip_id, t0_us, reason)


def _check_same_index(chunk: str, clip: str, listed: tuple[int, int], found: tuple[int, int] | None) -> None:
    """`clips` and `egomotion` of a chunk must come from the same index run. The index commits them
    one after the other (clips last); a kill between the commits leaves a mix that a re-run repairs,
    and until then this refuses to fit targets on it."""
    if found != listed:
        raise ValueError(f"{chunk}: clip {clip}: `clips` lists egomotion {listed[0]}..{listed[1]} us but `egomotion` "
                         f"holds {'no rows' if found is None else f'{found[0]}..{found[1]} us'}: the silver tables come "
                         "from two index runs (one was interrupted); re-materialize clip_index for this chunk")


def targets_for_chunk(egomotion: pa.Table, clips: pa.Table, *, chunk: str, params: UnicycleParams | None = None,
                      step_s: float = 0.5) -> ChunkTargets:
    """All windows of a chunk's usable clips, screened, then fitted in one batch."""
    p = params or UnicycleParams()
    ok_clips = clips.filter(pc.equal(clips.column("status"), "ok"))
    split_of = dict(zip(ok_clips.column("clip_id").to_pylist(), ok_clips.column("split").to_pylist(), strict=True))
    ego = egomotion.filter(pc.is_in(egomotion.column("clip_id"), pa.array(list(split_of), pa.string())))
    ego = ego.sort_by([("clip_id", "ascending"), ("timestamp", "ascending")])
    ids = ego.column("clip_id").to_numpy(zero_copy_only=False)
    cols = {c: ego.column(c).to_numpy() for c in ("timestamp", "x", "y", "z", "qx", "qy", "qz", "qw")}
    bounds = np.flatnonzero(ids[1:] != ids[:-1]) + 1 if len(ids) else np.zeros(0, int)
    span = dict(zip(ok_clips.column("clip_id").to_pylist(), zip(ok_clips.column("egomotion_start_us").to_pylist(),
                                                                ok_clips.column("egomotion_end_us").to_pylist(),
                                                                strict=True), strict=True))
    parts, seen = [], set()
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(ids)], strict=True):
        if hi <= lo:
            continue
        clip_cols = {c: v[lo:hi] for c, v in cols.items()}
        seen.add(clip := str(ids[lo]))
        _check_same_index(chunk, clip, span[clip], (int(clip_cols["timestamp"][0]), int(clip_cols["timestamp"][-1])))
        t0 = window_t0s(int(clip_cols["timestamp"][0]), int(clip_cols["timestamp"][-1]), step_s=step_s)
        if len(t0):
            parts.append(sample_windows(str(ids[lo]), clip_cols, t0))
    for clip in sorted(set(span) - seen):
        _check_same_index(chunk, clip, span[clip], None)
    windows = Windows.concat(parts)
    usable, reasons = screen_windows(windows, p)
    quarantine = tuple((str(windows.clip_id[i]), int(windows.t0_us[i]), reasons[i]) for i in np.flatnonzero(~usable))
    w = windows.take(usable)
    fit = fit_unicycle(w.history_xyz[..., :2], w.history_yaw, w.future_xyz[..., :2], w.future_yaw, p)
    n = len(w)

    def lists(a: np.ndarray) -> pa.Array:
        flat = np.ascontiguousarray(a.reshape(n, -1))
        return pa.ListArray.from_arrays(pa.array(np.arange(0, flat.size + 1, max(flat.shape[1], 1), dtype=np.int32)),
                                        pa.array(flat.ravel()))

    table = pa.table({
        "chunk": pa.array([chunk] * n, pa.string()), "clip_id": pa.array(w.clip_id.tolist(), pa.string()),
        "t0_us": w.t0_us, "split": pa.array([split_of[c] for c in w.clip_id], pa.string()),
        "accel_mps2": lists(fit.accel_mps2), "curvature_1pm": lists(fit.curvature_1pm),
        "accel_norm": lists(fit.accel_norm), "curvature_norm": lists(fit.curvature_norm), "v0_mps": fit.v0_mps,
        "history_xyz": lists(w.history_xyz), "history_yaw": lists(w.history_yaw), "future_xyz": lists(w.future_xyz),
        "future_yaw": lists(w.future_yaw), "rt_mean_err_m": fit.rt_mean_err_m, "rt_max_err_m": fit.rt_max_err_m,
        "low_speed": fit.low_speed, "reversing": fit.reversing, "clipped": fit.clipped,
        "params": pa.array([json.dumps(asdict(p), sort_keys=True)] * n, pa.string()),
    })
    return ChunkTargets(table, quarantine)


@dataclass(frozen=True)
class TargetsPlan:
    chunk: str
    params: UnicycleParams
    step_s: float = 0.5


STAGE = "unicycle_targets"


def targets_part(plan: TargetsPlan, clip_ids: list[str], inputs: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """The targets of some clips (an engine part function: see engines/__init__.py).

    Inputs: `egomotion` and `clips` rows of those clips. Windows are fitted independently, so a
    part's batch gives the same numbers as the chunk's batch, up to floating-point rounding.
    """
    out = targets_for_chunk(inputs["egomotion"], inputs["clips"], chunk=plan.chunk, params=plan.params,
                            step_s=plan.step_s)
    unusable = [(c, "unusable_window", window_reason(t, r)) for c, t, r in out.quarantine]
    return {"targets": out.table, "quarantine": quarantine_rows(plan.chunk, STAGE, unusable)}


# The stage: windows fitted from the chunk's usable clips; the windows it cannot use are quarantined.
TARGETS_STAGE = ChunkStage(STAGE, targets_part, reads={"egomotion": T.EGOMOTION, "clips": T.CLIPS},
                           writes=(("quarantine", T.QUARANTINE), ("targets", T.UNICYCLE_TARGETS)))
