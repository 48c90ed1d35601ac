"""The field agent's checkpoint: safetensors + JSON, no pickles, self-describing.

A checkpoint directory holds:
- `checkpoint.json`: format, base model reference (hub repo + commit, a local path, or the tiny
  backbone's config hash), policy spec (profile, switches, LoRA), image size, action-space
  constants, training config, data version, step and metrics, sha256 of every file.
- `config.json`: LeRobot's SmolVLAConfig as LeRobot writes it (its backbone reference rewritten
  to `backbone` for the tiny profile, whose backbone folder ships inside the checkpoint).
- `weights.safetensors`: every non-LoRA tensor the base cannot reproduce: all of them for tiny
  (its base is a random init), only the trained ones (action expert, projections, heads, any
  unfrozen VLM part) for full, whose base loads from its reference.
- `adapter.safetensors` + `adapter_config.json` (peft) when LoRA is on.
- `stats.safetensors`: the normalisation statistics LeRobot's processors are built from.

The resume state of a run (optimizer moments, RNG, data position) lives beside it in `state/`.
Both are written into a new generation folder `gens/<step>/` and switched to by one atomic
rename of the `current` link (`checkpoint` and `state` are links through it), so a kill at any
moment leaves the old pair or the new pair, never a checkpoint of one step with the state of another.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lake.faults import crash_point
from trainers.policy import PolicySpec, build_policy, lora_config, processors, resolve_base
from transforms.unicycle import UnicycleParams

FORMAT = "field-agent-checkpoint/1"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    # clone: safetensors refuses tensors that share storage (views, tied weights)
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, str(path))


def _swap_in(tmp: Path, final: Path) -> None:
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def run_paths(run_dir: str | Path) -> tuple[Path, Path]:
    """(checkpoint, state) folders of a run: links through `current` to its latest generation."""
    return Path(run_dir) / "checkpoint", Path(run_dir) / "state"


def save_generation(run_dir: str | Path, step: int, write: Callable[[Path, Path], None]) -> None:
    """Write a run's checkpoint and resume state for `step` with `write(checkpoint_dir, state_dir)`
    into a fresh generation, then switch `current` to it in one rename and drop older generations."""
    run_dir = Path(run_dir)
    drop_stale_generations(run_dir)
    gens, current = run_dir / "gens", run_dir / "current"
    gen = gens / f"{step:09d}"
    write(gen / "checkpoint", gen / "state")
    crash_point("checkpoint.before_switch")
    ckpt, state = run_paths(run_dir)
    for link, target in ((ckpt, "current/checkpoint"), (state, "current/state")):
        if link.is_dir() and not link.is_symlink():  # a run saved before generations: its folders go
            shutil.rmtree(link)
        if not link.is_symlink():
            link.symlink_to(target)
    tmp = run_dir / f".current.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(Path("gens") / gen.name)
    os.replace(tmp, current)  # the switch
    crash_point("checkpoint.after_switch")
    for g in gens.glob("*"):
        if g.name != gen.name:
            shutil.rmtree(g)


def drop_stale_generations(run_dir: str | Path) -> list[str]:
    """Remove the generations `current` does not point to: half-written ones a kill left behind, or
    the one a kill kept after the switch. Returns their names."""
    gens, current = Path(run_dir) / "gens", Path(run_dir) / "current"
    live = current.resolve().name if current.is_symlink() else None
    stale = [g for g in (gens.iterdir() if gens.is_dir() else ()) if g.name != live]
    for g in stale:
        shutil.rmtree(g)
    return sorted(g.name for g in stale)


def _flat_stats(stats: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {f"{feat}/{k}": v for feat, d in stats.items() for k, v in d.items()}


def _nested_stats(flat: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, v in flat.items():
        feat, k = key.rsplit("/", 1)
        out.setdefault(feat, {})[k] = v
    return out


def split_state(policy: torch.nn.Module, spec: PolicySpec) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], str]:
    """(weights, adapter, scope) of a policy as the checkpoint stores them."""
    import peft

    adapter = peft.get_peft_model_state_dict(policy) if spec.lora_rank else {}
    sd = policy.state_dict()
    if spec.profile == "tiny":
        scope = "all"
        weights = {k: v for k, v in sd.items() if "lora_" not in k}
    else:
        scope = "trained"
        trained = {n for n, p in policy.named_parameters() if p.requires_grad and "lora_" not in n}
        weights = {k: v for k, v in sd.items() if k in trained}
    return weights, adapter, scope


def save_checkpoint(out: str | Path, *, policy: torch.nn.Module, cfg: Any, spec: PolicySpec,
                    stats: dict[str, dict[str, torch.Tensor]], base: dict[str, str], image_hw: tuple[int, int],
                    backbone_dir: Path | None, extra: dict[str, Any]) -> Path:
    """Write the checkpoint directory `out` (replacing any previous one atomically); returns it.

    `extra` is recorded as is: training config, data version, step, metrics.
    """
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    weights, adapter, scope = split_state(policy, spec)
    _save_tensors(weights, tmp / "weights.safetensors")
    if adapter:
        _save_tensors(adapter, tmp / "adapter.safetensors")
        lora_config(spec.lora_rank, spec.lora_alpha or 2 * spec.lora_rank).save_pretrained(str(tmp))
    _save_tensors(_flat_stats(stats), tmp / "stats.safetensors")
    if spec.profile == "tiny":
        if backbone_dir is None:
            raise ValueError("a tiny checkpoint ships its backbone folder: pass backbone_dir")
        shutil.copytree(backbone_dir, tmp / "backbone", ignore=shutil.ignore_patterns("*.safetensors"))
        cfg = dataclasses.replace(cfg, vlm_model_name="backbone")
    cfg = dataclasses.replace(cfg, device="cpu")  # where to run is the loader's choice
    cfg._save_pretrained(tmp)
    p = UnicycleParams()
    meta = {
        "format": FORMAT, "spec": dataclasses.asdict(spec), "base": base, "image_hw": list(image_hw),
        "weights_scope": scope, "vlm_model_name": "backbone" if spec.profile == "tiny" else cfg.vlm_model_name,
        "action_space": {"dt_s": p.dt_s, "accel_mean": p.accel_mean, "accel_std": p.accel_std,
                         "curvature_mean": p.curvature_mean, "curvature_std": p.curvature_std,
                         "chunk": cfg.chunk_size, "dims": ["accel_norm", "curvature_norm"]},
        "state_features": ["v_mps", "a_mps2", "kappa_1pm", "yaw_rate_radps"],
        "versions": {"lerobot": _version("lerobot"), "torch": torch.__version__, "peft": _version("peft")},
        **extra,
    }
    meta["files"] = {f.relative_to(tmp).as_posix(): _sha256(f) for f in sorted(tmp.rglob("*")) if f.is_file()}
    (tmp / "checkpoint.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
    _swap_in(tmp, out)
    return out


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return ""


@dataclass
class Loaded:
    policy: Any
    cfg: Any
    spec: PolicySpec
    stats: dict[str, dict[str, torch.Tensor]]
    pre: Any
    post: Any
    meta: dict[str, Any]


def read_meta(ckpt: str | Path) -> dict[str, Any]:
    path = Path(ckpt) / "checkpoint.json"
    if not path.exists():
        raise FileNotFoundError(f"{ckpt} is not a field-agent checkpoint (no checkpoint.json)")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, this code reads {FORMAT!r}")
    return meta


def verify_files(ckpt: str | Path, meta: dict[str, Any]) -> None:
    """Every file the checkpoint lists is present with its recorded sha256."""
    for rel, digest in meta["files"].items():
        f = Path(ckpt) / rel
        if not f.exists():
            raise FileNotFoundError(f"checkpoint {ckpt} lacks {rel}: copy the whole folder")
        if _sha256(f) != digest:
            raise ValueError(f"checkpoint file {f} does not match its recorded sha256: the copy is corrupt")


def load_weights(policy: torch.nn.Module, ckpt: str | Path, meta: dict[str, Any]) -> None:
    """Load a checkpoint's weights (and LoRA adapter) into a policy built from its spec and base."""
    import peft

    weights = load_file(str(Path(ckpt) / "weights.safetensors"))
    own = policy.state_dict()
    unknown = sorted(set(weights) - set(own))
    if unknown:
        raise ValueError(f"checkpoint {ckpt} has tensors this policy lacks, e.g. {unknown[:3]}: "
                         f"lerobot {meta['versions']['lerobot']} wrote it, {_version('lerobot')} reads it")
    if meta["weights_scope"] == "all":
        missing = sorted(k for k in own if k not in weights and "lora_" not in k)
        if missing:
            raise ValueError(f"checkpoint {ckpt} lacks tensors, e.g. {missing[:3]}")
    policy.load_state_dict(weights, strict=False)
    if meta["spec"]["lora_rank"]:
        peft.set_peft_model_state_dict(policy, load_file(str(Path(ckpt) / "adapter.safetensors")))


