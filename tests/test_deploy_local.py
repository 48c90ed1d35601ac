"""The compose topology without Docker, for real: PostgreSQL, `dagster api grpc`, `dagster-daemon run`
and the webserver as processes (flywheel/deploy_local.py, `make deploy-local`), with deploy/dagster.yaml
and deploy/workspace.yaml as shipped. The daemon discovers a twin chunk, the schedule's ticks queue
the backfill runs, the code server executes them; then the faults of a deployment: Postgres restarted
between ticks, two ticks over one missing partition, the code server killed mid-run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import PARTITION_NAME_TAG

from flywheel.deploy_local import LocalDeployment, free_port, pg_tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

INGEST = ["raw_chunks", "clip_index", "egomotion", "frames", "unicycle_targets", "commander_labels",
          "webdataset_shards"]
DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
REPORT: dict[str, object] = {}  # what the closing note quotes; printed at the end (pytest -s)
LOCATION = {"repositoryLocationName": "av_flywheel", "repositoryName": "__repository__"}
TWIN = {"FLYWHEEL_TWIN_CHUNKS": "1", "FLYWHEEL_TWIN_CLIPS": "2", "FLYWHEEL_TWIN_SEED": "5",
        "FLYWHEEL_TWIN_WIDTH": "96", "FLYWHEEL_TWIN_HEIGHT": "64", "FLYWHEEL_TWIN_SECONDS": "10"}


def _have_postgres() -> bool:
    try:
        pg_tool("postgres")
        return True
    except RuntimeError:
        return False


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    if not _have_postgres():
        pytest.skip("no PostgreSQL server here: apt-get install postgresql (.ci/run does)")
    # not under pytest's 0700 tmp: the server runs as `postgres` when the tests run as root
    root = Path(tempfile.mkdtemp(prefix="flywheel-deploy-"))
    root.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYWHEEL_", "DAGSTER_", "HF_"))}
    env |= TWIN | {"FLYWHEEL_LAKE": str(root / "lake"), "FLYWHEEL_TWIN_DIR": str(root / "twin"),
                   # a tick every minute and a look at the source every 5 s, instead of hourly and 5 min
                   "FLYWHEEL_BACKFILL_CRON": "* * * * *", "FLYWHEEL_DISCOVERY_INTERVAL_S": "5"}
    dep = LocalDeployment(root, ui_port=free_port(), code_port=free_port(), env=env)
    try:
        with dep:
            yield dep
        assert not any(s.running() for s in dep.services.values())
    finally:  # the logs outlive the cluster, beside pytest's other temporary files
        kept = tmp_path_factory.mktemp("deploy-logs")
        for log in [*(root / "logs").glob("*.log"), root / "postgres" / "postgres.log"]:
            if log.exists():
                shutil.copy(log, kept / log.name)
        shutil.rmtree(root, ignore_errors=True)


def _gql(dep: LocalDeployment, query: str, **variables: object) -> dict:
    req = urllib.request.Request(f"{dep.url}/graphql", json.dumps({"query": query, "variables": variables}).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise WebserverError(f"{e}: {dep.services['webserver'].tail(2000)}") from e
    assert "errors" not in body, body
    return body["data"]


class WebserverError(RuntimeError):
    pass


def _until[T](what: str, fn: Callable[[], T | None], dep: LocalDeployment, timeout_s: float = 300) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        for svc in dep.services.values():
            svc.check()
        if (value := fn()):
            return value
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {n}\n{s.tail(2500)}" for n, s in dep.services.items() if n != "postgres")
            pytest.fail(f"{what}: not within {timeout_s:.0f} s\n{tails}")
        time.sleep(1)


def _instance(dep: LocalDeployment, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    """The deployment's instance, opened here as the webserver opens it: dagster.yaml + the same variables."""
    for k, v in dep.dagster_env().items():
        if k.startswith("DAGSTER_"):
            monkeypatch.setenv(k, v)
    return dg.DagsterInstance.from_config(str(dep.home))


def _runs(instance: dg.DagsterInstance, key: str) -> list[dg.DagsterRun]:
    return list(reversed(instance.get_runs(dg.RunsFilter(tags={PARTITION_NAME_TAG: key}))))  # oldest first


def _ticks(dep: LocalDeployment) -> list[dict]:
    data = _gql(dep, """query($sel: ScheduleSelector!) { scheduleOrError(scheduleSelector: $sel) {
        ... on Schedule { scheduleState { ticks(limit: 20) { tickId status timestamp skipReason runIds
        error { message } } } } } }""", sel=LOCATION | {"scheduleName": "incremental_backfill"})
    return sorted(data["scheduleOrError"]["scheduleState"]["ticks"], key=lambda t: t["timestamp"])


