"""Fine-tune the field agent (LeRobot SmolVLA, (a, κ) x 64) on WebDataset shards.

The loop, top to bottom: build or resume -> for each step: batch -> LeRobot preprocessor ->
flow-matching loss (+ optional trajectory-space term through the unicycle layer) -> AdamW with
warmup + cosine and gradient clipping -> every `val_every` steps: val loss and ADE through the
unicycle layer, beside the constant-velocity baseline -> every `checkpoint_every` steps and at
the end: checkpoint + resume state. Seeded: the same config, data and seed give the same run,
and a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.displacement import constant_velocity_xy, displacement_errors
from core.progress import Progress
from core.request import parse_weights
from core.stats import paired_difference, verdict_word
from trainers import checkpoint as C
from trainers.actions import ActionMode, from_model, rollout, to_model
from trainers.config import TrainConfig
from trainers.data import make_loader, state_action_samples
from trainers.distributed import (
    SINGLE,
    Dist,
    average_gradients,
    barrier,
    broadcast_module,
    from_env,
    global_size,
    local_batch,
    main_first,
    mean_over_ranks,
    rows_of_rank,
)
from trainers.policy import (
    PolicySpec,
    build_policy,
    dataset_stats,
    param_counts,
    policy_config,
    processors,
    resolve_base,
    to_policy_batch,
)
from trainers.tiny_backbone import build_tiny_backbone
from transforms.baselines import constant_controls

Log = Callable[[str], None]


@dataclass
class TrainResult:
    run_id: str
    profile: str  # tiny or full, as resolved on this machine
    checkpoint: Path
    steps: int
    resumed_from: int  # 0 for a fresh run
    already_done: bool  # the run had finished before; nothing was trained
    metrics: list[dict[str, Any]]  # rows: step, split, name, value, wall_s
    final: dict[str, float]  # last validation: val_loss, ade_*/fde_*, cv_ade_*, ...
    params: dict[str, int]
    train_wall_s: float
    samples_per_s: float
    peak_mem_mb: float
    extra: dict[str, Any] = field(default_factory=dict)


class EMA:
    """An exponential moving average of the trainable weights.

    Flow-matching policies sample from what the weights say *now*; on a few hundred windows the
    last steps' weights swing from one validation to the next, and their average is the steadier
    (and better) agent, as in Diffusion Policy. The average warms up (decay (1+t)/(10+t)) so early
    weights do not linger.
    """

    def __init__(self, policy: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.params = {n: p for n, p in policy.named_parameters() if p.requires_grad}
        self.shadow = {n: p.detach().clone() for n, p in self.params.items()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for n, p in self.params.items():
            self.shadow[n].lerp_(p.detach(), 1 - d)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in place of the live ones, for validation and checkpoints."""
        live = {n: p.detach().clone() for n, p in self.params.items()}
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(self.shadow[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(live[n])


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warmup, then cosine from lr down to lr * min_lr_ratio at the last step."""
    if step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    frac = (step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps)
    return tc.lr * (tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def batch_stream(urls: list[str], tc: TrainConfig, *, epoch: int, skip: int,
                 d: Dist = SINGLE) -> Iterator[tuple[int, int, dict]]:
    """(epoch, index in epoch, batch) forever; each epoch's order is a function of (seed, epoch), so a
    resumed run skips the batches it had consumed and sees the same data as an uninterrupted one.
    Under data parallelism a batch is this rank's share of the global batch of the same index."""
    while True:
        loader = make_loader(urls, batch_size=local_batch(tc.batch_size, d), num_workers=tc.num_workers,
                             shuffle_buffer=tc.shuffle_buffer, seed=tc.seed * 100_003 + epoch,
                             weights=parse_weights(tc.sample_weights), rank=d.rank, world=d.world)
        n = 0
        for i, batch in enumerate(loader):
            n += 1
            if i >= skip:
                yield epoch, i, batch
        if n == 0:
            raise ValueError(f"the training shards yielded no batch ({urls[:2]}...): re-materialize webdataset_shards")
        epoch, skip = epoch + 1, 0


def load_val(urls: list[str], tc: TrainConfig) -> list[dict[str, Any]]:
    """The validation windows in memory (fixed order), at most val_max_samples of them."""
    out, n = [], 0
    for b in make_loader(urls, batch_size=tc.batch_size, shuffle_buffer=1, shuffle_shards=False):
        out.append(b)
        n += len(b["key"])
        if n >= tc.val_max_samples:
            break
    return out


class _VelocityCapture:
    """Keeps the flow-matching velocity v_t that SmolVLA's action_out_proj emits in a forward pass
    (a forward hook: the trajectory term needs it and LeRobot's forward returns only the loss)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.v_t: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, _m: torch.nn.Module, _i: Any, out: torch.Tensor) -> None:
        self.v_t = out


def trajectory_term(v_t: torch.Tensor, noise: torch.Tensor, time_: torch.Tensor, actions: torch.Tensor,
                    stats: dict[str, torch.Tensor], state: torch.Tensor, future_xy: torch.Tensor,
                    mode: ActionMode) -> torch.Tensor:
    """ADE (m) of the chunk recovered in one step from the noisy one, weighted by (1 - t).

    LeRobot's flow matching: x_t = t·noise + (1 - t)·actions and v_t ≈ noise - actions, so
    actions ≈ x_t - t·v_t. (B, 64, D) tensors in LeRobot's normalisation; the first 2 dims are
    what the policy learns (trainers.actions.to_model) of (a, κ).
    """
    t = time_[:, None, None]
    x_t = t * noise[..., :2] + (1 - t) * actions[..., :2]
    a_hat = from_model((x_t - t * v_t[..., :2].float()) * stats["std"] + stats["mean"], state, mode)
    _, _, xy, _ = rollout(a_hat, state[:, 0])
    return ((xy - future_xy).norm(dim=-1).mean(dim=1) * (1 - time_)).mean()


BASELINE_PREFIX = {"cv": "constant velocity", "ca": "constant (a, κ)"}  # the val baselines, as metric prefixes


@torch.no_grad()
def validate(policy: Any, pre: Any, post: Any, val: list[dict[str, Any]], cfg: Any, *, seed: int,
             device: str, mode: ActionMode) -> dict[str, float]:
    """Val flow-matching loss (fixed noise and times) and displacement errors of sampled chunks,
    beside the constant-velocity (`cv_*`) and constant-(a, κ) (`ca_*`) baselines on the same windows,
    and the agent's paired ADE@6.4 s difference to each (`d_cv_ade_6p4s` with `_lo`/`_hi`: a 95%
    interval resampling the val clips)."""
    policy.eval()
    g = torch.Generator().manual_seed(seed)
    losses, preds, truths, states, keys = [], [], [], [], []
    for b in val:
        n = len(b["key"])
        shape = (n, cfg.chunk_size, cfg.max_action_dim)
        noise, time_ = torch.randn(shape, generator=g), torch.rand(n, generator=g) * 0.998 + 0.001
        loss, _ = policy.forward(pre(to_policy_batch(b, device, mode)), noise=noise.to(device), time=time_.to(device))
        losses.append(float(loss) * n)
        obs = pre({k: v for k, v in to_policy_batch(b, device).items() if k != "action"})
        # the plan the agent drives: flow matching from the noise mean (trainers.agent, noise_scale 0)
        chunk = post(policy.predict_action_chunk(obs, noise=torch.zeros(shape, device=device)))
        preds.append(rollout(from_model(chunk.float().cpu(), b["state"], mode), b["state"][:, 0])[2].numpy())
        truths.append(b["future"][..., :2].numpy())
        states.append(b["state"].numpy().astype(np.float64))
        keys += list(b["key"])
    pred, true, st = np.concatenate(preds), np.concatenate(truths), np.concatenate(states)
    clips = [k.rsplit("_", 1)[0] for k in keys]  # shard keys are <clip_id>_<t0_us>
    errs = {"": displacement_errors(pred, true), "cv": displacement_errors(constant_velocity_xy(st[:, 0]), true),
            "ca": displacement_errors(constant_controls(st[:, 0], st[:, 1], st[:, 2])[0], true)}
    out = {"val_loss": sum(losses) / len(pred), "windows": float(len(pred)), "clips": float(len(set(clips)))}
    for prefix, e in errs.items():
        out |= {f"{prefix}_{k}" if prefix else k: float(v.mean()) for k, v in e.items()}
    for prefix in BASELINE_PREFIX:
        d = paired_difference(errs[""]["ade_6p4s"], errs[prefix]["ade_6p4s"], clips, seed=seed)
        out |= {f"d_{prefix}_ade_6p4s": d.mean, f"d_{prefix}_ade_6p4s_lo": d.lo, f"d_{prefix}_ade_6p4s_hi": d.hi}
    policy.train()
    return out


def strongest_baseline(final: dict[str, float]) -> str:
    """The metric prefix of the val baseline with the lower ADE@6.4 s."""
    return min(BASELINE_PREFIX, key=lambda p: final[f"{p}_ade_6p4s"])


def val_headline(final: dict[str, float]) -> str:
    """The last validation against the strongest baseline on the same windows, with the paired interval."""
    b = strongest_baseline(final)
    d, lo, hi = final[f"d_{b}_ade_6p4s"], final[f"d_{b}_ade_6p4s_lo"], final[f"d_{b}_ade_6p4s_hi"]
    return (f"val ADE@6.4 s: agent {final['ade_6p4s']:.3f} m {verdict_word(lo, hi, higher_is_better=False)} "
            f"{BASELINE_PREFIX[b]} {final[f'{b}_ade_6p4s']:.3f} m (the strongest baseline; difference {d:+.3f} m, "
            f"95% [{lo:+.3f}, {hi:+.3f}] over {int(final.get('clips', 0))} clips, {int(final['windows'])} windows)")


def _rows(step: int, split: str, values: dict[str, float], wall_s: float) -> list[dict[str, Any]]:
    return [{"step": step, "split": split, "name": k, "value": float(v), "wall_s": wall_s} for k, v in values.items()]


@dataclass
class Setup:
    """A policy ready to train: what it was built from, and its optimizer."""

    tc: TrainConfig
    spec: PolicySpec
    cfg: Any  # SmolVLAConfig
    policy: Any  # SmolVLAPolicy
    trainable: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    params: dict[str, int]
    image_hw: tuple[int, int]
    base_ref: dict[str, str]
    backbone_dir: Path | None
    amp: bool  # bf16 autocast (CUDA with bf16 support)


def prepare(tc: TrainConfig, train_urls: list[str], run_dir: Path) -> Setup:
    """Build the policy for a resolved config (tiny: its backbone under run_dir/backbone; full: the
    pinned base) at the shards' image size, and its AdamW optimizer over what trains."""
    spec = tc.spec()
    first = next(iter(make_loader(train_urls[:1], batch_size=1, shuffle_buffer=1)))
    image_hw = tuple(first["image"].shape[-2:])
    base_dir, backbone_dir = None, None
    if spec.profile == "tiny":
        backbone_dir = build_tiny_backbone(run_dir / "backbone")
        base_ref = {"kind": "tiny", "config_hash": _tiny_hash(backbone_dir)}
        vlm: str | Path = backbone_dir
    else:
        base_dir, base_ref = resolve_base(tc.base, tc.base_revision)
        vlm = tc.vlm
    cfg = policy_config(spec, image_hw=image_hw, vlm=vlm, base_dir=base_dir, device=tc.device)
    policy = build_policy(spec, cfg, base_dir=base_dir)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.95))
    amp = tc.device.startswith("cuda") and torch.cuda.is_bf16_supported()
    return Setup(tc, spec, cfg, policy, trainable, optimizer, param_counts(policy), image_hw, base_ref, backbone_dir, amp)


