"""The field agent's speed, each figure against its goal, measured in one run:

- inference latency per `FieldAgent.act` call (one image, command, state -> (a, κ) x 64 and the
  trajectory), p50 / p95 (goal for the full profile on a GPU: p95 <= 50 ms, i.e. 20 Hz);
- training step time reading real shards vs re-using one in-memory batch (goal <= 1.1x: the input
  pipeline keeps up), samples/s and peak memory.

It trains on the lake's shards (run `make demo` first) and times the latest checkpoint in
`training_runs`, or a short run of its own when there is none. Profile `tiny` runs anywhere; on a
CUDA machine `--profile full --base <smolvla_base snapshot>` gives the GPU figures (bf16).

    python -m benchmarks.bench_agent [--lake lakehouse] [--profile tiny] [--steps 60] [--calls 100]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lake import io
from lake import tables as T
from trainers.actions import to_model
from trainers.agent import FieldAgent
from trainers.data import make_loader, shards_from_manifest, state_action_samples
from trainers.policy import dataset_stats, processors
from trainers.train import TrainConfig, batch_stream, prepare, train, train_step

P95_GOAL_MS = 50.0
LOADER_GOAL = 1.1


def latency(agent: FieldAgent, val_urls: list[str], calls: int) -> np.ndarray:
    b = next(iter(make_loader(val_urls, batch_size=16, shuffle_buffer=1)))
    obs = [(b["image"][i].permute(1, 2, 0).numpy(), b["command"][i], b["state"][i].tolist()) for i in range(len(b["key"]))]
    for img, cmd, st in obs[:3]:  # warm-up (allocator, tokenizer caches)
        agent.act(img, cmd, st)
    if agent.device.startswith("cuda"):
        torch.cuda.synchronize()
    out = []
    for k in range(calls):
        img, cmd, st = obs[k % len(obs)]
        t = time.perf_counter()
        agent.act(img, cmd, st)
        if agent.device.startswith("cuda"):
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t) * 1e3)
    return np.array(out)


def step_times(tc: TrainConfig, urls: list[str], steps: int) -> tuple[float, float, float]:
    """Mean step time (s) streaming shards, and re-using one batch; and peak memory (MB)."""
    with tempfile.TemporaryDirectory() as tmp:
        st = prepare(tc, urls, Path(tmp))
        states, actions = state_action_samples(urls, tc.stats_samples)
        pre, _ = processors(st.cfg, dataset_stats(states, to_model(actions, states, st.spec.action_mode)))
        stream = batch_stream(urls, tc, epoch=0, skip=0)
        one = next(stream)[2]
        for _ in range(3):  # warm-up
            train_step(st, pre, one)
        if tc.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = {}
        # interleave the two so machine noise hits both alike
        for mode in ("stream", "memory", "stream", "memory"):
            t = time.perf_counter()
            for _ in range(steps // 2):
                train_step(st, pre, next(stream)[2] if mode == "stream" else one)
            if tc.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[mode] = times.get(mode, 0.0) + time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated() / 2**20 if tc.device.startswith("cuda") else 0.0
    n = 2 * (steps // 2)
    return times["stream"] / n, times["memory"] / n, peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", default="lakehouse")
    ap.add_argument("--profile", default="tiny", choices=["tiny", "full"])
    ap.add_argument("--base", default="lerobot/smolvla_base")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--calls", type=int, default=100)
    a = ap.parse_args()
    shards = shards_from_manifest(io.read(a.lake, T.SHARD_MANIFEST), Path(a.lake) / "shards", labeler="kinematic",
                                  labeler_version="1.0")
    tc = TrainConfig(profile=a.profile, base=a.base, device=a.device, batch_size=a.batch_size,
                     num_workers=-1).resolved()
    if tc.device == "cpu":
        torch.set_num_threads(1)
    print(f"device: {tc.device}" + ("" if tc.device.startswith("cuda") else
                                   " (no GPU on this machine: the full-profile GPU figures are not measured here)"))

    runs = [r for r in io.read(a.lake, T.TRAINING_RUNS).to_pylist() if r["profile"] == tc.profile]
    if runs:
        ckpt = max(runs, key=lambda r: r["finished_us"])["checkpoint"]
    else:
        tmp = tempfile.mkdtemp()
        quick = dataclasses.replace(tc, steps=20, val_every=20, checkpoint_every=20)
        ckpt = str(train(quick, train_urls=shards.train, val_urls=[], runs_dir=tmp, data_version="bench").checkpoint)
    agent = FieldAgent.load(ckpt, device=tc.device)
    ms = latency(agent, shards.val or shards.train, a.calls)
    p50, p95 = np.percentile(ms, [50, 95])
    print(f"inference ({tc.profile}, {tc.device}, {agent.loaded.cfg.num_steps} flow steps), {a.calls} calls: "
          f"p50 {p50:.1f} ms, p95 {p95:.1f} ms -> p95 / {P95_GOAL_MS:.0f} ms goal = {p95 / P95_GOAL_MS:.2f}x "
          f"({'meets' if p95 <= P95_GOAL_MS else 'misses'} 20 Hz)")

    t_stream, t_mem, peak = step_times(tc, shards.train, a.steps)
    ratio = t_stream / t_mem
    print(f"training step (batch {tc.batch_size}): {t_stream * 1e3:.0f} ms with real shards vs {t_mem * 1e3:.0f} ms "
          f"with one in-memory batch -> {ratio:.2f}x (goal <= {LOADER_GOAL}x: {'met' if ratio <= LOADER_GOAL else 'missed'})")
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"throughput: {tc.batch_size / t_stream:.1f} samples/s; peak memory: "
          + (f"{peak:.0f} MB GPU" if tc.device.startswith("cuda") else f"{rss:.0f} MB RSS (CPU)"))


if __name__ == "__main__":
    main()