def load_stats(ckpt: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    return _nested_stats(load_file(str(Path(ckpt) / "stats.safetensors")))


def load_checkpoint(ckpt: str | Path, *, device: str = "cpu", verify: bool = True) -> Loaded:
    """Rebuild the policy, its processors and statistics from a checkpoint directory."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig  # registers type "smolvla"

    ckpt = Path(ckpt).resolve()
    meta = read_meta(ckpt)
    if verify:
        verify_files(ckpt, meta)
    spec = PolicySpec(**meta["spec"])
    vlm = str(ckpt / "backbone") if spec.profile == "tiny" else meta["vlm_model_name"]
    cfg = PreTrainedConfig.from_pretrained(ckpt)
    if not isinstance(cfg, SmolVLAConfig):
        raise ValueError(f"{ckpt}/config.json is a {type(cfg).__name__}; a field-agent checkpoint holds a SmolVLAConfig")
    cfg = dataclasses.replace(cfg, vlm_model_name=vlm, device=device)
    base_dir = None
    if spec.profile == "full":
        b = meta["base"]
        base_dir, _ = resolve_base(b["path"] if b["kind"] == "local" else b["repo_id"], b.get("revision", ""))
    policy = build_policy(spec, cfg, base_dir=base_dir)
    load_weights(policy, ckpt, meta)
    stats = load_stats(ckpt)
    pre, post = processors(cfg, stats)
    policy.to(device).eval()
    return Loaded(policy, cfg, spec, stats, pre, post, meta)


# --- resume state -----------------------------------------------------------------------------

def save_train_state(out: str | Path, *, optimizer: torch.optim.Optimizer, progress: dict[str, Any],
                     live: dict[str, torch.Tensor] | None = None) -> None:
    """Optimizer moments, RNG states, the loop's position (step, epoch, batch) and, when the
    checkpoint holds averaged weights, the live trainable ones: all a resumed run needs."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    sd = optimizer.state_dict()
    _save_tensors({f"{i}/{k}": v for i, st in sd["state"].items() for k, v in st.items()},
                  tmp / "optimizer.safetensors")
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng |= {f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    _save_tensors(rng, tmp / "rng.safetensors")
    if live is not None:
        _save_tensors(live, tmp / "live.safetensors")
    (tmp / "progress.json").write_text(json.dumps({**progress, "param_groups": sd["param_groups"]}, indent=1))
    _swap_in(tmp, out)


def load_train_state(state_dir: str | Path, optimizer: torch.optim.Optimizer
                     ) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Restore optimizer and RNG; returns the saved progress (step, epoch, ...) and live weights if saved."""
    state_dir = Path(state_dir)
    progress = json.loads((state_dir / "progress.json").read_text())
    nested: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in load_file(str(state_dir / "optimizer.safetensors")).items():
        i, k = key.split("/", 1)
        nested.setdefault(int(i), {})[k] = v
    optimizer.load_state_dict({"state": nested, "param_groups": progress.pop("param_groups")})
    rng = load_file(str(state_dir / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and "cuda0" in rng:
        torch.cuda.set_rng_state_all([rng[f"cuda{i}"] for i in range(torch.cuda.device_count())])
    live = state_dir / "live.safetensors"
    return progress, (load_file(str(live)) if live.exists() else None)


def load_live(policy: torch.nn.Module, live: dict[str, torch.Tensor]) -> None:
    """Put saved live trainable weights back (by parameter name)."""
    params = dict(policy.named_parameters())
    missing = sorted(set(live) - set(params))
    if missing:
        raise ValueError(f"resume state has weights this policy lacks, e.g. {missing[:3]}: restart the run")
    with torch.no_grad():
        for n, v in live.items():
            params[n].copy_(v)
