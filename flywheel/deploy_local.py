"""The compose deployment without Docker: `make deploy-local` (`flywheel deploy-local`) and its test.

The services of docker-compose.yml as local processes, each in its own process group and stopped
by its PID: PostgreSQL (a cluster of its own under ROOT/postgres, on a loopback port), the code
location's gRPC server (`dagster api grpc`, which also executes the runs), `dagster-daemon run`
(sensors, schedules, the run queue, run monitoring) and `dagster-webserver`. The Dagster processes
read deploy/dagster.yaml and deploy/workspace.yaml as they are; only the environment differs from
compose (hosts are 127.0.0.1, ports are chosen here). As in compose, only the code server sees the
FLYWHEEL_* settings and HF_TOKEN.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEPLOY_DIR = REPO / "deploy"
STOP_TIMEOUT_S = 30
START_TIMEOUT_S = 240  # a Dagster process imports the pipeline's stack: 15-60 s on 2 cores
# what only the code server may see (compose gives it to the `code` service alone)
CODE_ONLY_PREFIXES = ("FLYWHEEL_", "HF_")


class DeployError(RuntimeError):
    """A service would not start; the message names it and where its log is."""


def pg_tool(name: str) -> str:
    """A PostgreSQL program: Debian keeps the server's under /usr/lib/postgresql/<version>/bin, off PATH."""
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]))
    found = versions[-1] if versions else shutil.which(name)
    if not found:
        raise DeployError(f"PostgreSQL's {name!r} is not under /usr/lib/postgresql/*/bin nor on PATH: install the "
                          "server (Debian: apt-get install postgresql; macOS: brew install postgresql@15)")
    return found


