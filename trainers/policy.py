"""LeRobot's SmolVLA configured as the field agent: one front image, ego state, command, (a, κ) x 64.

The policy, its config and its processors are LeRobot's own (lerobot 0.6.1, pinned); this module
only chooses their settings and wires LoRA. Profiles:
- `tiny`: a random-init SmolVLM-style backbone built offline (trainers.tiny_backbone), CPU, minutes.
- `full`: fine-tunes a SmolVLA checkpoint (`lerobot/smolvla_base` from the hub at a pinned
  revision, or a local snapshot directory) on a GPU in bf16. Its config (layers, image size,
  padded 32-dim state/action) is the base's, so the base's expert weights load unchanged; only
  the first 2 action dims and 4 state dims carry data (LeRobot drops padded dims from the loss).

Switches (both map onto SmolVLAConfig fields, no LeRobot code is changed):
- `freeze_backbone`: freeze the VLM's vision encoder (`freeze_vision_encoder`).
- `train_expert_only`: freeze the whole VLM; the action expert and the state/action/time
  projections train (`train_expert_only`).
- `lora_rank` R > 0: peft LoRA on the VLM text model's q/v projections; the VLM's own weights
  freeze, the adapters, the expert and the projections train.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from trainers.actions import ActionMode, to_model

CAMERA_KEY = "observation.images.front_wide"
STATE_KEY = "observation.state"
STATE_DIM = 4  # v, a, κ, yaw rate at t0
ACTION_DIM = 2  # (a, κ), normalised with Alpamayo's constants at export
CHUNK = 64

ProfileName = Literal["tiny", "full"]
log = logging.getLogger(__name__)


# the VLM text model's attention projections (not the vision encoder's, not the action expert's)
LORA_TARGETS = r".*\.vlm\.model\.text_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"
# What a base checkpoint may lack without harm: the VLM's text head is tied to its token embeddings
# (a tied tensor is stored once) and SmolVLA never decodes text with it.
HARMLESS_MISSING = re.compile(r".*\.lm_head\.weight$")
# What older lerobot releases stored and today's SmolVLA has no module for: normalisation buffers
# (normalisation now lives in the processors, built from the checkpoint's statistics).
STALE_KEYS = re.compile(r"^(normalize_inputs|normalize_targets|unnormalize_outputs)\.")


@dataclass(frozen=True)
class PolicySpec:
    """How to build the policy; stored in every checkpoint."""

    profile: ProfileName = "tiny"
    freeze_backbone: bool = False
    train_expert_only: bool = False
    lora_rank: int = 0
    lora_alpha: int = 0  # 0: 2 x rank
    flow_steps: int = 10  # denoising steps at inference (SmolVLA's num_steps)
    action_mode: ActionMode = "residual"  # what the policy outputs: (a, κ), or their change from t0 (trainers.actions)

    def __post_init__(self) -> None:
        if self.profile not in ("tiny", "full"):
            raise ValueError(f"profile={self.profile!r}: choose tiny (CPU, offline) or full (GPU, smolvla_base)")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank={self.lora_rank}: use 0 (no LoRA) or a positive rank such as 8 or 16")
        if self.lora_rank and self.train_expert_only:
            raise ValueError(f"lora_rank={self.lora_rank} with train_expert_only: LoRA adapts the VLM, which "
                             "train_expert_only freezes; drop one of the two switches")
        if self.flow_steps < 1:
            raise ValueError(f"flow_steps={self.flow_steps}: need >= 1")
        if self.action_mode not in ("absolute", "residual"):
            raise ValueError(f"action_mode={self.action_mode!r}: choose residual or absolute")

    @classmethod
    def for_profile(cls, profile: ProfileName, *, freeze_backbone: bool | None = None,
                    train_expert_only: bool | None = None, **kw: Any) -> PolicySpec:
        """Unset switches take the profile's default: tiny trains everything (its backbone is random);
        full keeps SmolVLA's fine-tuning recipe (vision frozen, expert only), or VLM LoRA when a rank is set."""
        full = profile == "full"
        if freeze_backbone is None:
            freeze_backbone = full
        if train_expert_only is None:
            train_expert_only = full and not kw.get("lora_rank", 0)
        return cls(profile=profile, freeze_backbone=freeze_backbone, train_expert_only=train_expert_only, **kw)


def resolve_base(ref: str, revision: str = "") -> tuple[Path, dict[str, str]]:
    """A SmolVLA checkpoint directory (config.json + model.safetensors) and its reference.

    `ref` is a local directory or a hub repo id; a hub download is pinned to `revision` (a commit
    sha; empty means the branch head, whose resolved commit is recorded). Offline, a prepared HF
    cache serves it with HF_HUB_OFFLINE=1.
    """
    if Path(ref).is_dir():
        d = Path(ref).resolve()
        if not (d / "config.json").exists() or not (d / "model.safetensors").exists():
            raise FileNotFoundError(f"base {d} lacks config.json or model.safetensors: point it at a SmolVLA "
                                    "checkpoint directory (e.g. a snapshot of lerobot/smolvla_base)")
        return d, {"kind": "local", "path": str(d)}
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        # file by file, as LeRobot fetches a policy: each resolves through the cache (and its refs)
        # with HF_HUB_OFFLINE=1, and downloads at the pinned revision when the hub is reachable
        d = Path(hf_hub_download(ref, "config.json", revision=revision or None)).parent
        hf_hub_download(ref, "model.safetensors", revision=revision or None)
    except LocalEntryNotFoundError as exc:
        raise RuntimeError(f"base policy {ref!r}@{revision or 'main'} is not in the HF cache and the hub is not "
                           "reachable: download it on a connected machine (hf download "
                           f"{ref}) or pass a local snapshot directory, or use the tiny profile") from exc
    return d, {"kind": "hub", "repo_id": ref, "revision": d.name}  # snapshot folders are named by commit


