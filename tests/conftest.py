"""Shared fixtures: one small twin per test session, and factories that copy and damage it."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flywheel.deploy_local import free_port  # noqa: F401 - the tests' servers take ports the deployment's way
from transforms.twin.writer import TwinConfig, write_twin

# Small enough to generate in seconds, long enough (10 s) for windows, two chunks for partitions.
SMALL = TwinConfig(chunks=2, clips_per_chunk=4, seed=7, width=96, height=64, seconds=10.0)


@pytest.fixture(scope="session")
def twin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_twin(tmp_path_factory.mktemp("twin"), SMALL)


@pytest.fixture
def twin_copy(twin_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session twin that a test may damage."""
    dst = tmp_path / "twin"
    shutil.copytree(twin_dir, dst)
    return dst


ZipEdit = Callable[[dict[str, bytes]], dict[str, bytes]]


def rewrite_zip(path: Path, edit: ZipEdit) -> None:
    """Rewrite a zip with `edit` applied to its {member name: bytes} (order kept)."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members = edit(members)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data,
                        compress_type=zipfile.ZIP_STORED if name.endswith(".mp4") else zipfile.ZIP_DEFLATED)
    path.write_bytes(buf.getvalue())


@contextmanager
def serving(cmd: list[str], *, cwd: Path, env: dict[str, str], port: int, log_path: Path,
            start_timeout_s: float = 240) -> Iterator[str]:
    """Run a Dagster UI (`make ui`, `dg dev`, ...) in its own process group until it answers on
    `port`; yield its URL; then stop the whole group (webserver, daemon, code servers) by SIGINT."""
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s  # `dagster dev` answers in ~15-50 s on 2 cores
        while True:
            assert proc.poll() is None, f"{cmd} exited {proc.returncode}: {log_path.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{cmd} did not answer in {start_timeout_s} s: {log_path.read_text()[-3000:]}"
            time.sleep(1)
        yield url
    finally:
        _stop_group(proc)
        log.close()


def _stop_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the children (webserver, daemon) finish shortly after dagster dev
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"process group {proc.pid} still running 30 s after SIGINT")
