"""The training loop, its checkpoints and the inference API, on real shards with the tiny profile."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from safetensors.torch import load_file

from tests.trainers.conftest import QUICK
from trainers import checkpoint as C
from trainers.actions import rollout
from trainers.agent import EgoState, FieldAgent
from trainers.data import make_loader, shards_from_manifest
from trainers.policy import PolicySpec, dataset_stats, param_counts, policy_config, resolve_base
from trainers.tiny_backbone import build_tiny_backbone
from trainers.train import TrainConfig, lr_at, train, trajectory_term


def _val_batch(urls: dict[str, list[str]]) -> dict:
    return next(iter(make_loader(urls["val"], batch_size=4, shuffle_buffer=1)))


def _act(agent: FieldAgent, b: dict) -> np.ndarray:
    images = [im.permute(1, 2, 0).numpy() for im in b["image"]]
    return agent.act_batch(images, b["command"], b["state"].numpy(), seed=3).accel_mps2


def test_tiny_training_writes_metrics_and_a_safetensors_checkpoint(tiny_run: tuple) -> None:
    res, _ = tiny_run
    assert not res.already_done and res.resumed_from == 0 and res.steps == 12
    names = {(r["split"], r["name"]) for r in res.metrics}
    assert {("train", "loss"), ("train", "lr"), ("val", "ade_6p4s"), ("val", "cv_ade_6p4s"), ("val", "val_loss")} <= names
    assert sum(1 for r in res.metrics if r["split"] == "train" and r["name"] == "loss") == 12
    assert [r["step"] for r in res.metrics if r["name"] == "val_loss"] == [6, 12]
    assert all(np.isfinite(r["value"]) for r in res.metrics)
    assert res.final["windows"] > 0 and res.final["ade_6p4s"] > 0 and res.final["cv_ade_6p4s"] > 0
    files = sorted(p.name for p in res.checkpoint.rglob("*") if p.is_file())
    assert not [f for f in files if f.endswith((".pt", ".pth", ".bin", ".pkl", ".ckpt"))], files
    assert {"checkpoint.json", "config.json", "weights.safetensors", "stats.safetensors"} <= set(files)
    meta = json.loads((res.checkpoint / "checkpoint.json").read_text())
    assert meta["base"]["kind"] == "tiny" and len(meta["base"]["config_hash"]) == 16
    assert meta["data_version"] == "test-data" and meta["step"] == 12 and meta["weights_scope"] == "all"
    assert meta["spec"] == {"profile": "tiny", "freeze_backbone": False, "train_expert_only": False, "lora_rank": 0,
                            "lora_alpha": 0, "flow_steps": 10, "action_mode": "residual"}
    assert meta["action_space"]["accel_std"] == pytest.approx(0.681043)
    assert (res.checkpoint / "backbone" / "config.json").exists()  # shipped: the checkpoint stands alone
    assert json.loads((res.checkpoint / "config.json").read_text())["vlm_model_name"] == "backbone"


def test_checkpoint_reload_reproduces_the_actions(tiny_run: tuple, shard_urls: dict[str, list[str]],
                                                  tmp_path: Path) -> None:
    res, _ = tiny_run
    b = _val_batch(shard_urls)
    agent = FieldAgent.load(res.checkpoint)
    first = _act(agent, b)
    # a copy elsewhere (absolute paths must not matter) gives the same actions
    import shutil

    moved = shutil.copytree(res.checkpoint, tmp_path / "moved")
    again = _act(FieldAgent.load(moved), b)
    np.testing.assert_allclose(again, first, rtol=0, atol=1e-6)
    assert first.shape == (4, 64) and np.isfinite(first).all()
    out = agent.act(b["image"][0].permute(1, 2, 0).numpy(), b["command"][0], EgoState(*b["state"][0].tolist()), seed=3)
    np.testing.assert_allclose(out.accel_mps2, first[0], atol=1e-5)
    # the trajectory is the unicycle integration of the actions from the given speed
    xy = rollout(torch.stack([torch.from_numpy((out.accel_mps2 - 0.029027) / 0.681043),
                              torch.from_numpy((out.curvature_1pm - 0.00026922) / 0.0261483)], -1)[None],
                 b["state"][:1, 0])[2][0].numpy()
    np.testing.assert_allclose(out.xy_m, xy, atol=1e-3)
    # a corrupted copy is refused, naming the file
    (moved / "weights.safetensors").write_bytes(b"0" * 100)
    with pytest.raises(ValueError, match=r"weights\.safetensors does not match its recorded sha256"):
        FieldAgent.load(moved)


def test_agent_rejects_bad_observations(tiny_run: tuple) -> None:
    agent = FieldAgent.load(tiny_run[0].checkpoint)
    img = np.zeros((72, 128, 3), np.uint8)
    with pytest.raises(ValueError, match=r"image 0: need an \(H, W, 3\) uint8"):
        agent.act(np.zeros((72, 128), np.uint8), "Follow the lane", EgoState(10.0))
    with pytest.raises(ValueError, match="states must be finite"):
        agent.act(img, "Follow the lane", [float("nan"), 0, 0, 0])
    # another image size is resized to the training size
    assert agent.act(np.zeros((144, 256, 3), np.uint8), "Stop at the line", EgoState(8.0)).xy_m.shape == (64, 2)


def test_finished_run_is_reported_not_retrained(tiny_run: tuple, shard_urls: dict[str, list[str]]) -> None:
    res, runs = tiny_run
    again = train(TrainConfig(profile="tiny", steps=12, **QUICK), train_urls=shard_urls["train"],
                  val_urls=shard_urls["val"], runs_dir=runs, data_version="test-data")
    assert again.already_done and again.run_id == res.run_id and again.final == res.final


class _Interrupt(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_weights(shard_urls: dict[str, list[str]], tmp_path: Path) -> None:
    cfg = TrainConfig(profile="tiny", steps=10, **{**QUICK, "checkpoint_every": 4, "val_every": 100})
    kw = dict(train_urls=shard_urls["train"], val_urls=[], data_version="d")
    whole = train(cfg, runs_dir=tmp_path / "a", **kw)

    def stop_at_7(line: str) -> None:
        if line.startswith("step 7/"):
            raise _Interrupt  # after the checkpoint at step 4, before the one at 8

    with pytest.raises(_Interrupt):
        train(cfg, runs_dir=tmp_path / "b", log=stop_at_7, **kw)
    assert json.loads((tmp_path / "b" / whole.run_id / "checkpoint" / "checkpoint.json").read_text())["step"] == 4
    resumed = train(cfg, runs_dir=tmp_path / "b", **kw)
    assert resumed.resumed_from == 4
    a, b = (load_file(str(r.checkpoint / "weights.safetensors")) for r in (whole, resumed))
    assert a.keys() == b.keys()
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) == 0.0
    losses = lambda r: [x["value"] for x in r.metrics if x["name"] == "loss"]  # noqa: E731
    assert losses(resumed) == losses(whole)


def test_switches_freeze_what_they_say(tmp_path: Path) -> None:
    vlm = build_tiny_backbone(tmp_path / "bb")
    from trainers.policy import build_policy

    def trainable(spec: PolicySpec) -> tuple[dict[str, bool], dict[str, int]]:
        pol = build_policy(spec, policy_config(spec, image_hw=(72, 128), vlm=vlm))
        grads = {n: p.requires_grad for n, p in pol.named_parameters()}
        return grads, param_counts(pol)

    def any_(grads: dict[str, bool], part: str, lora: bool = False) -> bool:
        return any(g for n, g in grads.items() if part in n and ("lora_" in n) == lora)

    g, _ = trainable(PolicySpec())
    assert any_(g, ".vision_model.") and any_(g, ".text_model.") and any_(g, ".lm_expert.") and any_(g, "state_proj")
    g, _ = trainable(PolicySpec(freeze_backbone=True))
    assert not any_(g, ".vision_model.") and any_(g, ".text_model.") and any_(g, ".lm_expert.")
    g, _ = trainable(PolicySpec(train_expert_only=True))
    assert not any_(g, ".vlm.") and any_(g, ".lm_expert.") and any_(g, "action_out_proj")
    g, n = trainable(PolicySpec(lora_rank=4))
    assert not any_(g, ".vlm.") and any_(g, ".text_model.", lora=True) and any_(g, ".lm_expert.")
    assert not any(".vision_model." in k and "lora_" in k for k in g) and not any(".lm_expert." in k and "lora_" in k for k in g)
    assert n["lora"] == 4 * 64 * 2 * 2 * 4  # (A: r x 64, B: 64 x r) x (q, v) x 4 layers
    assert PolicySpec.for_profile("full") == PolicySpec(profile="full", freeze_backbone=True, train_expert_only=True)
    assert not PolicySpec.for_profile("full", lora_rank=8).train_expert_only
    with pytest.raises(ValueError, match="lora_rank=8 with train_expert_only"):
        PolicySpec(lora_rank=8, train_expert_only=True)
    with pytest.raises(ValueError, match="profile='huge'"):
        PolicySpec(profile="huge")  # type: ignore[arg-type]


def test_lora_run_checkpoints_its_adapter_and_reloads(shard_urls: dict[str, list[str]], tmp_path: Path) -> None:
    res = train(TrainConfig(profile="tiny", steps=4, lora_rank=4, **QUICK), train_urls=shard_urls["train"],
                val_urls=[], runs_dir=tmp_path, data_version="d")
    adapter = load_file(str(res.checkpoint / "adapter.safetensors"))
    assert adapter and all("lora_" in k for k in adapter) and any(float(v.abs().sum()) for k, v in adapter.items()
                                                                  if "lora_B" in k)  # B starts at 0: it trained
    assert json.loads((res.checkpoint / "adapter_config.json").read_text())["r"] == 4
    b = _val_batch(shard_urls)
    np.testing.assert_allclose(_act(FieldAgent.load(res.checkpoint), b), _act(FieldAgent.load(res.checkpoint), b))
    loaded = C.load_checkpoint(res.checkpoint)
    for k, v in adapter.items():  # the reloaded adapter is the trained one, not a fresh init
        name = k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
        assert torch.equal(loaded.policy.state_dict()[name].cpu(), v)


def _base_checkpoint(tmp_path: Path) -> Path:
    """A SmolVLA checkpoint laid out like lerobot/smolvla_base (config.json + model.safetensors,
    32-dim padded state and actions) but tiny and random, as LeRobot's own save_pretrained writes it."""
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    vlm = build_tiny_backbone(tmp_path / "base_vlm")
    cfg = policy_config(PolicySpec(), image_hw=(72, 128), vlm=vlm)
    import dataclasses

    cfg = dataclasses.replace(cfg, max_state_dim=32, max_action_dim=32, chunk_size=50, n_action_steps=50)
    torch.manual_seed(1)
    SmolVLAPolicy(cfg).save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def test_full_profile_fine_tunes_a_base_checkpoint_and_stores_only_what_trained(
        shard_urls: dict[str, list[str]], tmp_path: Path) -> None:
    base = _base_checkpoint(tmp_path)
    res = train(TrainConfig(profile="full", device="cpu", base=str(base), steps=3, **QUICK),
                train_urls=shard_urls["train"], val_urls=[], runs_dir=tmp_path / "runs", data_version="d")
    meta = json.loads((res.checkpoint / "checkpoint.json").read_text())
    assert meta["base"] == {"kind": "local", "path": str(base.resolve())} and meta["weights_scope"] == "trained"
    assert meta["spec"]["train_expert_only"] and meta["spec"]["freeze_backbone"]  # SmolVLA's fine-tuning recipe
    stored = load_file(str(res.checkpoint / "weights.safetensors"))
    base_sd = load_file(str(base / "model.safetensors"))
    assert stored and not any(".vlm." in k for k in stored) and any(".lm_expert." in k for k in stored)
    assert len(stored) < len(base_sd)
    k = next(k for k in stored if "action_out_proj.weight" in k)
    assert stored[k].shape == base_sd[k].shape == (32, stored[k].shape[1])  # the base's padded head, kept
    assert not torch.equal(stored[k], base_sd[k])  # and trained
    b = _val_batch(shard_urls)
    np.testing.assert_allclose(_act(FieldAgent.load(res.checkpoint), b), _act(FieldAgent.load(res.checkpoint), b))


