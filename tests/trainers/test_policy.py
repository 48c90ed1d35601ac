"""SmolVLA (LeRobot's own) as the field agent on real shard batches: builds, trains, predicts (a, κ) x 64."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from labelers.build import label_windows, load_twin_gt, window_contexts
from labelers.kinematic import KinematicLabeler
from trainers.data import make_loader
from trainers.policy import CAMERA_KEY, STATE_KEY, dataset_stats, profile, smolvla_config, to_policy_batch
from trainers.tiny_backbone import build_tiny_backbone
from transforms import shards as S
from transforms.index import index_chunk
from transforms.source import mirror_source
from transforms.unicycle import targets_for_chunk


@pytest.fixture(scope="module")
def shard_urls(twin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    files = mirror_source(twin_dir).fetch_chunk(0)
    ix = index_chunk(files, chunk="chunk_0000")
    targets = targets_for_chunk(ix.egomotion, ix.clips, chunk="chunk_0000").table
    labels = label_windows(KinematicLabeler(), window_contexts(targets, load_twin_gt(files)), chunk="chunk_0000").table
    out = tmp_path_factory.mktemp("shards")
    res = S.export_shards(files, S.windows_for_chunk(targets, labels, ix.egomotion, chunk="chunk_0000"), out,
                          S.ShardConfig(image_width=128, image_height=72), chunk="chunk_0000")
    return [str(out / r.path) for r in res.shards]


def test_smolvla_trains_on_shard_batches_and_predicts_a_chunk(shard_urls: list[str], tmp_path: Path) -> None:
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

    torch.manual_seed(0)
    torch.set_num_threads(1)  # 2 busy cores: one thread is faster and steadier
    cfg = smolvla_config(profile("tiny", backbone_dir=build_tiny_backbone(tmp_path / "bb")), image_hw=(72, 128))
    batch = next(iter(make_loader(shard_urls, batch_size=8, shuffle_buffer=1)))
    pre, post = make_smolvla_pre_post_processors(cfg, dataset_stats(batch["state"], batch["actions"]))
    policy = SmolVLAPolicy(cfg)
    inputs = pre(to_policy_batch(batch))
    assert inputs[CAMERA_KEY].shape == (8, 3, 72, 128) and inputs[STATE_KEY].shape == (8, 4)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(25):  # overfit one batch: the loss must fall
        loss, _ = policy.forward(inputs)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses))) and min(losses[-5:]) < 0.7 * losses[0], losses
    policy.eval()
    raw = to_policy_batch(batch)
    one = {CAMERA_KEY: raw[CAMERA_KEY][:1], STATE_KEY: raw[STATE_KEY][:1], "task": raw["task"][:1]}
    with torch.no_grad():
        chunk = post(policy.predict_action_chunk(pre(one)))
    assert chunk.shape == (1, 64, 2) and torch.isfinite(chunk).all()
