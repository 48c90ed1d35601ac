"""A labeler in its own environment: the standin labeler on transformers 4, beside the pipeline's 5.

The environment is built by the same script as `make labeler-env` (about 30 s: transformers 4.57
and its tokenizers from PyPI; torch lent by the pipeline's environment), then the labeler runs
as a separate process, by hand and through Dagster Pipes from `commander_labels`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import dagster as dg
import pytest
import transformers

from dagster_project.assets import ingest, labels, targets
from dagster_project.partitions import CHUNKS_PARTITION
from dagster_project.resources import EngineResource, LakeResource, PAISourceResource
from labelers.build import window_contexts
from labelers.registry import make_labeler
from labelers.trace import Trace
from lake import io
from lake import tables as T
from transforms.index import index_chunk
from transforms.source import mirror_source
from transforms.unicycle import targets_for_chunk

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def standin_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = tmp_path_factory.mktemp("envs") / "standin"
    out = subprocess.run([str(REPO / "scripts/labeler-env.sh"), "standin", str(env)], cwd=REPO, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "transformers 4.57.1" in out.stdout
    return env


def test_the_labeler_runs_in_its_environment_with_another_transformers(standin_env: Path, twin_dir: Path,
                                                                      tmp_path: Path) -> None:
    assert transformers.__version__.startswith("5.")  # the pipeline's
    files = mirror_source(twin_dir).fetch_chunk(0)
    ix = index_chunk(files, chunk="chunk_0000")
    contexts = window_contexts(targets_for_chunk(ix.egomotion, ix.clips, chunk="chunk_0000").table, None)[:6]
    labeler = make_labeler("standin", files, env_dir=standin_env, workdir=tmp_path / "work")
    results = labeler.label(contexts)
    assert len(results) == 6 and all(isinstance(r, Trace) for r in results)
    assert {r.extra["transformers"] for r in results} == {"4.57.1"}  # the labeler's own
    header = labeler.last_header  # type: ignore[attr-defined]
    assert header["packages"]["transformers"] == "4.57.1" and header["version"] == labeler.version
    assert not list((tmp_path / "work").iterdir())  # the exchange files go once the results are read


def test_commander_labels_launches_it_through_dagster_pipes(standin_env: Path, twin_dir: Path, tmp_path: Path) -> None:
    inst = dg.DagsterInstance.ephemeral()
    inst.add_dynamic_partitions(CHUNKS_PARTITION, ["chunk_0000"])
    res = {"lake": LakeResource(root=str(tmp_path / "lake")),
           "source": PAISourceResource(kind="mirror", mirror_dir=str(twin_dir)), "engine": EngineResource()}
    assert dg.materialize([ingest.raw_chunks, ingest.chunk_index, targets.unicycle_targets], partition_key="chunk_0000",
                          instance=inst, resources=res).success
    result = dg.materialize([labels.commander_labels], partition_key="chunk_0000", instance=inst, resources=res,
                            run_config={"ops": {"commander_labels": {"config": {
                                "labeler": "standin", "labeler_env": str(standin_env)}}}})
    assert result.success
    rows = io.read(tmp_path / "lake", T.COMMANDER_LABELS, where={"labeler": "standin"})
    assert rows.num_rows == io.read(tmp_path / "lake", T.UNICYCLE_TARGETS).num_rows > 0
    assert {json.loads(t)["extra"]["transformers"] for t in rows.column("trace").to_pylist()} == {"4.57.1"}
    logs = [e.message for e in inst.all_logs(result.run_id) if e.message]
    assert any("labeler standin" in m and "transformers 4.57.1" in m for m in logs), logs[-20:]
