"""The deployment's run launcher: Dagster's DefaultRunLauncher, plus a worker health check.

DefaultRunLauncher starts each run in a subprocess of the code location's gRPC server. When that
server restarts (a deploy, a crash, the container's restart policy) its runs die with it, but
DefaultRunLauncher cannot tell the daemon's run monitoring so: the run stays STARTED forever, and
the incremental backfill, which never doubles a run in flight, would skip its partition forever.
This launcher answers the monitoring's health check by asking the server that started the run
whether it still runs it (the gRPC API's CanCancelExecution); a server that answers no has lost
the run, and the monitoring marks it failed, which lets the next tick retry the partition.

deploy/dagster.yaml names it (`run_launcher: module: flywheel.run_launcher`); it lives outside
dagster_project so that the webserver and daemon, which load it, do not load the pipeline.
"""

from __future__ import annotations

import json

from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._grpc.client import DagsterGrpcClient
from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult
from dagster_shared.serdes import deserialize_value

HEALTH_TIMEOUT_S = 10


class CodeServerRunLauncher(DefaultRunLauncher):
    """Launches runs in the code location's gRPC server (`dagster api grpc`) and tells the run
    monitoring when that server no longer runs one."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        info = run.tags.get(GRPC_INFO_TAG)
        if not info:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, f"run {run.run_id} has no {GRPC_INFO_TAG} tag")
        where = json.loads(info)
        client = DagsterGrpcClient(port=where.get("port"), socket=where.get("socket"), host=where.get("host"),
                                   use_ssl=bool(where.get("use_ssl", False)))
        server = f"{where.get('host')}:{where.get('port') or where.get('socket')}"
        try:
            reply = deserialize_value(client.can_cancel_execution(CanCancelExecutionRequest(run_id=run.run_id),
                                                                  timeout=HEALTH_TIMEOUT_S), CanCancelExecutionResult)
        except Exception as e:  # unreachable is not dead: a restarting server answers the next poll
            # RUNNING, not UNKNOWN: the monitoring fails a run on anything else, and a server that is
            # down for a minute (a network blip, a restart in progress) tells nothing about the run yet
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"code server {server} unreachable ({type(e).__name__})")
        if reply.can_cancel:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the code server at {server} does not run {run.run_id}: "
                                    "it restarted, or the run's process died; its partitions run again on the next "
                                    "backfill tick")
