"""Each labeler declares the PAI features it reads; ingest fetches them and the twin renders them."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from dagster_project.assets import ingest
from dagster_project.partitions import CHUNKS_PARTITION
from dagster_project.resources import EngineResource, LakeResource, PAISourceResource, TwinKnobs
from flywheel.settings import Settings
from labelers.alpamayo import AlpamayoLabeler
from labelers.registry import features_for
from lake import io
from lake import tables as T
from transforms import pai_layout as L
from transforms.pai_reader import LocalPAIDataset
from transforms.twin.writer import TwinConfig, write_twin

ALPAMAYO_CAMERAS = ("camera_cross_left_120fov", "camera_cross_right_120fov", "camera_front_tele_30fov")
SMALL = dict(chunks=1, clips_per_chunk=2, seed=3, width=64, height=48, seconds=8.5)


def test_labelers_declare_what_they_read() -> None:
    assert features_for(("kinematic",)) == L.REQUIRED_FEATURES
    assert features_for(("kinematic", "alpamayo")) == (*L.REQUIRED_FEATURES, *sorted(ALPAMAYO_CAMERAS))
    assert set(AlpamayoLabeler.features) == set(ALPAMAYO_CAMERAS)
    with pytest.raises(ValueError, match="FLYWHEEL_LABELERS names 'nope'"):
        Settings(labelers=("nope",))


def test_the_twin_renders_the_cameras_asked_for_and_keeps_the_front_one(tmp_path: Path) -> None:
    plain = write_twin(tmp_path / "plain", TwinConfig(**SMALL))
    more = write_twin(tmp_path / "more", TwinConfig(**SMALL, other_cameras=ALPAMAYO_CAMERAS))
    # the front camera is unchanged: the same calibration, the same frames (compared decoded: in one CI
    # run the same config encoded to other bytes in one process than in the next, cause not found)
    import pandas as pd

    for feat in (L.CAMERA_INTRINSICS, L.SENSOR_EXTRINSICS):
        rel = L.FEATURES[feat].path(0)
        a, b = pd.read_parquet(plain / rel), pd.read_parquet(more / rel)
        pd.testing.assert_frame_equal(a, b.loc[a.index])
    ds, base = LocalPAIDataset(more), LocalPAIDataset(plain)
    clip = ds.clip_index.index[0]
    t = np.arange(200_000, 8_000_000, 700_000)
    same, _ = base.get_clip_feature(clip, L.FRONT_CAMERA).decode_images_from_timestamps(t)
    got, _ = ds.get_clip_feature(clip, L.FRONT_CAMERA).decode_images_from_timestamps(t)
    assert np.abs(same.astype(float) - got.astype(float)).mean() < 0.5
    frames = {}
    for cam in (L.FRONT_CAMERA, *ALPAMAYO_CAMERAS):
        imgs, _ = ds.get_clip_feature(clip, cam).decode_images_from_timestamps(np.array([2_000_000]))
        frames[cam] = imgs[0].astype(float)
    assert all(im.shape == (48, 64, 3) for im in frames.values())
    # each camera sees its own view: the side cameras differ from the front one and from each other
    diff = {c: np.abs(frames[c] - frames[L.FRONT_CAMERA]).mean() for c in ALPAMAYO_CAMERAS}
    assert all(d > 2 for d in diff.values()), diff
    assert np.abs(frames[ALPAMAYO_CAMERAS[0]] - frames[ALPAMAYO_CAMERAS[1]]).mean() > 2
    assert TwinConfig(**SMALL).config_hash() != TwinConfig(**SMALL, other_cameras=ALPAMAYO_CAMERAS).config_hash()
    with pytest.raises(ValueError, match="the twin renders each of"):
        TwinConfig(**SMALL, other_cameras=("camera_rear_tele_30fov",))
    # with its cameras fetched, alpamayo still needs its own environment, and says how to build it
    from labelers.base import LabelerUnavailable
    from labelers.registry import make_labeler
    from transforms.source import mirror_source

    files = mirror_source(more).fetch_chunk(0, features=features_for(("alpamayo",)))
    with pytest.raises(LabelerUnavailable, match=r"runs in its own environment .* `make labeler-env NAME=alpamayo`"):
        make_labeler("alpamayo", files, env_dir=tmp_path / "no-env")


def test_ingest_fetches_the_features_of_the_configured_labelers(tmp_path: Path) -> None:
    inst = dg.DagsterInstance.ephemeral()
    inst.add_dynamic_partitions(CHUNKS_PARTITION, ["chunk_0000"])
    twin = TwinKnobs(chunks=1, clips_per_chunk=2, seed=3, width=64, height=48, seconds=8.5)
    source = PAISourceResource(kind="twin", twin_dir=str(tmp_path / "twin"), twin=twin, labelers="kinematic,alpamayo")
    res = {"lake": LakeResource(root=str(tmp_path / "lake")), "source": source, "engine": EngineResource()}
    assert dg.materialize([ingest.raw_chunks], partition_key="chunk_0000", instance=inst, resources=res).success
    fetched = set(io.read(tmp_path / "lake", T.CHUNKS).column("feature").to_pylist())
    assert set(features_for(("kinematic", "alpamayo"))) <= fetched


def test_a_labeler_refuses_a_chunk_fetched_without_its_features(twin_dir: Path) -> None:
    from labelers.base import LabelerUnavailable
    from labelers.registry import make_labeler
    from transforms.source import mirror_source

    with pytest.raises(LabelerUnavailable, match=r"labeler alpamayo reads \['camera_cross_left_120fov'.* "
                                                 r"add alpamayo to FLYWHEEL_LABELERS"):
        make_labeler("alpamayo", mirror_source(twin_dir).fetch_chunk(0))