def train_step(st: Setup, pre: Any, raw: dict[str, Any], *, capture: _VelocityCapture | None = None,
               action_stats: dict[str, torch.Tensor] | None = None,
               d: Dist = SINGLE) -> tuple[float, float, float | None]:
    """One optimisation step on a loader batch -> (loss, gradient norm before clipping, trajectory term);
    under data parallelism the loss and term are the global batch's and the gradients averaged."""
    tc, cfg, policy = st.tc, st.cfg, st.policy
    # image (B,3,H,W) [0,1], state (B,4), action (B,64,2): what the policy learns, normalised
    inputs = pre(to_policy_batch(raw, tc.device, st.spec.action_mode))
    n = len(raw["key"])
    traj = None
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=st.amp):
        if capture is None and not d.active:
            loss, _ = policy.forward(inputs)
        else:
            # noise and times drawn for the global batch, this rank's rows taken: what one process
            # would draw for these samples (trainers.distributed)
            n_all = global_size(n, d)
            noise = rows_of_rank(policy.model.sample_noise((n_all, cfg.chunk_size, cfg.max_action_dim), tc.device), d)
            time_ = rows_of_rank(policy.model.sample_time(n_all, tc.device), d)
            loss, _ = policy.forward(inputs, noise=noise, time=time_)
            if capture is not None:
                assert action_stats is not None
                traj = trajectory_term(capture.v_t, noise, time_, inputs["action"], action_stats, raw["state"].to(
                    tc.device), raw["future"][..., :2].to(tc.device), st.spec.action_mode)
                loss = loss + tc.traj_loss_weight * traj
    if not torch.isfinite(loss):  # stop before the weights are touched: the last checkpoint stays good
        raise FloatingPointError(f"loss is {loss.item()} (lr {st.optimizer.param_groups[0]['lr']:.2e}): lower lr or "
                                 "check the shards' actions and states for non-finite values")
    loss.backward()
    average_gradients(st.trainable, d)
    gnorm = torch.nn.utils.clip_grad_norm_(st.trainable, tc.grad_clip)
    st.optimizer.step()
    st.optimizer.zero_grad(set_to_none=True)
    return (mean_over_ranks(loss.detach().item(), n, d), gnorm.item(),
            None if traj is None else mean_over_ranks(traj.detach().item(), n, d))


