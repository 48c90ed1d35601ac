"""The field agent at full size on one GPU: one script, under 8 minutes on an H100/H200, with a CPU
part that runs anywhere (this repo's machines have no GPU; what was measured where is printed).

The model is SmolVLA as `lerobot/smolvla_base` configures it (SmolVLAConfig's defaults: the
SmolVLM2-500M backbone cut to 16 text layers, 512 px images, an expert at 0.75 width, 10 flow
steps) with the field agent's features (front camera, 4-d state, (a, κ) x 64). The hub is not
reachable, so the backbone is its *layout* (the SmolVLM2-500M config below, written offline, the
tiny BPE tokenizer beside it) with random weights: speed and memory depend on the layout, not
the weights. Each figure is printed against its goal:

1. action-chunk latency p50/p95 in bf16 (goal p95 <= 25 ms), what bounds it (prefill = the
   vision encoder + VLM over the prefix, once; each flow step = the expert over the cached
   prefix; the rest is launch overhead), the same with `torch.compile` and with fewer flow steps,
   and the accuracy cost of fewer steps measured on the lake's trained agent (ADE@6.4 s on its
   val windows: random weights have no accuracy to lose);
2. training throughput and peak memory at batch 64 (bf16 autocast, AdamW on what the full
   profile trains: the expert);
3. the input pipeline against an in-memory batch (goal <= 1.1x), on the lake's shards (the twin's
   256x144 frames; SmolVLA pads them to 512 px itself).

    python -m benchmarks.bench_device [--lake lakehouse] [--calls 100]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

P95_GOAL_MS = 25.0
LOADER_GOAL = 1.1
# SmolVLM2-500M-Video-Instruct's layout (smolvla_base's backbone): SmolLM2-360M text, SigLIP-B/16 at 512 px
SMOLVLM2_500M = {
    "text": {"hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32, "num_attention_heads": 15,
             "num_key_value_heads": 5, "vocab_size": 49280, "rope_theta": 100000.0, "max_position_embeddings": 8192},
    "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
               "image_size": 512, "patch_size": 16},
    "scale_factor": 4,
}  # the text head tied to the token embeddings, as SmolLM2's (SmolVLA never decodes text with it)


def full_layout_backbone(out: Path) -> Path:
    """SmolVLM2-500M's config (no weights) with the offline tokenizer and processor, in `out`."""
    from transformers import SmolVLMConfig

    from trainers.tiny_backbone import NAMED, build_tiny_backbone

    build_tiny_backbone(out)  # tokenizer, processor, a tiny config: the config is replaced below
    tiny = json.loads((out / "config.json").read_text())
    tok = tiny["text_config"]
    cfg = SmolVLMConfig(image_token_id=tiny["image_token_id"], scale_factor=SMOLVLM2_500M["scale_factor"],
                        pad_token_id=tok["pad_token_id"], tie_word_embeddings=True,
                        vision_config=SMOLVLM2_500M["vision"],
                        text_config={"model_type": "llama", **SMOLVLM2_500M["text"], "tie_word_embeddings": True,
                                     "pad_token_id": tok["pad_token_id"],
                                     "bos_token_id": tok["bos_token_id"], "eos_token_id": tok["eos_token_id"]})
    assert NAMED["image_token"]  # the processor's special tokens stay the tiny tokenizer's
    cfg.save_pretrained(out)
    return out


def full_policy(device: str, *, num_steps: int = 10) -> Any:
    """smolvla_base's configuration for the field agent's features, random weights, on `device`."""
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    from trainers.policy import CHUNK, _features

    vlm = full_layout_backbone(Path(tempfile.mkdtemp(prefix="smolvlm2-500m-layout-")))
    cfg = SmolVLAConfig(**_features((512, 512)), chunk_size=CHUNK, n_action_steps=CHUNK, vlm_model_name=str(vlm),
                        load_vlm_weights=False, device=device, num_steps=num_steps)
    torch.manual_seed(0)
    return SmolVLAPolicy(cfg).to(device)


def _obs(policy: Any, batch: int, device: str) -> dict[str, torch.Tensor]:
    from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

    from trainers.policy import CAMERA_KEY, STATE_KEY

    g = torch.Generator().manual_seed(0)
    return {CAMERA_KEY: torch.rand(batch, 3, 512, 512, generator=g).to(device),
            STATE_KEY: torch.randn(batch, 4, generator=g).to(device),
            OBS_LANGUAGE_TOKENS: torch.randint(10, 600, (batch, 12), generator=g).to(device),
            OBS_LANGUAGE_ATTENTION_MASK: torch.ones(batch, 12, dtype=torch.bool).to(device)}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_ms(fn: Callable[[], object], calls: int, device: str, warmup: int = 3) -> np.ndarray:
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append((time.perf_counter() - t) * 1e3)
    return np.array(out)


