"""WebDataset export: contents, determinism, resume, atomic publish, rolling, bad input, loader."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from labelers.build import label_windows, window_contexts
from labelers.kinematic import KinematicLabeler
from tests.conftest import rewrite_zip
from transforms import pai_layout as L
from transforms import shards as S
from transforms.index import index_chunk
from transforms.source import mirror_source
from transforms.twin.truth import load_twin_gt
from transforms.unicycle import targets_for_chunk


def _windows(root: Path, chunk_id: int = 0) -> tuple:
    files = mirror_source(root).fetch_chunk(chunk_id)
    key = L.chunk_key(chunk_id)
    ix = index_chunk(files, chunk=key)
    targets = targets_for_chunk(ix.egomotion, ix.clips, chunk=key).table
    labels = label_windows(KinematicLabeler(), window_contexts(targets, load_twin_gt(files)), chunk=key).table
    return files, S.windows_for_chunk(targets, labels, ix.egomotion, chunk=key), targets


@pytest.fixture(scope="module")
def exported(twin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    files, windows, targets = _windows(twin_dir)
    out = tmp_path_factory.mktemp("shards")
    res = S.export_shards(files, windows, out, S.ShardConfig(max_count=7), chunk="chunk_0000", version="t")
    return files, windows, targets, out, res


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.tar"))}


def test_samples_hold_image_command_state_and_targets(exported: tuple) -> None:
    _, windows, targets, out, res = exported
    assert sum(r.samples for r in res.shards) == len(windows) == targets.num_rows and not res.quarantined
    assert all(r.samples <= 7 for r in res.shards) and {r.split for r in res.shards} <= {"train", "val", "test"}
    samples = list(wds.WebDataset(sorted(str(p) for p in out.rglob("*.tar")), shardshuffle=False).decode("rgb8"))
    assert len(samples) == len(windows)
    s = samples[0]
    assert {"jpg", "json", "actions.npy", "future.npy", "history.npy"} <= set(s)
    assert s["jpg"].shape == (144, 256, 3) and s["actions.npy"].shape == (64, 2) and s["history.npy"].shape == (16, 3)
    meta = s["json"]
    assert meta["command"] and meta["labeler"] == "kinematic" and set(meta["state"]) == {
        "v_mps", "a_mps2", "kappa_1pm", "yaw_rate_radps"}
    w = next(w for w in windows if w.key == s["__key__"])
    np.testing.assert_allclose(s["actions.npy"], w.actions)
    assert abs(meta["state"]["v_mps"] - float(np.linalg.norm(w.history_xyz[-1] - w.history_xyz[-2]) / 0.1)) < 1.0


def test_reexport_is_byte_identical(exported: tuple, tmp_path: Path) -> None:
    files, windows, _, out, _ = exported
    S.export_shards(files, windows, tmp_path, S.ShardConfig(max_count=7), chunk="chunk_0000", version="t")
    assert _digests(tmp_path) == _digests(out)


def test_resume_skips_finished_shards_and_rewrites_the_missing_one(exported: tuple, tmp_path: Path) -> None:
    files, windows, _, out, res = exported
    import shutil

    shutil.copytree(out, tmp_path / "s")
    victim = res.shards[1]
    (tmp_path / "s" / victim.path).unlink()
    done = {r.path: r for r in res.shards}
    again = S.export_shards(files, windows, tmp_path / "s", S.ShardConfig(max_count=7), chunk="chunk_0000", version="t",
                            done=done)
    assert again.skipped >= 1 and again.written >= 1
    assert _digests(tmp_path / "s") == _digests(out)
    assert again.frames_decoded < sum(r.samples for r in res.shards)  # finished shards were not decoded again


def test_resume_refuses_a_manifest_that_does_not_match_the_shards_windows(exported: tuple, tmp_path: Path) -> None:
    """The check is data, not an invariant: it holds under `python -O` too (no assert)."""
    import dataclasses
    import shutil

    files, windows, _, out, res = exported
    shutil.copytree(out, tmp_path / "s")
    first = res.shards[0]
    done = {r.path: r for r in res.shards} | {first.path: dataclasses.replace(first, first_key="someone_else_0")}
    with pytest.raises(ValueError, match=r"cannot resume at .*someone_else_0.*delete that chunk's shards"):
        S.export_shards(files, windows, tmp_path / "s", S.ShardConfig(max_count=7), chunk="chunk_0000", version="t",
                        done=done)


def test_interrupted_export_publishes_no_partial_shard(exported: tuple, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    files, windows, *_ = exported
    calls = {"n": 0}
    real = S.sample_members

    def crash_on_tenth(*args: object, **kw: object) -> list:
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(S, "sample_members", crash_on_tenth)
    with pytest.raises(KeyboardInterrupt):
        S.export_shards(files, windows, tmp_path, S.ShardConfig(max_count=7), chunk="chunk_0000", version="t")
    published, complete = _digests(tmp_path), _digests(exported[3])
    assert published and len(published) < len(complete) and not list(tmp_path.rglob(".*tmp*"))
    assert all(complete[p] == d for p, d in published.items())  # what was published is whole


def test_shards_roll_by_bytes(exported: tuple, tmp_path: Path) -> None:
    files, windows, *_ = exported
    res = S.export_shards(files, windows[:6], tmp_path, S.ShardConfig(max_bytes=1), chunk="chunk_0000", version="t")
    assert [r.samples for r in res.shards] == [1] * 6


def test_history_frames_are_exported(exported: tuple, tmp_path: Path) -> None:
    files, windows, *_ = exported
    S.export_shards(files, windows[:3], tmp_path, S.ShardConfig(history_frames=3), chunk="chunk_0000", version="t")
    s = next(iter(wds.WebDataset(sorted(str(p) for p in tmp_path.rglob("*.tar")), shardshuffle=False)))
    assert {"jpg", "prev1.jpg", "prev2.jpg", "prev3.jpg"} <= set(s) and json.loads(s["json"])["image"]["history_frames"] == 3


def test_undecodable_video_quarantines_its_windows_and_the_rest_export(twin_copy: Path, tmp_path: Path) -> None:
    files, windows, _ = _windows(twin_copy)
    bad_clip = windows[0].clip_id
    name = L.FEATURES[L.FRONT_CAMERA].members(bad_clip)["video"]
    rewrite_zip(twin_copy / L.FEATURES[L.FRONT_CAMERA].path(0), lambda m: {**m, name: b"\x00" * 4096})
    res = S.export_shards(files, windows, tmp_path, S.ShardConfig(), chunk="chunk_0000", version="t")
    bad = [w for w in windows if w.clip_id == bad_clip]
    assert {c for c, _, _ in res.quarantined} == {bad_clip} and len(res.quarantined) == len(bad)
    assert sum(r.samples for r in res.shards) == len(windows) - len(bad)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="history_frames=5"):
        S.ShardConfig(history_frames=5)


def test_loader_batches_each_sample_once_per_epoch_across_workers(exported: tuple) -> None:
    import torch

    from trainers.data import images_to_float, make_loader

    *_, out, res = exported
    urls = sorted(str(out / r.path) for r in res.shards)
    keys = []
    for batch in make_loader(urls, batch_size=4, num_workers=2, shuffle_buffer=20):
        assert batch["image"].shape[1:] == (3, 144, 256) and batch["image"].dtype == torch.uint8
        assert 0.0 <= float(images_to_float(batch["image"]).max()) <= 1.0
        assert batch["actions"].shape[1:] == (64, 2) and batch["state"].shape[1] == 4
        keys += batch["key"]
    assert sorted(keys) == sorted(k for r in res.shards for k in _keys(out / r.path))


def _keys(path: Path) -> list[str]:
    return [s["__key__"] for s in wds.WebDataset([str(path)], shardshuffle=False)]