def test_base_resolves_from_an_offline_hf_cache_pinned_to_a_commit(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    base = _base_checkpoint(tmp_path)
    cache, sha = tmp_path / "hf", "a" * 40
    repo = cache / "models--lerobot--smolvla_base"
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        (snap / f).write_bytes((base / f).read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    d, ref = resolve_base("lerobot/smolvla_base")
    assert ref == {"kind": "hub", "repo_id": "lerobot/smolvla_base", "revision": sha} and (d / "model.safetensors").exists()
    assert resolve_base("lerobot/smolvla_base", sha)[1]["revision"] == sha
    with pytest.raises(RuntimeError, match="not in the HF cache and the hub is not reachable"):
        resolve_base("lerobot/smolvla_base", "b" * 40)


def test_lr_schedule_warms_up_then_decays_to_the_floor() -> None:
    tc = TrainConfig(steps=100, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, tc) == pytest.approx(1e-4) and lr_at(9, tc) == pytest.approx(1e-3)
    assert lr_at(10, tc) == pytest.approx(1e-3) and lr_at(100, tc) == pytest.approx(1e-4)
    assert all(lr_at(s, tc) >= lr_at(s + 1, tc) for s in range(10, 100))
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)


@pytest.mark.parametrize("mode", ["residual", "absolute"])
def test_trajectory_term_is_the_ade_of_the_denoised_chunk(shard_urls: dict[str, list[str]], mode: str) -> None:
    from trainers.actions import to_model

    b = next(iter(make_loader(shard_urls["train"], batch_size=6, shuffle_buffer=1)))
    learned = to_model(b["actions"], b["state"], mode)
    st = dataset_stats(b["state"], learned)["action"]
    actions = (learned - st["mean"]) / st["std"]  # LeRobot's normalisation
    noise, t = torch.randn_like(actions), torch.rand(6)
    fut = b["future"][..., :2]
    # a perfect velocity recovers the targets: the term is then their own fit error, millimetres
    exact = trajectory_term(noise - actions, noise, t, actions, st, b["state"], fut, mode)
    assert float(exact) < 0.05
    # a wrong velocity costs metres, and the gradient reaches it
    v = (noise - actions + 0.5).requires_grad_()
    wrong = trajectory_term(v, noise, t, actions, st, b["state"], fut, mode)
    wrong.backward()
    assert wrong.item() > 10 * exact.item() and v.grad is not None and float(v.grad.abs().sum()) > 0


def test_residual_actions_round_trip_and_are_near_zero_when_the_driver_keeps_going(
        shard_urls: dict[str, list[str]]) -> None:
    from trainers.actions import from_model, to_model

    b = next(iter(make_loader(shard_urls["train"], batch_size=32, shuffle_buffer=1)))
    res = to_model(b["actions"], b["state"], "residual")
    torch.testing.assert_close(from_model(res, b["state"], "residual"), b["actions"])
    assert torch.equal(to_model(b["actions"], b["state"], "absolute"), b["actions"])
    # at t0 the fitted controls and the measured ones agree: the first residual is small
    assert float(res[:, 0].abs().mean()) < 0.5 * float(b["actions"][:, 0].abs().mean())


def test_training_set_comes_from_the_manifest(shard_dir: Path) -> None:
    rows = [{"chunk": "chunk_0000", "path": str(p.relative_to(shard_dir)), "split": p.parent.name, "samples": 1,
             "bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "first_key": "",
             "last_key": "", "dataset_version": "v0", "labeler": "kinematic", "labeler_version": "1.0", "config": "{}"}
            for p in sorted(shard_dir.rglob("*.tar"))]
    manifest = pa.Table.from_pylist(rows)
    s = shards_from_manifest(manifest, shard_dir, labeler="kinematic", labeler_version="1.0")
    assert s.train and s.val and all("/train/" in u for u in s.train) and s.chunks == {"chunk_0000": "v0"}
    moved = pa.Table.from_pylist([{**r, "dataset_version": "v1"} for r in rows])
    assert shards_from_manifest(moved, shard_dir, labeler="kinematic", labeler_version="1.0").data_version != s.data_version
    with pytest.raises(ValueError, match=r"no rows labelled by vlm 2.0 in the shard manifest \(it has \[\('kinematic'"):
        shards_from_manifest(manifest, shard_dir, labeler="vlm", labeler_version="2.0")
    # unnamed, the labels are the ones the shards hold: a relabel that was exported is taken as it is
    assert shards_from_manifest(manifest, shard_dir).labels == ("kinematic", "1.0")
    relabeled = pa.Table.from_pylist([{**r, "labeler_version": "1.1"} for r in rows])
    assert shards_from_manifest(relabeled, shard_dir).labels == ("kinematic", "1.1")
    mixed = pa.Table.from_pylist([{**r, "chunk": "chunk_0001", "labeler_version": "1.1"} if i == 0 else r
                                  for i, r in enumerate(rows)])
    with pytest.raises(ValueError, match=r"2 label sets matching any labeler .*kinematic 1\.0 \(1 chunks.*kinematic 1\.1 "
                                         r"\(1 chunks, e\.g\. chunk_0001\).*Name one"):
        shards_from_manifest(mixed, shard_dir)
    with pytest.raises(FileNotFoundError, match=r"missing under .* re-materialize webdataset_shards"):
        shards_from_manifest(manifest, shard_dir / "elsewhere", labeler="kinematic", labeler_version="1.0")
    other = pa.Table.from_pylist([{**r, "sha256": "0" * 64} if i == 0 else r for i, r in enumerate(rows)])
    with pytest.raises(ValueError, match=r"sha256 differs from the manifest's 000000000000.*re-materialize"):
        shards_from_manifest(other, shard_dir, labeler="kinematic", labeler_version="1.0")
    shorter = pa.Table.from_pylist([{**r, "bytes": r["bytes"] - 1} if i == 0 else r for i, r in enumerate(rows)])
    with pytest.raises(ValueError, match=r"bytes where the manifest says"):
        shards_from_manifest(shorter, shard_dir, labeler="kinematic", labeler_version="1.0", verify_sha256=False)


def test_the_default_plan_is_deterministic_and_sampling_is_a_choice(tiny_run: tuple,
                                                                    shard_urls: dict[str, list[str]]) -> None:
    agent = FieldAgent.load(tiny_run[0].checkpoint)
    b = _val_batch(shard_urls)
    images = [im.permute(1, 2, 0).numpy() for im in b["image"]]

    def plan(**kw: object) -> np.ndarray:
        return agent.act_batch(images, b["command"], b["state"].numpy(), **kw).xy_m

    np.testing.assert_array_equal(plan(seed=1), plan(seed=2))  # noise_scale 0: the seed does not matter
    drawn = plan(seed=1, noise_scale=1.0)
    np.testing.assert_array_equal(drawn, plan(seed=1, noise_scale=1.0))
    assert np.abs(drawn - plan(seed=2, noise_scale=1.0)).max() > 1e-4
    with pytest.raises(ValueError, match="noise_scale=-1"):
        plan(noise_scale=-1.0)


def _resave(base: Path, edit: object) -> None:
    from safetensors.torch import save_file

    sd = load_file(str(base / "model.safetensors"))
    save_file(edit(sd), str(base / "model.safetensors"))  # type: ignore[operator]


def test_full_profile_loads_a_base_like_lerobot_and_reports_what_differs(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A base laid out as an older lerobot saved smolvla_base: the tied text head absent, the old
    normalisation buffers present. It loads, not strictly, and the report names both."""
    import logging

    from trainers.policy import build_policy

    base = _base_checkpoint(tmp_path)
    stale = {"normalize_inputs.buffer_observation_state.mean": torch.zeros(32),
             "unnormalize_outputs.buffer_action.std": torch.ones(32)}
    head = [k for k in load_file(str(base / "model.safetensors")) if k.endswith("lm_head.weight")]
    _resave(base, lambda sd: {**{k: v for k, v in sd.items() if k not in head}, **stale})
    tc = TrainConfig(profile="full", device="cpu", base=str(base)).resolved()
    cfg = policy_config(tc.spec(), image_hw=(72, 128), vlm="", base_dir=base)
    caplog.set_level(logging.INFO, logger="trainers.policy")
    policy = build_policy(tc.spec(), cfg, base_dir=base)
    report = next(r.getMessage() for r in caplog.records if "tensors loaded" in r.getMessage())
    assert "unexpected 2" in report and "normalize_inputs.buffer_observation_state.mean" in report
    assert f"missing {len(head)}" in report
    base_sd = load_file(str(base / "model.safetensors"))
    own = policy.state_dict()
    assert all(torch.equal(own[k], base_sd[k]) for k in base_sd if k in own)  # every stored weight is in place
    # and the optimiser is SmolVLA's own, not the tiny profile's
    assert (tc.lr, tc.warmup_steps, tc.grad_clip, tc.weight_decay) == (1e-4, 1000, 10, 1e-10)
    assert TrainConfig(profile="full", device="cpu", lr=3e-4).resolved().lr == 3e-4  # unless overridden


def test_a_base_without_weights_that_matter_fails_naming_them(tmp_path: Path) -> None:
    from trainers.policy import build_policy

    base = _base_checkpoint(tmp_path)
    _resave(base, lambda sd: {k: v for k, v in sd.items() if ".lm_expert." not in k})
    tc = TrainConfig(profile="full", device="cpu", base=str(base)).resolved()
    cfg = policy_config(tc.spec(), image_hw=(72, 128), vlm="", base_dir=base)
    with pytest.raises(ValueError, match=r"lacks \d+ of the policy's weights, e.g. \['model.vlm_with_expert.lm_expert"):
        build_policy(tc.spec(), cfg, base_dir=base)