def _finished_run(tc: TrainConfig, run_id: str, ckpt_dir: Path, state_dir: Path, log: Log) -> TrainResult | None:
    """A run that already reached its steps, reported without building the policy (or loading a base)."""
    if not ((state_dir / "progress.json").exists() and (ckpt_dir / "checkpoint.json").exists()):
        return None
    meta = C.read_meta(ckpt_dir)
    if meta["step"] < tc.steps:
        return None
    metrics = json.loads((state_dir / "progress.json").read_text())["metrics"]
    log(f"run {run_id} already finished at step {meta['step']}: {ckpt_dir} (restart=True trains it again)")
    return _result(run_id, ckpt_dir, tc, meta["step"], True, metrics, meta["params"], 0.0, 0.0, 0.0)


@dataclass
class _Start:
    """Where the loop begins: a fresh run, or the step an interrupted one saved."""

    step: int
    epoch: int
    skip: int  # batches of `epoch` already consumed
    metrics: list[dict[str, Any]]
    stats: dict[str, Any]  # the normalisation statistics
    ema: EMA | None


def _resume_or_start(st: Setup, run_dir: Path, train_urls: list[str], run_id: str, log: Log) -> _Start:
    tc, policy = st.tc, st.policy
    ckpt_dir, state_dir = C.run_paths(run_dir)
    if not ((state_dir / "progress.json").exists() and (ckpt_dir / "checkpoint.json").exists()):
        states, actions = state_action_samples(train_urls, tc.stats_samples)
        stats = dataset_stats(states, to_model(actions, states, st.spec.action_mode), tc.action_norm)
        return _Start(0, 0, 0, [], stats, EMA(policy, tc.ema_decay) if tc.ema_decay else None)
    meta = C.read_meta(ckpt_dir)
    C.load_weights(policy, ckpt_dir, meta)
    stats = C.load_stats(ckpt_dir)
    ema = EMA(policy, tc.ema_decay) if tc.ema_decay else None  # the checkpoint holds the average
    prog, live = C.load_train_state(state_dir, st.optimizer)
    if live is not None:  # the resume state holds the live weights the run goes on from
        C.load_live(policy, live)
    if prog["step"] != meta["step"]:
        raise RuntimeError(f"{run_dir}: resume state is at step {prog['step']} but the checkpoint at "
                           f"{meta['step']} (interrupted while saving): rerun with restart=True")
    log(f"resuming run {run_id} at step {prog['step']}/{tc.steps}")
    return _Start(prog["step"], prog["epoch"], prog["next_batch"], prog["metrics"], stats, ema)