def _features(image_hw: tuple[int, int]) -> dict[str, Any]:
    from lerobot.configs.types import FeatureType, PolicyFeature

    h, w = image_hw
    return {"input_features": {CAMERA_KEY: PolicyFeature(FeatureType.VISUAL, (3, h, w)),
                               STATE_KEY: PolicyFeature(FeatureType.STATE, (STATE_DIM,))},
            "output_features": {"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))}}


def policy_config(spec: PolicySpec, *, image_hw: tuple[int, int], vlm: str | Path,
                  base_dir: Path | None = None, device: str = "cpu") -> Any:
    """The SmolVLAConfig for (a, κ).

    tiny: `vlm` is the tiny backbone directory; max_action_dim = 2 so no padded action dims exist.
    full: the base checkpoint's config with our features, chunk 64 and switches; `vlm` overrides
    its backbone reference only when not empty.
    """
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    common = {**_features(image_hw), "chunk_size": CHUNK, "n_action_steps": CHUNK, "device": device,
              "freeze_vision_encoder": spec.freeze_backbone, "train_expert_only": spec.train_expert_only,
              "num_steps": spec.flow_steps}
    if spec.profile == "tiny":
        return SmolVLAConfig(**common, max_state_dim=STATE_DIM, max_action_dim=ACTION_DIM,
                             resize_imgs_with_padding=(128, 128), num_vlm_layers=4, vlm_model_name=str(vlm),
                             load_vlm_weights=False, tokenizer_max_length=24)
    if base_dir is None:
        raise ValueError("the full profile needs base_dir: resolve it with trainers.policy.resolve_base")
    base = PreTrainedConfig.from_pretrained(base_dir)
    if not isinstance(base, SmolVLAConfig):
        raise ValueError(f"base {base_dir} is a {type(base).__name__}, not a SmolVLA checkpoint")
    # the base's own weights are loaded after construction: don't fetch the VLM's a second time
    return dataclasses.replace(base, **common, load_vlm_weights=False,
                               **({"vlm_model_name": str(vlm)} if vlm else {}))


def build_policy(spec: PolicySpec, cfg: Any, *, base_dir: Path | None = None) -> Any:
    """SmolVLAPolicy for `cfg`: random init (tiny) or the base's weights (full), then LoRA if asked."""
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    policy = SmolVLAPolicy(cfg)
    if spec.profile == "full":
        if base_dir is None:
            raise ValueError("the full profile needs base_dir: resolve it with trainers.policy.resolve_base")
        report = load_base(policy, base_dir)
        log.info("base %s: %s", base_dir, report.summary())
    if spec.lora_rank:
        apply_lora(policy, spec.lora_rank, spec.lora_alpha or 2 * spec.lora_rank)
    policy.to(cfg.device)
    return policy


@dataclass(frozen=True)
class OptimizerPreset:
    """AdamW and its schedule (linear warmup, cosine down to lr * min_lr_ratio at the last step)."""

    lr: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    min_lr_ratio: float


# A random init learns fast and from scratch: measured on the twin (docs/training.md, *What makes the agent learn*).
TINY_PRESET = OptimizerPreset(lr=1e-3, warmup_steps=60, weight_decay=1e-4, grad_clip=1.0, min_lr_ratio=0.05)


def optimizer_preset(profile: ProfileName) -> OptimizerPreset:
    """The profile's optimiser: tiny's own, or for a pretrained base SmolVLA's as LeRobot declares it
    (read from SmolVLAConfig's defaults, so a lerobot upgrade that retunes it is followed)."""
    if profile == "tiny":
        return TINY_PRESET
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    d = {f.name: f.default for f in dataclasses.fields(SmolVLAConfig)}
    return OptimizerPreset(lr=d["optimizer_lr"], warmup_steps=d["scheduler_warmup_steps"],
                           weight_decay=d["optimizer_weight_decay"], grad_clip=d["optimizer_grad_clip_norm"],
                           min_lr_ratio=d["scheduler_decay_lr"] / d["optimizer_lr"])


@dataclass(frozen=True)
class LoadReport:
    """What loading a base left out: keys the policy has and the file lacks, and the reverse."""

    loaded: int
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]

    def summary(self) -> str:
        def some(keys: tuple[str, ...]) -> str:
            return f"{len(keys)}" + (f" (e.g. {list(keys[:3])})" if keys else "")

        return f"{self.loaded} tensors loaded; missing {some(self.missing)}; unexpected {some(self.unexpected)}"


def load_base(policy: torch.nn.Module, base_dir: Path) -> LoadReport:
    """Load a base checkpoint's weights as LeRobot does (not strict: lerobot/smolvla_base was saved by
    an older lerobot and transformers), reporting what did not match; fail only when weights that
    matter are absent, since the policy would then train from a random init without saying so."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    path = Path(base_dir) / "model.safetensors"
    missing, unexpected = load_model(policy, str(path), strict=False)
    matter = sorted(k for k in missing if not HARMLESS_MISSING.match(k))
    if matter:
        raise ValueError(f"base {base_dir} lacks {len(matter)} of the policy's weights, e.g. {matter[:3]}"
                         f"{f'; it holds unexpected keys such as {sorted(unexpected)[:3]}' if unexpected else ''}: "
                         "it is not a SmolVLA checkpoint this lerobot can read (its key layout differs); check "
                         "the base and the lerobot version")
    with safe_open(str(path), "pt") as f:
        stored = len(list(f.keys()))
    unknown = sorted(k for k in unexpected if not STALE_KEYS.match(k))
    if unknown:
        log.warning("base %s holds %d keys this SmolVLA does not use, e.g. %s", base_dir, len(unknown), unknown[:3])
    return LoadReport(stored - len(unexpected), tuple(sorted(missing)), tuple(sorted(unexpected)))


def lora_config(rank: int, alpha: int) -> Any:
    import peft

    return peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=LORA_TARGETS)


def apply_lora(policy: torch.nn.Module, rank: int, alpha: int) -> None:
    """peft LoRA in place on the VLM text attention; everything that trained before still trains.

    `inject_adapter_in_model` freezes every non-adapter parameter; the expert and the projections
    are put back, the VLM (now adapted through LoRA) stays frozen.
    """
    import peft

    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    peft.inject_adapter_in_model(lora_config(rank, alpha), policy)
    n_adapted = sum(1 for n, _ in policy.named_modules() if re.fullmatch(LORA_TARGETS, n))
    if not n_adapted:
        raise RuntimeError(f"LoRA target pattern {LORA_TARGETS!r} matched no module: SmolVLA's module names changed")
    for n, p in policy.named_parameters():
        p.requires_grad = "lora_" in n or (n in trainable and ".vlm." not in n)


def param_counts(policy: torch.nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in policy.parameters())
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    lora = sum(p.numel() for n, p in policy.named_parameters() if "lora_" in n)
    return {"total": total, "trainable": trainable, "lora": lora}


ActionNorm = Literal["mean_std", "zero_mean"]


def dataset_stats(states: torch.Tensor, actions: torch.Tensor, action_norm: ActionNorm = "mean_std"
                  ) -> dict[str, dict[str, torch.Tensor]]:
    """Normalisation statistics in LeRobot's format from samples of state (N, 4) and actions (N, 64, 2).

    Images are already in [0, 1] (identity statistics); actions were normalised at export with
    Alpamayo's constants, so their statistics here are close to (0, 1) but measured, not assumed.
    `zero_mean` keeps a zero action at zero (the scale is the root mean square): with residual
    actions, "keep the controls of t0" is then exactly the noise mean a deterministic plan starts
    from, instead of LeRobot's −mean/std.
    """
    if action_norm not in ("mean_std", "zero_mean"):
        raise ValueError(f"action_norm={action_norm!r}: choose mean_std or zero_mean")
    a = actions.reshape(-1, ACTION_DIM)

    def stats(x: torch.Tensor, centred: bool = True) -> dict[str, torch.Tensor]:
        mean = x.mean(0) if centred else torch.zeros(x.shape[1:])
        std = (x - mean).pow(2).mean(0).sqrt() if not centred else x.std(0)
        return {"mean": mean, "std": std.clamp_min(1e-6), "min": x.min(0).values, "max": x.max(0).values}

    one = torch.ones(3, 1, 1)
    return {CAMERA_KEY: {"mean": 0 * one, "std": one, "min": 0 * one, "max": one}, STATE_KEY: stats(states),
            "action": stats(a, centred=action_norm == "mean_std")}


def processors(cfg: Any, stats: dict[str, dict[str, torch.Tensor]]) -> tuple[Any, Any]:
    """LeRobot's SmolVLA pre/post-processors (normalisation, tokenizer, device) for these statistics."""
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

    return make_smolvla_pre_post_processors(cfg, dataset_stats=stats)


def to_policy_batch(batch: dict[str, Any], device: str = "cpu", action_mode: ActionMode = "absolute") -> dict[str, Any]:
    """A loader batch (trainers.data) in the keys SmolVLA's preprocessor expects, actions as the policy learns them."""
    from trainers.data import images_to_float

    out = {CAMERA_KEY: images_to_float(batch["image"].to(device)), STATE_KEY: batch["state"].to(device),
           "task": list(batch["command"])}
    if "actions" in batch:
        out["action"] = to_model(batch["actions"], batch["state"], action_mode).to(device)
    return out
