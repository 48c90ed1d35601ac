"""NAVSIM's aggregate formulas and trajectory format."""

from __future__ import annotations

import numpy as np
import pytest

from evals.pdm import epdms, navsim_poses, pdms


def test_pdms_weights_and_multipliers() -> None:
    assert pdms(1, 1, 1, 1, 1) == pytest.approx(1.0)
    assert pdms(1, 1, 1, 0.5, 1) == pytest.approx((5 + 2.5 + 2) / 12)
    assert pdms(1, 1, 0, 1, 0) == pytest.approx(5 / 12)
    assert pdms(0, 1, 1, 1, 1) == 0.0 and pdms(1, 0, 1, 1, 1) == 0.0  # multipliers zero the score
    assert pdms(0.5, 1, 1, 1, 1) == pytest.approx(0.5)  # a static-object collision halves it
    np.testing.assert_allclose(pdms(np.ones(3), np.ones(3), np.array([1, 0, 1]), np.ones(3), np.ones(3)),
                               [1, 7 / 12, 1])


def test_epdms_weights_and_multipliers() -> None:
    assert epdms(1, 1, 1, 1, 1, 1, 1, 1, 1) == pytest.approx(1.0)
    assert epdms(1, 1, 1, 1, ep=0, ttc=1, lk=1, hc=1, ec=1) == pytest.approx(11 / 16)
    assert epdms(1, 1, 1, 1, ep=1, ttc=1, lk=0, hc=0, ec=0) == pytest.approx(10 / 16)
    assert epdms(1, 1, 0.5, 1, 1, 1, 1, 1, 1) == pytest.approx(0.5)  # DDC multiplies in v2
    assert epdms(1, 1, 1, 0, 1, 1, 1, 1, 1) == 0.0
    with pytest.raises(ValueError, match=r"sub-scores must lie in \[0, 1\]"):
        epdms(1, 1, 1, 1, 1.2, 1, 1, 1, 1)


def test_navsim_poses_pick_2_hz_from_10_hz() -> None:
    t = 0.1 * np.arange(1, 65)
    xy = np.stack([10 * t, 0.1 * t], -1)
    poses = navsim_poses(xy, 0.01 * t)
    assert poses.shape == (8, 3)
    np.testing.assert_allclose(poses[:, 0], 10 * 0.5 * np.arange(1, 9))
    np.testing.assert_allclose(poses[:, 2], 0.01 * 0.5 * np.arange(1, 9))
    assert navsim_poses(np.stack([xy, xy]), np.stack([t, t])).shape == (2, 8, 3)
    with pytest.raises(ValueError, match="need >= 40 steps"):
        navsim_poses(xy[:30], t[:30])