def _saver(st: Setup, start: _Start, run_dir: Path, run_id: str,
           data_version: str) -> Callable[[int, int, int, dict[str, float]], None]:
    """save(step, next batch, epoch, last validation): a checkpoint generation and the resume state."""
    tc, ema = st.tc, start.ema

    def save(at_step: int, next_batch: int, ep: int, last_val: dict[str, float]) -> None:
        extra = {"step": at_step, "run_id": run_id, "data_version": data_version,
                 "train_config": dataclasses.asdict(tc), "metrics": last_val, "params": st.params}

        def write(ckpt: Path, state: Path) -> None:
            with ema.applied() if ema else nullcontext():
                C.save_checkpoint(ckpt, policy=st.policy, cfg=st.cfg, spec=st.spec, stats=start.stats, base=st.base_ref,
                                  image_hw=st.image_hw, backbone_dir=st.backbone_dir, extra=extra)
            C.save_train_state(state, optimizer=st.optimizer, progress={
                "step": at_step, "epoch": ep, "next_batch": next_batch, "metrics": start.metrics},
                live=dict(ema.params) if ema else None)

        C.save_generation(run_dir, at_step, write)

    return save


def _val_line(step: int, v: dict[str, float]) -> str:
    return (f"val @ {step}: loss {v['val_loss']:.4f}, ADE@6.4s {v['ade_6p4s']:.3f} m (constant velocity "
            f"{v['cv_ade_6p4s']:.3f} m, constant (a, κ) {v['ca_ade_6p4s']:.3f} m) on {int(v['windows'])} windows")


