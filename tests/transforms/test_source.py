"""Sources: twin, mirror (plain directory or HF cache) and hub, the last one offline from a cache."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import numpy as np
import pytest
from huggingface_hub import errors as hf_errors
from physical_ai_av.dataset import PhysicalAIAVDatasetInterface

from flywheel.settings import Settings
from tests.conftest import SMALL
from transforms import pai_layout as L
from transforms.source import HubSource, SourceError, TwinSource, chunk_manifest, mirror_source, write_hf_cache

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hf_cache(twin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf"
    write_hf_cache(twin_dir, cache, REV)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hub_source_resolves_through_huggingface_hub_offline(hf_cache: Path) -> None:
    src = HubSource(REV, cache_dir=hf_cache, token="hf_not_a_real_token")
    assert src.list_chunks() == list(range(SMALL.chunks))
    files = src.fetch_chunk(1)
    ego = files.feature_path(L.EGOMOTION)
    assert "snapshots" in ego.parts and REV in ego.parts and ego.is_file()
    assert set(L.METADATA_FILES) <= set(files.files)
    manifest = chunk_manifest(files, chunk="chunk_0001")
    assert manifest.num_rows == len(L.METADATA_FILES) + len(L.REQUIRED_FEATURES)
    assert set(manifest.column("source").to_pylist()) == {"hub"}


def test_official_reader_reads_the_hf_cache_offline(hf_cache: Path) -> None:
    ds = PhysicalAIAVDatasetInterface(revision=REV, cache_dir=hf_cache, token=False)
    clip = ds.clip_index.index[0]
    imgs, _ = ds.get_clip_feature(clip, L.FRONT_CAMERA).decode_images_from_timestamps(np.array([500_000]))
    assert imgs.shape == (1, SMALL.height, SMALL.width, 3)


def test_hub_detects_a_corrupt_cached_file(hf_cache: Path) -> None:
    src = HubSource(REV, cache_dir=hf_cache)
    blob = src.fetch_chunk(0).feature_path(L.EGOMOTION).resolve()
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=r"sha256 .* does not match"):
        src.fetch_chunk(0)


def test_hub_unknown_chunk_and_uncached_revision(hf_cache: Path) -> None:
    with pytest.raises(SourceError, match="unknown chunk 7"):
        HubSource(REV, cache_dir=hf_cache).fetch_chunk(7)
    with pytest.raises(SourceError, match="not in the HF cache and the hub is unreachable"):
        HubSource("f" * 40, cache_dir=hf_cache).list_chunks()


@pytest.mark.parametrize("revision, match", [("", "needs FLYWHEEL_HF_REVISION"), ("main", "not a 40-hex commit")])
def test_hub_needs_a_pinned_commit(revision: str, match: str) -> None:
    with pytest.raises(SourceError, match=match):
        HubSource(revision)


def _http(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", "https://huggingface.co/datasets/x"))


@pytest.mark.parametrize("exc, token, match", [
    (hf_errors.GatedRepoError("gated", response=_http(403)), "hf_x", "accept the NVIDIA AV dataset license"),
    (hf_errors.RepositoryNotFoundError("401", response=_http(401)), None, "set HF_TOKEN"),
    (hf_errors.RepositoryNotFoundError("401", response=_http(401)), "hf_x", "check that HF_TOKEN is valid"),
    (hf_errors.LocalEntryNotFoundError("no network"), "hf_x", "hub is unreachable"),
    (hf_errors.EntryNotFoundError("404"), "hf_x", "unknown chunk or feature"),
    (hf_errors.RevisionNotFoundError("rev", response=_http(404)), "hf_x", "fix FLYWHEEL_HF_REVISION"),
])
def test_hub_errors_say_what_to_do(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                   exc: Exception, token: str | None, match: str) -> None:
    def fail(*args: object, **kwargs: object) -> str:
        raise exc

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fail)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SourceError, match=match) as info:
        HubSource(REV, token=token).list_chunks()
    if token:
        assert token not in str(info.value) and token not in caplog.text


def test_secrets_stay_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    assert "hf_secret_value" not in repr(Settings.from_env())
    assert "hf_secret_value" not in repr(HubSource(REV, token="hf_secret_value"))


def test_mirror_plain_dir_and_hf_cache(twin_dir: Path, hf_cache: Path, tmp_path: Path) -> None:
    plain = mirror_source(twin_dir)
    assert plain.list_chunks() == [0, 1]
    assert plain.fetch_chunk(0).feature_path(L.FRONT_CAMERA).is_file()
    cached = mirror_source(hf_cache)  # revision from refs/main
    assert cached.revision == REV and cached.list_chunks() == [0, 1]
    with pytest.raises(SourceError, match="does not exist"):
        mirror_source(tmp_path / "nowhere")


def test_mirror_offers_only_complete_chunks(twin_copy: Path) -> None:
    (twin_copy / L.FEATURES[L.EGOMOTION].path(1)).unlink()
    src = mirror_source(twin_copy)
    assert src.list_chunks() == [0]
    with pytest.raises(SourceError, match=r"egomotion\.chunk_0001\.zip is missing"):
        src.fetch_chunk(1)


def test_twin_source_generates_lazily(tmp_path: Path) -> None:
    src = TwinSource(tmp_path / "t", SMALL.__class__(chunks=3, clips_per_chunk=1, width=64, height=48, seconds=8.0))
    assert src.list_chunks() == [0, 1, 2]
    files = src.fetch_chunk(2)
    assert files.feature_path(L.EGOMOTION).is_file()
    assert not (tmp_path / "t" / L.FEATURES[L.EGOMOTION].path(0)).exists()  # only what was asked
    with pytest.raises(SourceError, match=r"twin has chunks 0\.\.2"):
        src.fetch_chunk(3)


@pytest.mark.parametrize("env, match", [
    ({"FLYWHEEL_SOURCE": "ftp"}, "choose one of twin, mirror, hub"),
    ({"FLYWHEEL_SOURCE": "mirror"}, "needs FLYWHEEL_MIRROR_DIR"),
    ({"FLYWHEEL_TWIN_CLIPS": "many"}, "FLYWHEEL_TWIN_CLIPS='many' is not an integer"),
])
def test_settings_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict, match: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match=match):
        Settings.from_env()


def test_hub_downloads_retry_transient_failures_with_backoff(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    real, calls, sleeps = huggingface_hub.hf_hub_download, [], []
    hiccups = [httpx.ConnectError("connection reset"), hf_errors.HfHubHTTPError("503", response=_http(503))]

    def flaky(*args: object, **kwargs: object) -> str:
        calls.append(args)
        if hiccups:
            raise hiccups.pop(0)
        return real(*args, **kwargs)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", flaky)
    monkeypatch.setattr("transforms.source.time.sleep", sleeps.append)
    # chunk files: retried here (discovery tries once, on a clock: tests/faults)
    assert HubSource(REV, cache_dir=hf_cache)._download("clip_index.parquet").name == "clip_index.parquet"
    assert len(calls) == 3 and len(sleeps) == 2
    assert 1.0 <= sleeps[0] <= 2.0 and 2.0 <= sleeps[1] <= 4.0  # exponential, jittered


@pytest.mark.parametrize("exc, transient", [
    (httpx.ReadTimeout("slow"), True),
    (hf_errors.HfHubHTTPError("429", response=_http(429)), True),
    (hf_errors.LocalEntryNotFoundError("connection error"), False),  # no network cause: not a hiccup
    (hf_errors.GatedRepoError("gated", response=_http(403)), False),
    (hf_errors.EntryNotFoundError("404"), False),
    (hf_errors.HfHubHTTPError("400", response=_http(400)), False),
])
def test_only_transient_failures_are_retried(exc: Exception, transient: bool) -> None:
    from transforms.source import is_transient, with_retries

    assert is_transient(exc) is transient
    wrapped = hf_errors.LocalEntryNotFoundError("cannot reach the hub")
    wrapped.__cause__ = exc
    assert is_transient(wrapped) is transient  # huggingface_hub wraps the network error
    calls, sleeps = [], []

    def fail() -> None:
        calls.append(1)
        raise exc

    with pytest.raises(type(exc)):
        with_retries(fail, what="x", attempts=4, sleep=sleeps.append)
    assert len(calls) == (4 if transient else 1) and len(sleeps) == len(calls) - 1


def _legacy_layout(src: Path, dst: Path) -> Path:
    """A copy laid out as releases before 26.03: sensor_presence (booleans beside other columns)."""
    import shutil

    import pandas as pd

    shutil.copytree(src, dst)
    pres = pd.read_parquet(dst / "metadata/feature_presence.parquet")
    pres.assign(sensor_count=pres.sum(axis=1).astype(int)).to_parquet(dst / L.LEGACY_PRESENCE)
    (dst / "metadata/feature_presence.parquet").unlink()
    return dst


def test_hub_falls_back_to_sensor_presence_on_older_commits(twin_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from transforms.index import index_chunk

    cache = tmp_path / "hf"
    write_hf_cache(_legacy_layout(twin_dir, tmp_path / "legacy"), cache, REV)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    files = HubSource(REV, cache_dir=cache).fetch_chunk(0)
    assert L.LEGACY_PRESENCE in files.files and "metadata/feature_presence.parquet" not in files.files
    ix = index_chunk(files, chunk="chunk_0000")
    assert ix.counts()["clips_ok"] == SMALL.clips_per_chunk
    assert all(ix.clips.column("has_front_camera").to_pylist()) and ix.split_source == "clip_index.parquet"


def test_hub_with_neither_presence_file_says_so(twin_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    legacy = _legacy_layout(twin_dir, tmp_path / "legacy")
    (legacy / L.LEGACY_PRESENCE).unlink()
    write_hf_cache(legacy, tmp_path / "hf", REV)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(SourceError, match=r"neither metadata/feature_presence.parquet \(26.03 on\) nor "
                                          r"metadata/sensor_presence.parquet"):
        HubSource(REV, cache_dir=tmp_path / "hf").fetch_chunk(0)


def test_official_splits_file_overrides_clip_index(twin_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import pandas as pd

    from transforms.index import index_chunk

    src = tmp_path / "with_splits"
    shutil.copytree(twin_dir, src)
    ci = pd.read_parquet(src / "clip_index.parquet")
    listed = ci.index[ci["chunk"] == 0][:-1]  # the file leaves one clip of chunk 0 out
    (src / "splits").mkdir()
    pd.DataFrame({"split": ["test"] * len(listed)}, index=listed).to_parquet(src / L.SPLITS_FILE)
    write_hf_cache(src, tmp_path / "hf", REV)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    for source in (HubSource(REV, cache_dir=tmp_path / "hf"), mirror_source(src)):
        ix = index_chunk(source.fetch_chunk(0), chunk="chunk_0000")
        split = dict(zip(ix.clips.column("clip_id").to_pylist(), ix.clips.column("split").to_pylist(), strict=True))
        assert {split[c] for c in listed} == {"test"}
        left_out = (set(split) - set(listed)).pop()
        assert split[left_out] == ci.loc[left_out, "split"]
        assert ix.split_source == "splits/default.parquet (1 clips it does not list keep clip_index.parquet's)"
    ds = PhysicalAIAVDatasetInterface(revision=REV, cache_dir=tmp_path / "hf", token=False)
    assert set(ds.clip_index.loc[listed, "split"]) == {"test"}  # the official reader agrees


@pytest.mark.parametrize("status, match", [(401, r"refused HF_TOKEN .* \(401\): it is invalid, expired or revoked"),
                                           (403, r"forbids .* \(403\): a fine-grained token needs")])
def test_hub_401_and_403_say_what_to_do(monkeypatch: pytest.MonkeyPatch, status: int, match: str) -> None:
    def fail(*args: object, **kwargs: object) -> str:
        raise hf_errors.HfHubHTTPError(f"{status} Client Error", response=_http(status))

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fail)
    with pytest.raises(SourceError, match=match) as info:
        HubSource(REV, token="hf_secret_token").fetch_chunk(0)
    assert "hf_secret_token" not in str(info.value)