def free_port() -> int:
    """A TCP port nobody listens on now (for the servers this starts, and the tests')."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """One process of the deployment, the leader of its own process group."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    user: str | None = None  # run as this OS user (PostgreSQL refuses to run as root)
    stop_signal: int = signal.SIGTERM
    proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def start(self) -> Service:
        as_user = {}
        if self.user and os.geteuid() == 0:
            pw = pwd.getpwnam(self.user)
            as_user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True, cwd=REPO, **as_user)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        if not self.running():
            code = self.proc.returncode if self.proc else None
            raise DeployError(f"{self.name} exited ({code}); its log, {self.log_path}, ends:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash or a container's restart would."""
        self._signal_group(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        """The stop signal to the leader, then, after STOP_TIMEOUT_S, SIGKILL to whatever of its group is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, self.stop_signal)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGTERM)  # children the leader left behind (a run's process)
        deadline = time.monotonic() + 10
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        self._signal_group(signal.SIGKILL)
        self._reap()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.pid, 0)
            return True
        except ProcessLookupError:
            return False

    def _reap(self) -> None:
        assert self.proc is not None
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self._group_alive():
            if time.monotonic() > deadline:
                raise DeployError(f"{self.name}'s process group {self.pid} outlived SIGKILL")
            time.sleep(0.1)


def _wait(what: str, ready: object, service: Service, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        service.check()
        try:
            if ready():  # type: ignore[operator]
                return
        except Exception:  # not up yet: connection refused, 503, ...
            pass
        if time.monotonic() > deadline:
            raise DeployError(f"{what} did not come up in {timeout_s:.0f} s; {service.log_path} ends:\n{service.tail()}")
        time.sleep(0.5)


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster under `root`, listening on 127.0.0.1:`port` only."""

    root: Path
    port: int
    user: str = "dagster"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12), repr=False)
    db: str = "dagster"
    service: Service | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def os_user(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None  # the server refuses root; Debian's package adds `postgres`

    def env(self) -> dict[str, str]:
        """What deploy/dagster.yaml reads."""
        return {"DAGSTER_POSTGRES_HOST": "127.0.0.1", "DAGSTER_POSTGRES_PORT": str(self.port),
                "DAGSTER_POSTGRES_USER": self.user, "DAGSTER_POSTGRES_PASSWORD": self.password,
                "DAGSTER_POSTGRES_DB": self.db}

    def init(self) -> None:
        """initdb once; a later start reuses the cluster (its password is kept beside it, readable by its owner only)."""
        secret = self.root / "password"
        if (self.data / "PG_VERSION").is_file():
            self.password = secret.read_text().strip()
            return
        (self.root / "run").mkdir(parents=True, exist_ok=True)
        secret.write_text(self.password + "\n")
        secret.chmod(0o600)
        pwfile = self.root / "initdb-password"
        pwfile.write_text(self.password + "\n")
        if self.os_user:
            pw = pwd.getpwnam(self.os_user)
            for p in (self.root, self.root / "run", pwfile):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        init = Service("initdb", [pg_tool("initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
                                  "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8",
                                  "--locale=C"], {"PATH": os.environ.get("PATH", "")}, self.root / "initdb.log",
                       user=self.os_user).start()
        code = init.proc.wait(timeout=120)  # type: ignore[union-attr]
        pwfile.unlink()
        if code != 0:
            raise DeployError(f"initdb exited {code}: {init.tail()}")

    def start(self) -> Service:
        # SIGINT: PostgreSQL's fast shutdown (sessions end, no checkpoint wait)
        self.service = Service("postgres", [pg_tool("postgres"), "-D", str(self.data), "-p", str(self.port),
                                            "-k", str(self.root / "run"), "-c", "listen_addresses=127.0.0.1"],
                               {"PATH": os.environ.get("PATH", "")}, self.root / "postgres.log", user=self.os_user,
                               stop_signal=signal.SIGINT).start()
        _wait(f"PostgreSQL on 127.0.0.1:{self.port}", self._create_db, self.service, timeout_s=60)
        return self.service

    def _create_db(self) -> bool:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                                dbname="postgres", connect_timeout=3)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.db,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{self.db}"')
        finally:
            conn.close()
        return True


@dataclass
class LocalDeployment:
    """docker-compose.yml's services as processes under `root` (.deploy by default)."""

    root: Path
    ui_port: int = 3000
    code_port: int = 4000
    pg_port: int = 0  # 0: a free one
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    postgres: Postgres = field(init=False)
    services: dict[str, Service] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.postgres = Postgres(self.root / "postgres", self.pg_port or free_port())

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def workspace(self) -> Path:
        return self.home / "workspace.yaml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def dagster_env(self, *, code: bool = False) -> dict[str, str]:
        """The environment of a Dagster process: deploy/dagster.yaml's and workspace.yaml's variables;
        the FLYWHEEL_* settings and HF_TOKEN for the code server only."""
        base = {k: v for k, v in self.env.items() if code or not k.startswith(CODE_ONLY_PREFIXES)}
        return {**base, **self.postgres.env(), "DAGSTER_HOME": str(self.home), "DAGSTER_CODE_HOST": "127.0.0.1",
                "DAGSTER_CODE_PORT": str(self.code_port), "PYTHONUNBUFFERED": "1"}

    def _bin(self, name: str) -> str:
        return str(Path(sys.executable).parent / name)

    def start(self) -> LocalDeployment:
        """Postgres, then the code server, the daemon and the webserver, each once the one before answers."""
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEPLOY_DIR / "dagster.yaml", self.home / "dagster.yaml")
        shutil.copy(DEPLOY_DIR / "workspace.yaml", self.workspace)
        try:
            self.postgres.init()
            self.services["postgres"] = self.postgres.start()
            self.start_code_server()
            self.start_daemon()
            self.start_webserver()
        except BaseException:
            self.stop()
            raise
        return self

    def _service(self, name: str, cmd: list[str], *, code: bool = False) -> Service:
        service = Service(name, cmd, self.dagster_env(code=code), self.root / "logs" / f"{name}.log").start()
        self.services[name] = service
        return service

    def start_code_server(self) -> Service:
        from dagster._grpc.client import DagsterGrpcClient

        svc = self._service("code", [self._bin("dagster"), "api", "grpc", "-h", "127.0.0.1", "-p", str(self.code_port),
                                     "-m", "dagster_project"], code=True)
        client = DagsterGrpcClient(port=self.code_port, host="127.0.0.1")

        def serving() -> bool:
            import socket

            with socket.create_connection(("127.0.0.1", self.code_port), timeout=2):  # refused until it listens
                pass
            return client.health_check_query() == "SERVING"

        _wait(f"the code server on 127.0.0.1:{self.code_port}", serving, svc)
        return svc

    def start_daemon(self) -> Service:
        svc = self._service("daemon", [self._bin("dagster-daemon"), "run", "-w", str(self.workspace)])
        time.sleep(1)
        svc.check()
        return svc

    def start_webserver(self) -> Service:
        svc = self._service("webserver", [self._bin("dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.ui_port),
                                          "-w", str(self.workspace)])

        def answers() -> bool:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as r:
                return r.status == 200

        _wait(f"the webserver on {self.url}", answers, svc)
        return svc

    def restart(self, name: str, *, crash: bool = False) -> Service:
        """Stop one service (SIGKILL to its whole group when `crash`, as a dying container) and start it again."""
        old = self.services.pop(name)
        old.kill() if crash else old.stop()
        if name == "postgres":
            self.services[name] = self.postgres.start()
            return self.services[name]
        return {"code": self.start_code_server, "daemon": self.start_daemon, "webserver": self.start_webserver}[name]()

    def stop(self) -> None:
        """Every service by its PID, the last started first (Postgres last: the others write to it)."""
        for name in reversed(list(self.services)):
            self.services.pop(name).stop()

    def describe(self) -> str:
        return json.dumps({name: {"pid": s.pid, "log": str(s.log_path)} for name, s in self.services.items()}, indent=1)

    def __enter__(self) -> LocalDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_until_interrupted(deployment: LocalDeployment) -> int:
    """`make deploy-local`: start the services, print where they are, stop them all on Ctrl-C."""
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with deployment:
        print(f"UI: {deployment.url}   code server: 127.0.0.1:{deployment.code_port}   "
              f"PostgreSQL: 127.0.0.1:{deployment.postgres.port} (db {deployment.postgres.db})")
        print(f"DAGSTER_HOME={deployment.home}   processes and logs:\n{deployment.describe()}")
        print("Ctrl-C stops them all.", flush=True)
        while not stop["now"]:
            for s in deployment.services.values():
                if not s.running():
                    print(f"{s.name} exited ({s.proc.returncode if s.proc else '?'}): {s.tail(1500)}", file=sys.stderr)
                    return 1
            time.sleep(1)
    return 0