OnBatch = Callable[[int, int, list[str]], None]  # (epoch, batch index in epoch, sample keys) of every batch trained


def _distributed(tc: TrainConfig) -> tuple[TrainConfig, Dist]:
    """The process group torchrun set up (one process without it), and this rank's device."""
    d = from_env(tc.device)
    if d.active and tc.device.startswith("cuda"):
        torch.cuda.set_device(d.local_rank)
        tc = dataclasses.replace(tc, device=f"cuda:{d.local_rank}")
    local_batch(tc.batch_size, d)  # names a global batch the ranks cannot share
    return tc, d


def train(tc: TrainConfig, *, train_urls: list[str], val_urls: list[str], runs_dir: str | Path, data_version: str,
          restart: bool = False, log: Log = print, progress_bar: bool | None = None,
          on_batch: OnBatch | None = None) -> TrainResult:
    """Train (or resume, or report a finished) run of `tc` on these shards under runs_dir/<run_id>.

    Under `torchrun` (WORLD_SIZE > 1) every process calls this: data parallel over the ranks, with
    `tc.batch_size` the global batch (trainers.distributed); rank 0 logs, validates and checkpoints."""
    tc, d = _distributed(tc.resolved())
    log = log if d.main else (lambda _msg: None)
    run_id = tc.run_id(data_version)
    run_dir = Path(runs_dir) / run_id
    ckpt_dir, state_dir = C.run_paths(run_dir)
    with main_first(d):
        if restart and run_dir.exists() and d.main:
            shutil.rmtree(run_dir)
        if d.main and (stale := C.drop_stale_generations(run_dir)):
            log(f"run {run_id}: removed checkpoint generations {stale} that an interrupted save left behind")
    if tc.device == "cpu":
        torch.set_num_threads(tc.threads or 1)
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)
    if done := _finished_run(tc, run_id, ckpt_dir, state_dir, log):
        return done

    with main_first(d):  # rank 0 writes the tiny backbone; the others read it
        st = prepare(tc, train_urls, run_dir)
    broadcast_module(st.policy, d)
    start = _resume_or_start(st, run_dir, train_urls, run_id, log)
    val = load_val(val_urls, tc) if val_urls and d.main else []
    log(f"run {run_id}: {st.spec.profile} profile on {tc.device}"
        f"{f' x {d.world} processes' if d.active else ''}, {st.params['trainable']:,} of {st.params['total']:,} "
        f"parameters train (LoRA {st.params['lora']:,}); image {st.image_hw[1]}x{st.image_hw[0]}; "
        f"{len(train_urls)} train / {len(val_urls)} val shards; data {data_version}")
    save = _saver(st, start, run_dir, run_id, data_version) if d.main else None
    wall, samples = _loop(st, start, train_urls, val, save, d, log, run_id, progress_bar, on_batch)
    barrier(d)
    peak = torch.cuda.max_memory_allocated() / 2**20 if tc.device.startswith("cuda") else _rss_peak_mb()
    return _result(run_id, ckpt_dir, tc, start.step, False, start.metrics, st.params, wall,
                   samples / max(wall, 1e-9), peak)