def _materialized_by(instance: dg.DagsterInstance, asset: str, key: str) -> set[str]:
    recs = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset),
                                                                 asset_partitions=[key]), limit=20).records
    return {r.run_id for r in recs}


def _wait_for_status(instance: dg.DagsterInstance, run_id: str, statuses: set[dg.DagsterRunStatus],
                     dep: LocalDeployment, timeout_s: float = 300) -> dg.DagsterRun:
    return _until(f"run {run_id} to reach {sorted(s.value for s in statuses)}",
                  lambda: (r := instance.get_run_by_id(run_id)) and r.status in statuses and r, dep, timeout_s)


def test_scheduled_backfill_and_faults_through_the_daemon(deployment: LocalDeployment,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    dep = deployment
    REPORT["processes"] = {n: {"pid": sv.pid, "cmd": " ".join(Path(sv.cmd[0]).name if i == 0 else c
                                                             for i, c in enumerate(sv.cmd))}
                           for n, sv in dep.services.items()}
    instance = _instance(dep, monkeypatch)
    assert type(instance.run_launcher).__name__ == "CodeServerRunLauncher"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert "postgres" in type(instance.run_storage).__name__.lower()
    # as a person would in the UI: switch the sensor and the schedule on through the webserver
    for kind, name in (("Sensor", "new_chunks"), ("Schedule", "incremental_backfill")):
        out = _gql(dep, f"mutation($sel: {kind}Selector!) {{ start{kind}({kind.lower()}Selector: $sel) "
                        "{ __typename ... on PythonError { message } } }", sel=LOCATION | {f"{kind.lower()}Name": name})
        assert "Error" not in out[f"start{kind}"]["__typename"], out

    # 1. discovery, then a tick queues chunk_0000's run, which executes through the code server
    _until("chunk_0000 registered by the sensor", lambda: "chunk_0000" in instance.get_dynamic_partitions("chunks"), dep)
    first = _until("a backfill run of chunk_0000", lambda: _runs(instance, "chunk_0000"), dep, 150)[0]
    assert _wait_for_status(instance, first.run_id, DONE, dep).status == dg.DagsterRunStatus.SUCCESS
    new, queued = _new_chunk_waits_across_a_postgres_restart(dep, instance, monkeypatch)
    _code_server_dies_mid_run(dep, instance, new, queued)

    # 4. the records in Postgres: every run a schedule's, tagged; each asset materialized per partition
    runs = {k: _runs(instance, k) for k in ("chunk_0000", new)}
    assert [r.status for r in runs["chunk_0000"]] == [dg.DagsterRunStatus.SUCCESS]
    assert [r.status for r in runs[new]] == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS]
    for run in (*runs["chunk_0000"], *runs[new]):
        assert run.tags["dagster/schedule_name"] == "incremental_backfill"
        assert run.tags["flywheel/backfill"] == "incremental" and run.tags["flywheel/why"]
    for key in runs:
        for asset in INGEST:
            assert _materialized_by(instance, asset, key), f"{asset} has no materialization for {key}"
    REPORT["runs"] = [{"run": r.run_id[:8], "partition": k, "status": r.status.value,
                       "assets": sorted(a.to_user_string() for a in r.asset_selection or ()),
                       "why": r.tags["flywheel/why"]} for k in runs for r in runs[k]]
    REPORT["ticks"] = [{k: t[k] for k in ("status", "skipReason", "runIds")} | {"at": time.strftime(
        "%H:%M:%S", time.gmtime(t["timestamp"]))} for t in _ticks(dep)]
    REPORT["lake row counts"] = _check_lake_equals_in_process_run(dep, sorted(runs), monkeypatch)
    print(json.dumps(REPORT, indent=1))


