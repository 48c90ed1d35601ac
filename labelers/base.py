"""The labeler interface: windows in, one `Trace` (or a flagged failure) per window out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from labelers.trace import Trace


@dataclass(frozen=True)
class Scene:
    """Physical facts around the ego over a window (the twin knows them; perception could too).

    Sampled at 10 Hz from t0 (index 0) to t0 + 6.4 s (index 64). No driver intent in here:
    that is what labelers are checked against, not what they read.
    """

    n_lanes: int
    lane: np.ndarray  # (65,) int, the ego's lane (0 = rightmost of its direction)
    d_m: np.ndarray  # (65,) lateral offset from the reference line (left +)
    lead_class: str  # class of the vehicle ahead in the ego's lane at t0 ("" when none)
    lead_gap_m: np.ndarray  # (65,) gap to the vehicle ahead in the ego's lane(s); nan when none
    lead_speed_mps: np.ndarray  # (65,)
    right_neighbour: np.ndarray  # (65,) bool, being overtaken: a clearly slower vehicle to the right (40 m ahead
    # to 60 m behind) that was ahead in the ego's lane within the last 12 s
    passed_class: str  # class of the vehicle being overtaken during the span ("" when none)
    stop_line_m: float  # distance from the front bumper to the next stop line at t0; nan when none ahead
    stop_line_behind_m: float  # distance driven since the front bumper crossed the last stop line; nan if none
    road_curvature_1pm: np.ndarray  # (65,) curvature of the road at the ego's position
    oncoming: int  # oncoming vehicles within 100 m at t0


@dataclass(frozen=True)
class WindowContext:
    """What a labeler may look at for one window."""

    clip_id: str
    t0_us: int
    v0_mps: float
    accel_mps2: np.ndarray  # (64,)
    curvature_1pm: np.ndarray  # (64,)
    future_xyz: np.ndarray  # (64, 3) ego frame at t0
    future_yaw: np.ndarray  # (64,)
    scene: Scene | None = None  # twin ground truth, when the source has it
    image: np.ndarray | None = None  # (H, W, 3) uint8 front camera at t0, for image labelers

    @property
    def key(self) -> str:
        return f"{self.clip_id}/{self.t0_us}"


@dataclass(frozen=True)
class LabelFailure:
    """A window a labeler could not label; flagged, never stored as a label."""

    reason: str


class LabelerUnavailable(RuntimeError):
    """The labeler cannot run here (package, weights or GPU missing); the message says what to do."""


class Labeler(ABC):
    name: str
    version: str
    # PAI features read beyond the ones every chunk is fetched with (transforms.pai_layout.REQUIRED_FEATURES)
    features: tuple[str, ...] = ()

    @abstractmethod
    def label(self, windows: list[WindowContext]) -> list[Trace | LabelFailure]:
        """One result per window, in order."""
