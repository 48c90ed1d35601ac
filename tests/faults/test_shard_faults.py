"""Shard export under a full disk, hostile windows, and a second export of the same chunk at once."""

from __future__ import annotations

import dataclasses
import errno
import tarfile
import threading
import time
from pathlib import Path

import pytest

from tests.transforms.test_shards import _windows
from transforms import shards as S
from transforms.ids import UnsafePathError


@pytest.fixture(scope="module")
def chunk(twin_dir: Path) -> tuple:
    files, windows, _ = _windows(twin_dir)
    return files, windows[:12]


def test_a_full_disk_leaves_no_temp_file(chunk: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files, windows = chunk

    def no_space(self: tarfile.TarFile) -> None:  # closing flushes the last blocks: that is where it fails
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "close", no_space)
    with pytest.raises(OSError, match="No space left"):
        S.export_shards(files, windows, tmp_path, S.ShardConfig(max_count=5), chunk="chunk_0000", version="t")
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("field, value", [("split", "../../escape"), ("clip_id", "../../x")])
def test_a_window_whose_identifiers_would_leave_the_shard_root_is_refused(chunk: tuple, tmp_path: Path, field: str,
                                                                          value: str) -> None:
    files, windows = chunk
    bad = [dataclasses.replace(w, **{field: value}) for w in windows[:2]]
    out = tmp_path / "lake" / "shards"
    # samples made without decoding, so that nothing but the writer's own checks stands in the way
    def encode(ws: list, _result: object):
        return ((w, [(f"{w.key}.json", b"{}")]) for w in ws)

    with pytest.raises(UnsafePathError if field == "clip_id" else ValueError, match=r"'\.\./\.\./(escape|x)"):
        S.export_shards(files, bad, out, S.ShardConfig(), chunk="chunk_0000", version="t", encode=encode)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents]
    assert not [p for p in out.rglob("*.tar*")]


def test_clean_shards_keeps_only_the_listed_generation(chunk: tuple, tmp_path: Path) -> None:
    files, windows = chunk
    old = S.export_shards(files, windows, tmp_path, S.ShardConfig(max_count=5), chunk="chunk_0000", version="v1")
    new = S.export_shards(files, windows, tmp_path, S.ShardConfig(max_count=4), chunk="chunk_0000", version="v2")
    other = S.export_shards(files, windows, tmp_path, S.ShardConfig(max_count=4), chunk="chunk_0001", version="v2")
    (tmp_path / "train" / ".chunk_0000-v3-00000.tar.tmp-99999").write_bytes(b"half")
    keep = {r.path for r in new.shards}
    gone = S.clean_shards(tmp_path, "chunk_0000", keep)
    assert set(gone) == {r.path for r in old.shards} | {"train/.chunk_0000-v3-00000.tar.tmp-99999"}
    left = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.tar*")}
    assert left == keep | {r.path for r in other.shards}  # another chunk's shards are not touched


def test_two_exports_of_one_chunk_take_turns(tmp_path: Path) -> None:
    order = []

    def hold(name: str) -> None:
        with S.chunk_lock(tmp_path, "chunk_0000"):
            order.append(f"{name} in")
            time.sleep(0.3)
            order.append(f"{name} out")

    threads = [threading.Thread(target=hold, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