def _loop(st: Setup, start: _Start, train_urls: list[str], val: list[dict[str, Any]],
          save: Callable[[int, int, int, dict[str, float]], None] | None, d: Dist, log: Log, run_id: str,
          progress_bar: bool | None, on_batch: OnBatch | None) -> tuple[float, int]:
    """The optimisation loop from start.step to tc.steps (metrics appended to start.metrics) ->
    (wall seconds, samples trained, over all ranks)."""
    tc, step, metrics, ema, policy = st.tc, start.step, start.metrics, start.ema, st.policy
    pre, post = processors(st.cfg, start.stats)
    action_stats = {k: v.to(tc.device) for k, v in start.stats["action"].items() if k in ("mean", "std")}
    capture = _VelocityCapture(policy.model.action_out_proj) if tc.traj_loss_weight > 0 else None
    if tc.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    stream = batch_stream(train_urls, tc, epoch=start.epoch, skip=start.skip, d=d)
    from tqdm.auto import tqdm

    bar = tqdm(total=tc.steps, initial=step, desc=run_id, unit="step",
               disable=not d.main or not (sys.stderr.isatty() if progress_bar is None else progress_bar))
    log_every = max(1, tc.steps // 20)
    report = Progress(log, "train", tc.steps, done=step)
    t_start, samples, last_val = time.perf_counter(), 0, {}
    policy.train()
    while step < tc.steps:
        ep, i, raw = next(stream)
        if on_batch:
            on_batch(ep, i, list(raw["key"]))
        lr = lr_at(step, tc)
        for g in st.optimizer.param_groups:
            g["lr"] = lr
        loss_v, gnorm, traj = train_step(st, pre, raw, capture=capture, action_stats=action_stats, d=d)
        if ema:
            ema.update(step)
        step, samples = step + 1, samples + global_size(len(raw["key"]), d)
        bar.update(1)
        report.update()
        wall = time.perf_counter() - t_start
        metrics += _rows(step, "train", {"loss": loss_v, "lr": lr, "grad_norm": gnorm}
                         | ({"traj_ade_m": traj} if traj is not None else {}), wall)
        if step % log_every == 0 or step == tc.steps:
            log(f"step {step}/{tc.steps} loss {loss_v:.4f} lr {lr:.2e} grad {gnorm:.2f} {samples / wall:.1f} samples/s")
        if val and (step % tc.val_every == 0 or step == tc.steps):
            with ema.applied() if ema else nullcontext():
                last_val = validate(policy, pre, post, val, st.cfg, seed=tc.seed, device=tc.device, mode=st.spec.action_mode)
            metrics += _rows(step, "val", last_val, time.perf_counter() - t_start)
            log(_val_line(step, last_val))
        if save and (step % tc.checkpoint_every == 0 or step == tc.steps):
            save(step, i + 1, ep, last_val)
    bar.close()
    if capture is not None:
        capture.handle.remove()
    return time.perf_counter() - t_start, samples


def _tiny_hash(backbone_dir: Path) -> str:
    from trainers.tiny_backbone import TinyBackboneConfig

    return TinyBackboneConfig(**json.loads((backbone_dir / "tiny_backbone.json").read_text())).config_hash()


def _rss_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _result(run_id: str, ckpt: Path, tc: TrainConfig, resumed_from: int, done: bool, metrics: list[dict[str, Any]],
            params: dict[str, int], wall: float, sps: float, peak: float) -> TrainResult:
    last_val = max((m["step"] for m in metrics if m["split"] == "val"), default=-1)
    final = {r["name"]: r["value"] for r in metrics if r["split"] == "val" and r["step"] == last_val}
    return TrainResult(run_id=run_id, profile=tc.profile, checkpoint=ckpt, steps=tc.steps, resumed_from=resumed_from,
                       already_done=done, metrics=metrics, final=final, params=params, train_wall_s=wall,
                       samples_per_s=sps, peak_mem_mb=peak)
