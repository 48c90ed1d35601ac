"""Shared fixtures: one small twin per test session, and factories that copy and damage it."""

from __future__ import annotations

import io
import shutil
import socket
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

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


def free_port() -> int:
    """A TCP port nobody listens on now (for servers a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