def _new_chunk_waits_across_a_postgres_restart(dep: LocalDeployment, instance: dg.DagsterInstance,
                                               monkeypatch: pytest.MonkeyPatch) -> tuple[str, dg.DagsterRun]:
    """2. A new chunk appears at the source while the download pool is shut (a busy hub): the run a
    tick queues for it waits in the queue, across a Postgres restart and the next tick."""
    instance.event_log_storage.set_concurrency_slots("flywheel_download", 0)
    from core.request import DataRequest
    from flywheel.settings import Settings
    from transforms.twin.acquire import acquire_twin

    with monkeypatch.context() as m:
        for k, v in dep.env.items():
            if k.startswith("FLYWHEEL_"):
                m.setenv(k, v)
        settings = Settings.from_env()
    chunk = acquire_twin(settings.twin_dir, settings.make_source().config,
                         DataRequest(16, scenarios={"overtake_left": 1.0}), clips=2)[0].chunk_id
    new = f"chunk_{chunk:04d}"
    _until(f"{new} registered by the sensor", lambda: new in instance.get_dynamic_partitions("chunks"), dep)
    queued = _until(f"a backfill run of {new}", lambda: _runs(instance, new), dep, 150)[0]
    tick_queued = _until("the tick that queued it", lambda: [t for t in _ticks(dep) if queued.run_id in t["runIds"]],
                         dep)[0]
    time.sleep(3)
    assert instance.get_run_by_id(queued.run_id).status == dg.DagsterRunStatus.QUEUED  # the pool holds it
    dep.restart("postgres")
    # the webserver holds one pooled connection (dagster-webserver pools; its other processes do not),
    # which the restart cut: the first request on it fails, SQLAlchemy drops the pool, the next works
    failed_requests = 0
    while True:
        try:
            _ticks(dep)
            break
        except WebserverError:
            failed_requests += 1
            assert failed_requests <= 2, "the webserver did not recover from the Postgres restart"
    REPORT["webserver requests failed after the Postgres restart"] = failed_requests
    # the next tick, after the restart, finds the partition missing and its run queued: asks for nothing
    later = _until("a schedule tick after the restart", lambda: [
        t for t in _ticks(dep) if t["timestamp"] > tick_queued["timestamp"] and t["status"] != "STARTED"], dep, 150)[0]
    assert later["status"] == "SKIPPED" and new in later["skipReason"], later
    assert [r.run_id for r in _runs(instance, new)] == [queued.run_id]  # one run, not two
    assert instance.get_run_by_id(queued.run_id).status == dg.DagsterRunStatus.QUEUED  # not lost either
    return new, queued


def _code_server_dies_mid_run(dep: LocalDeployment, instance: dg.DagsterInstance, new: str,
                              queued: dg.DagsterRun) -> None:
    """3. The pool opens; mid-run (raw_chunks written, the rest not) the code server dies with its runs;
    the monitoring fails the run, and the next tick runs what it left undone."""
    instance.event_log_storage.set_concurrency_slots("flywheel_download", 1)
    _until("raw_chunks of the new chunk written", lambda: queued.run_id in _materialized_by(instance, "raw_chunks", new),
           dep, 300)
    assert instance.get_run_by_id(queued.run_id).status == dg.DagsterRunStatus.STARTED
    old_pid = dep.services["code"].pid
    dep.restart("code", crash=True)
    REPORT["code server"] = f"pid {old_pid} SIGKILLed with its group mid-run, restarted as {dep.services['code'].pid}"
    assert _wait_for_status(instance, queued.run_id, DONE, dep, 240).status == dg.DagsterRunStatus.FAILURE
    failure = [e.message for e in instance.all_logs(queued.run_id) if "does not run" in (e.message or "")]
    assert failure, "the run monitoring did not say why the run failed"
    REPORT["dead run's failure"] = failure[0]
    retry = _until(f"a retry of {new} by a later tick", lambda: _runs(instance, new)[1:], dep, 200)
    assert len(retry) == 1
    assert _wait_for_status(instance, retry[0].run_id, DONE, dep).status == dg.DagsterRunStatus.SUCCESS
    # the retry ran only what the dead run had not written
    assert "raw_chunks" not in {k.to_user_string() for k in retry[0].asset_selection}


def _check_lake_equals_in_process_run(dep: LocalDeployment, keys: list[str], monkeypatch: pytest.MonkeyPatch
                                      ) -> dict[str, int]:
    from dagster_project.assets import ingest, labels, shards, targets
    from dagster_project.resources import resources_from_env
    from flywheel.cli import table_counts

    here = dep.root / "lake-in-process"
    with monkeypatch.context() as m:
        for k, v in dep.env.items():
            if k.startswith("FLYWHEEL_"):
                m.setenv(k, v)
        m.setenv("FLYWHEEL_LAKE", str(here))
        res = resources_from_env()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("chunks", keys)
    for key in keys:
        assert dg.materialize([ingest.raw_chunks, ingest.chunk_index, targets.unicycle_targets, labels.commander_labels,
                               shards.webdataset_shards], partition_key=key, instance=instance, resources=res).success
    deployed, local = table_counts(dep.env["FLYWHEEL_LAKE"]), table_counts(str(here))
    ingest_tables = [t for t, n in local.items() if n and not t.startswith("qa.")]
    assert len(ingest_tables) >= 6
    assert {t: deployed[t] for t in ingest_tables} == {t: local[t] for t in ingest_tables}
    return {t: deployed[t] for t in ingest_tables}
