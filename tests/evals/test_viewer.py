"""The Rerun recordings: a clip's windows (`flywheel view`), navsim_eval's worst windows, a closed-loop route.
Recordings are read back with the `rerun` CLI that ships in rerun-sdk (verify, print)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from evals.benchmark import build_twin_lake
from evals.closed_loop.routes import make_routes
from evals.closed_loop.runner import LoopConfig, PrivilegedDriver, run_route
from evals.viewer import implied_controls, record_route
from flywheel.cli import main
from lake import io
from lake import tables as T
from transforms.baselines import constant_controls
from transforms.shards import ShardConfig
from transforms.twin.writer import TwinConfig

RERUN = str(Path(sys.executable).with_name("rerun"))


def rrd_rows(path: Path) -> Counter:
    """Rows per entity path of a recording, from `rerun rrd print` (after `rerun rrd verify` passes)."""
    ok = subprocess.run([RERUN, "rrd", "verify", str(path)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    out = subprocess.run([RERUN, "rrd", "print", str(path)], capture_output=True, text=True, check=True).stdout
    rows: Counter = Counter()
    for n, entity in re.findall(r"^Chunk\(\S+\) with (\d+) rows \([^)]*\) - (\S+)", out, re.M):
        rows[entity] += int(n)
    return rows


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("viewer")
    build_twin_lake(root / "lake", root / "twin", TwinConfig(chunks=1, clips_per_chunk=2, seconds=10.0, seed=5),
                    ShardConfig(image_width=128, image_height=72), log=lambda _: None)
    return root / "lake"


def test_flywheel_view_records_every_window_of_a_clip_in_time_order(lake: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FLYWHEEL_LAKE", str(lake))
    clip = io.read(lake, T.CLIPS).column("clip_id").to_pylist()[0]
    windows = io.read(lake, T.UNICYCLE_TARGETS, where={"clip_id": clip}).num_rows
    out = tmp_path / "clip.rrd"
    assert main(["view", clip[:8], "--no-open", "--out", str(out)]) == 0
    assert f"{windows} windows of clip {clip} (baselines only)" in capsys.readouterr().out  # no run trained here
    rows = rrd_rows(out)
    assert windows >= 5 and rows["/camera"] == windows and rows["/command"] == windows, rows
    for entity in ("/bev/logged", "/bev/history", "/bev/constant_velocity", "/bev/constant_controls",
                   "/controls/accel/logged", "/controls/curvature/constant_controls", "/ego/v_mps"):
        assert rows[entity] == windows, (entity, rows)
    assert "/bev/field_agent" not in rows


def test_view_names_an_unknown_clip_and_some_that_exist(lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_LAKE", str(lake))
    with pytest.raises(SystemExit, match=r"clip 'no-such-clip' is in neither .* some that are: \['"):
        main(["view", "no-such-clip", "--no-open"])


def test_implied_controls_recover_the_controls_a_plan_was_driven_with() -> None:
    xy, yaw = constant_controls(np.array([10.0]), np.array([0.5]), np.array([0.01]))
    ac = implied_controls(xy[0], yaw[0], 10.0)
    # step lengths give each step's mean speed: the first step sees half the acceleration
    np.testing.assert_allclose(ac[1:, 0], 0.5, atol=1e-4)  # chords of a curve are a hair short
    np.testing.assert_allclose(ac[:, 1], 0.01, rtol=1e-3)


def test_a_closed_loop_route_is_recorded_step_by_step(tmp_path: Path) -> None:
    route = make_routes(["stop_and_go"], 1, seconds=4.0)[0]
    rec = run_route(route, PrivilegedDriver(), LoopConfig(mode="sync", execute_steps=1))
    path = record_route(rec, tmp_path / "route.rrd", every=2)
    rows = rrd_rows(path)
    steps = len(rec.ego)
    assert rows["/ego/speed_mps"] == steps and rows["/camera"] == (steps + 1) // 2 == rows["/bev"], rows
    assert rows["/events"] >= len(rec.commands) >= 4, (rows, rec.commands)  # the Commander speaks at 1 Hz