def latency(policy: Any, device: str, calls: int, dtype: torch.dtype) -> dict[str, float]:
    """p50/p95 of one action chunk, and its split into prefill and flow steps (a line through the
    times at 1 and at num_steps steps: intercept = prefill + fixed costs, slope = one step)."""
    obs = _obs(policy, 1, device)
    noise = torch.zeros(1, policy.config.chunk_size, policy.config.max_action_dim, device=device)
    steps = policy.config.num_steps

    def chunk(n: int) -> Callable[[], object]:
        def run() -> object:
            policy.model.config.num_steps = n
            with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
                return policy.predict_action_chunk(dict(obs), noise=noise)
        return run

    full = timed_ms(chunk(steps), calls, device)
    one = timed_ms(chunk(1), max(3, calls // 4), device)
    policy.model.config.num_steps = steps
    per_step = (np.median(full) - np.median(one)) / max(steps - 1, 1)
    return {"p50": float(np.percentile(full, 50)), "p95": float(np.percentile(full, 95)),
            "prefill": float(np.median(one) - per_step), "step": float(per_step), "steps": steps}


def train_throughput(policy: Any, device: str, batch: int, steps: int) -> tuple[float, float]:
    """Samples/s and peak memory (MiB; RSS on CPU) of training steps on one in-memory batch."""
    from trainers.policy import CHUNK

    obs = _obs(policy, batch, device)
    obs["action"] = torch.randn(batch, CHUNK, 2, device=device)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    policy.train()

    def step() -> None:
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            loss, _ = policy.forward(dict(obs))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    ms = timed_ms(step, steps, device, warmup=2)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    policy.eval()
    return batch / (np.median(ms) / 1e3), peak


def flow_steps_accuracy(lake: str, steps: tuple[int, ...] = (10, 5, 2, 1)) -> dict[int, float] | None:
    """ADE@6.4 s of the lake's latest trained agent on its val windows at each number of flow steps."""
    from core.displacement import displacement_errors
    from lake import io
    from lake import tables as T
    from trainers.agent import FieldAgent
    from trainers.data import make_loader, shards_from_manifest

    runs = io.read(lake, T.TRAINING_RUNS).to_pylist() if Path(lake).is_dir() else []
    if not runs:
        return None
    run = max(runs, key=lambda r: r["finished_us"])
    agent = FieldAgent.load(run["checkpoint"])
    shards = shards_from_manifest(io.read(lake, T.SHARD_MANIFEST), Path(lake) / "shards", verify_sha256=False)
    batch = next(iter(make_loader(shards.val or shards.train, batch_size=128, shuffle_buffer=1)))
    images = [im.permute(1, 2, 0).numpy() for im in batch["image"]]
    out = {}
    for n in steps:
        agent.loaded.policy.model.config.num_steps = n
        plan = agent.act_batch(images, list(batch["command"]), batch["state"].tolist())
        out[n] = float(displacement_errors(plan.xy_m, batch["future"][..., :2].numpy())["ade_6p4s"].mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lake", default="lakehouse", help="for the flow-steps accuracy and the input pipeline")
    ap.add_argument("--calls", type=int, default=100, help="timed action chunks (CPU: 3)")
    ap.add_argument("--train-steps", type=int, default=20, help="timed training steps (CPU: 2)")
    a = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    calls, tsteps, batch = (a.calls, a.train_steps, 64) if cuda else (3, 2, 2)
    if not cuda:
        torch.set_num_threads(2)
    print(f"device: {torch.cuda.get_device_name() if cuda else 'CPU (no GPU here: the GPU figures are not measured; '
          'the CPU part below runs the same code at CPU-sized counts)'}")
    t0 = time.perf_counter()
    policy = full_policy(device).eval()
    n_params = sum(p.numel() for p in policy.parameters())
    print(f"SmolVLA at smolvla_base's configuration, SmolVLM2-500M layout, random weights: {n_params / 1e6:.0f} M "
          f"parameters, {sum(p.numel() for p in policy.parameters() if p.requires_grad) / 1e6:.0f} M train; "
          f"built in {time.perf_counter() - t0:.0f} s")
    dtype = torch.bfloat16 if cuda else torch.float32
    lat = latency(policy, device, calls, dtype)
    print(f"action chunk ({'bf16' if cuda else 'fp32, CPU'}, {lat['steps']} flow steps, {calls} calls): p50 "
          f"{lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms -> p95 / {P95_GOAL_MS:.0f} ms goal = "
          f"{lat['p95'] / P95_GOAL_MS:.2f}x; prefill {lat['prefill']:.1f} ms + {lat['steps']} x "
          f"{lat['step']:.1f} ms per flow step")
    for n in (5, 2):
        est = lat["prefill"] + n * lat["step"]
        print(f"  with {n} flow steps: {est:.1f} ms (from the split above)")
    if cuda:
        _compiled(policy, device, calls, dtype, lat)
    acc = flow_steps_accuracy(a.lake)
    if acc:
        print("accuracy cost of fewer flow steps (the lake's latest agent, val ADE@6.4 s): " + ", ".join(
            f"{n} steps {v:.3f} m ({v / acc[10]:.2f}x)" for n, v in acc.items()))
    else:
        print(f"accuracy cost of fewer flow steps: no trained agent in {a.lake} (make demo first)")
    sps, peak = train_throughput(policy, device, batch, tsteps)
    print(f"training (batch {batch}{', bf16 autocast' if cuda else ', CPU fp32'}): {sps:.1f} samples/s, peak "
          f"{peak:.0f} MiB {'GPU' if cuda else 'RSS'}")
    _pipeline(a.lake, device, policy)
    print(f"total {time.perf_counter() - t0:.0f} s")


def _compiled(policy: Any, device: str, calls: int, dtype: torch.dtype, eager: dict[str, float]) -> None:
    """The same latency with torch.compile (CUDA graphs: mode reduce-overhead); a failure is reported, not hidden."""
    try:
        policy.model.vlm_with_expert = torch.compile(policy.model.vlm_with_expert, mode="reduce-overhead")
        lat = latency(policy, device, calls, dtype)
        print(f"  torch.compile (reduce-overhead): p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms "
              f"({eager['p95'] / lat['p95']:.2f}x faster than eager at p95)")
    except Exception as exc:  # compile failures come from many layers (dynamo, inductor, triton)
        print(f"  torch.compile failed: {type(exc).__name__}: {str(exc)[:200]}")


def _pipeline(lake: str, device: str, policy: Any) -> None:
    """Training steps on the lake's shards against one in-memory batch: the full-size policy at batch 64
    on a GPU; on CPU the tiny profile (a full-size step takes seconds there, which would hide the loader)."""
    from lake import io
    from lake import tables as T
    from trainers.data import shards_from_manifest

    if not (Path(lake).is_dir() and io.read(lake, T.SHARD_MANIFEST).num_rows):
        print(f"input pipeline: no shards in {lake} (make demo first)")
        return
    shards = shards_from_manifest(io.read(lake, T.SHARD_MANIFEST), Path(lake) / "shards", verify_sha256=False)
    if device.startswith("cuda"):
        t_stream, t_mem, what = *_full_step_times(policy, shards.train, device, steps=20), "full size, 4 workers"
    else:
        from benchmarks.bench_agent import step_times
        from trainers.train import TrainConfig

        tc = TrainConfig(profile="tiny", device="cpu", batch_size=64, num_workers=-1).resolved()
        t_stream, t_mem, _ = step_times(tc, shards.train, 10)
        what = "tiny profile on CPU, 0 workers"
    ratio = t_stream / t_mem
    print(f"input pipeline ({what}, batch 64): {t_stream * 1e3:.0f} ms per step streaming shards vs "
          f"{t_mem * 1e3:.0f} ms in memory -> {ratio:.2f}x (goal <= {LOADER_GOAL}x: "
          f"{'met' if ratio <= LOADER_GOAL else 'missed'})")


def _full_step_times(policy: Any, urls: list[str], device: str, steps: int) -> tuple[float, float]:
    """Mean training step (s) of the full-size policy reading shards (4 loader workers), and re-using one batch."""
    from trainers.actions import to_model
    from trainers.data import make_loader, state_action_samples
    from trainers.policy import dataset_stats, processors, to_policy_batch

    states, actions = state_action_samples(urls, 1024)
    pre, _ = processors(policy.config, dataset_stats(states, to_model(actions, states, "residual"), "zero_mean"))
    loader = iter(make_loader(urls * 50, batch_size=64, num_workers=4, shuffle_buffer=256))
    trainable = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    policy.train()

    def step(raw: dict) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = policy.forward(pre(to_policy_batch(raw, device, "residual")))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    one = next(loader)
    for _ in range(3):
        step(one)
    times = {"stream": 0.0, "memory": 0.0}
    for mode in ("stream", "memory", "stream", "memory"):  # interleaved: machine noise hits both alike
        _sync(device)
        t = time.perf_counter()
        for _ in range(steps // 2):
            step(next(loader) if mode == "stream" else one)
        _sync(device)
        times[mode] += time.perf_counter() - t
    policy.eval()
    n = 2 * (steps // 2)
    return times["stream"] / n, times["memory"] / n


if __name__ == "__main__":
    main()
