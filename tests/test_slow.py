"""Slow tests, run by .ci/run (deselected in the quick suite): the main job and a real-size clip."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lake import io
from lake import tables as T
from tests.conftest import free_port, serving
from transforms import pai_layout as L
from transforms.index import index_chunk
from transforms.pai_reader import LocalPAIDataset
from transforms.source import mirror_source
from transforms.twin.writer import TwinConfig, write_twin

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Demo:
    root: Path
    env: dict[str, str]
    stdout: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The README's main command with its defaults, only the directories moved."""
    tmp_path = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYWHEEL_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(tmp_path / "home"), FLYWHEEL_LAKE=str(tmp_path / "lake"),
               FLYWHEEL_TWIN_DIR=str(tmp_path / "twin"))
    proc = subprocess.run([sys.executable, "-m", "flywheel.cli", "demo"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return Demo(tmp_path, env, proc.stdout)


@pytest.mark.slow
def test_main_job_runs_the_graph_from_a_fresh_dagster_home_and_the_agent_learns(demo: Demo) -> None:
    """The main job (2 chunks x 8 clips, 256x144, 20 s; tiny agent) from a fresh DAGSTER_HOME: every
    table fills, the benchmark set is built and scored, the output leads with the agent against the
    strongest baseline (with intervals), the agent beats constant velocity, and the NAVSIM-style
    score table is printed."""
    proc, tmp_path = demo, demo.root
    counts = dict(re.findall(r"^(\S+)\s+([\d,]+)$", proc.stdout, re.M))
    assert counts["silver.clips"] == "16" and int(counts["gold.unicycle_targets"].replace(",", "")) > 300, proc.stdout
    assert counts["eval.training_runs"] == "1", proc.stdout
    # the headline leads the eval's output: the benchmark set (48 clips), the strongest baseline, the interval
    heads = re.findall(r"^  (EPDMS|ADE@6\.4 s) on benchmark \((\d+) clips, (\d+) windows\): field agent ([\d.]+)(?: m)? "
                       r"(beats|loses to|ties with) (constant_\w+) ([\d.]+)", proc.stdout, re.M)
    assert [h[0] for h in heads] == ["EPDMS", "ADE@6.4 s"] and int(heads[0][1]) == 48, proc.stdout[-5000:]
    print("default run:", *heads, sep="\n  ")
    assert re.search(r"val ADE@6\.4 s: agent [\d.]+ m (beats|loses to|ties with) constant", proc.stdout)
    # the closed loop drove the four missions after it and printed its table and the worst route's GIF
    assert re.search(r"^closed_loop_eval: run \S+, 4 routes in the twin", proc.stdout, re.M), proc.stdout[-3000:]
    assert re.search(r"^\| driver_model \| 4 \| ", proc.stdout, re.M) and "video: " in proc.stdout
    assert counts["eval.closed_loop_routes"] == "16", proc.stdout
    # navsim_eval ran in the same job and printed its score table: the logged future tops it
    assert counts["eval.eval_runs"] != "0" and "navsim_eval: run" in proc.stdout, proc.stdout[-3000:]
    rows = re.findall(r"^\| (\w+) \| \d+ \|(.*)\| ([\d.]+) \|$", proc.stdout, re.M)  # policy, ..., EPDMS
    table = {p: float(e) for p, _, e in rows}
    assert set(table) == {"logged", "constant_velocity", "constant_controls", "field_agent", "wrong_command"}, table
    assert table["logged"] >= 0.95 and all(v <= table["logged"] for v in table.values()), table
    ade = {p: float(cells.split("|")[3]) for p, cells, _ in rows}  # ADE 6.4 s over every evaluated window
    assert ade["field_agent"] < ade["constant_velocity"], ade
    # every table's checks ran with its asset and passed; the report covers them all
    m = re.search(r"data QA: (\d+) table partitions, (\d+) expectations, (\d+) failed", proc.stdout)
    # 8 chunk-partitioned tables x 2 chunks, and 7 validated whole (the closed loop's routes, the runs leaderboard)
    assert m and int(m[1]) == 8 * 2 + 7 and int(m[3]) == 0, proc.stdout[-3000:]
    # the leaderboard: the run's agent and baselines, EPDMS first with its interval
    assert counts["eval.runs"] != "0" and "runs leaderboard (1 runs" in proc.stdout, proc.stdout[-3000:]
    assert re.search(r"^\| [\d.]+ \[[\d.]+, [\d.]+\] \| \S+ \| field_agent \|", proc.stdout, re.M), proc.stdout[-3000:]
    report = (tmp_path / "lake" / "qa_reports" / "latest.html").read_text()
    assert "egomotion" in report and "eval_windows" in report and "closed_loop_routes" in report
    assert "FAILED" not in report


def _in_venv(command: str, env: dict[str, str], timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    """`command` as a user types it: in a shell with the repo's venv activated, from the repo root."""
    activate = Path(sys.executable).parent / "activate"
    return subprocess.run(["bash", "-c", f"source {shlex.quote(str(activate))} && {command}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout_s)


def _train_runs(root: Path) -> int:
    return io.read(root / "lake", T.TRAINING_RUNS).num_rows


@pytest.mark.slow
def test_the_cards_commands_work_as_written(demo: Demo) -> None:
    """`dagster asset materialize --select train_field_agent`, `dg launch --assets train_field_agent`
    and `dg dev`, typed literally in the activated venv at the repo root, on the demo's lake and
    instance. The first trains a run with the asset's default config (the demo's is shorter: a new
    run); the second, the same config again, finds it finished; `dg dev` serves the code location."""
    import dagster as dg

    runs, key = _train_runs(demo.root), dg.AssetKey("train_field_agent")
    with dg.DagsterInstance.from_config(str(demo.root / "home")) as instance:
        seen = len(instance.fetch_materializations(key, limit=1000).records)
        for command, new_runs in (("dagster asset materialize --select train_field_agent", 1),
                                  ("dg launch --assets train_field_agent", 0)):
            proc = _in_venv(command, demo.env, timeout_s=1800)
            assert proc.returncode == 0, f"{command}:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
            # the run's record in the demo's instance, not its log lines (whose capture varies by executor)
            records = instance.fetch_materializations(key, limit=1000).records
            assert len(records) == seen + 1, command
            seen = len(records)
            assert _train_runs(demo.root) == runs + new_runs, command
            runs += new_runs
        # dg launch: the same (default) config again, so the run the first command trained, reported
        assert records[0].asset_materialization.metadata["already_trained"].value is True
    port = free_port()
    activate = shlex.quote(str(Path(sys.executable).parent / "activate"))
    with serving(["bash", "-c", f"source {activate} && exec dg dev -p {port} -h 127.0.0.1"], cwd=REPO, env=demo.env,
                 port=port, log_path=demo.root / "dg-dev.log") as url:
        query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
        req = urllib.request.Request(f"{url}/graphql", data=query, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            keys = {"/".join(n["assetKey"]["path"]) for n in json.loads(r.read())["data"]["assetNodes"]}
    assert {"raw_chunks", "train_field_agent", "navsim_eval"} <= keys, keys


@pytest.mark.slow
@pytest.mark.timeout(1800)  # run alone, the demo fixture (~11 min) counts against it too
def test_flywheel_turn_by_hand_on_the_demo(demo: Demo) -> None:
    """`flywheel turn` on the demo's lake and instance: trains, evaluates, mines the hard examples,
    acquires twin clips in the request's mix, registers and ingests them, and prints what changed;
    every acquired clip walks back to the evaluated run whose failures asked for it."""
    before = io.read(demo.root / "lake", T.SHARD_MANIFEST).to_pylist()
    proc = _in_venv("flywheel turn --steps 60 --val-every 60 --budget-windows 50 --clips 2", demo.env, 1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    print(proc.stdout[-2500:])
    assert re.search(r"^mined: \d+ hard windows of \d+; request:", proc.stdout, re.M), proc.stdout[-2000:]
    assert re.search(r"^acquired: 2 clips .*; ingested partitions \['chunk_10000'\]", proc.stdout, re.M), \
        proc.stdout[-2000:]
    lake = demo.root / "lake"
    acq = io.read(lake, T.ACQUISITIONS).to_pylist()
    clips = {c["clip_id"] for c in io.read(lake, T.CLIPS, chunk="chunk_10000").to_pylist()}
    assert clips == {a["clip_id"] for a in acq}  # ingested, and nothing else in that partition
    request = io.read(lake, T.DATA_REQUESTS, where={"run_id": acq[0]["run_id"]}).to_pylist()
    assert [r["request_id"] for r in request] == [acq[0]["request_id"]]
    assert io.read(lake, T.EVAL_RUNS, where={"run_id": acq[0]["run_id"]}).num_rows > 0
    after = io.read(lake, T.SHARD_MANIFEST).to_pylist()
    grown = sum(r["samples"] for r in after if r["split"] == "train") - sum(
        r["samples"] for r in before if r["split"] == "train")
    assert f"(+{grown})" in proc.stdout and grown >= 0


@pytest.mark.slow
def test_real_size_clip_is_read_by_the_official_reader(tmp_path: Path) -> None:
    cfg = TwinConfig(chunks=1, clips_per_chunk=1, seed=1, width=1920, height=1080, seconds=8.0)
    root = write_twin(tmp_path / "twin", cfg)
    ds = LocalPAIDataset(root)
    clip = ds.clip_index.index[0]
    imgs, _ = ds.get_clip_feature(clip, L.FRONT_CAMERA).decode_images_from_timestamps(np.array([4_000_000]))
    assert imgs.shape == (1, 1080, 1920, 3)
    intr = ds.get_clip_feature(clip, "camera_intrinsics").camera_models[L.FRONT_CAMERA]
    assert (intr.width, intr.height) == (1920, 1080) and 850 < intr.th2r.coef[1] < 1000  # ~917 px/rad at 120 deg
    ix = index_chunk(mirror_source(root).fetch_chunk(0), chunk="chunk_0000")
    assert ix.counts()["clips_ok"] == 1 and ix.clips.column("image_width")[0].as_py() == 1920
