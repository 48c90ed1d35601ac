"""SmolVLA (LeRobot's own) as the field agent on real shard batches: builds, trains, predicts (a, κ) x 64."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainers.data import make_loader
from trainers.policy import CAMERA_KEY, STATE_KEY, PolicySpec, dataset_stats, policy_config, to_policy_batch
from trainers.tiny_backbone import build_tiny_backbone


def test_smolvla_trains_on_shard_batches_and_predicts_a_chunk(shard_urls: dict[str, list[str]], tmp_path: Path) -> None:
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

    torch.manual_seed(0)
    torch.set_num_threads(1)  # 2 busy cores: one thread is faster and steadier
    cfg = policy_config(PolicySpec(train_expert_only=True), image_hw=(72, 128), vlm=build_tiny_backbone(tmp_path / "bb"))
    batch = next(iter(make_loader(shard_urls["train"], batch_size=8, shuffle_buffer=1)))
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
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and min(losses[-5:]) < 0.7 * losses[0], losses
    policy.eval()
    raw = to_policy_batch(batch)
    one = {CAMERA_KEY: raw[CAMERA_KEY][:1], STATE_KEY: raw[STATE_KEY][:1], "task": raw["task"][:1]}
    with torch.no_grad():
        chunk = post(policy.predict_action_chunk(pre(one)))
    assert chunk.shape == (1, 64, 2) and torch.isfinite(chunk).all()


def test_zero_mean_action_norm_keeps_a_zero_action_at_zero() -> None:
    states = torch.zeros(8, 4)
    actions = torch.randn(8, 64, 2) * torch.tensor([0.7, 0.3]) + torch.tensor([0.2, -0.01])
    lerobot = dataset_stats(states, actions)["action"]
    zero = dataset_stats(states, actions, "zero_mean")["action"]
    assert torch.all(lerobot["mean"] != 0) and torch.all(zero["mean"] == 0)
    rms = actions.reshape(-1, 2).pow(2).mean(0).sqrt()
    torch.testing.assert_close(zero["std"], rms)
    with pytest.raises(ValueError, match="action_norm='median'"):
        dataset_stats(states, actions, "median")  # type: ignore[arg-type]
