"""The `alpamayo` labeler: NVIDIA Alpamayo-R1 writes a Chain-of-Causation (CoC) per window, which
is distilled into a `Trace` and a Commander command.

The inference path follows NVlabs/alpamayo (docs/references.md, *Alpamayo-R1*): the model,
its processor, the chat message with 4 cameras x 4 frames and the ego history, sampling with
top_p 0.98 / temperature 0.6, and `extra["cot"]` / `extra["meta_action"]`. It needs the optional
`alpamayo_r1` package, the 10B weights (gated, ~22 GB) and a CUDA GPU with >= 24 GB; where one is
missing it fails with a message saying what to do. The distillation is plain text processing and
runs anywhere (tests/labelers/test_alpamayo.py).
"""

from __future__ import annotations

import re
from typing import Any

from labelers.base import Labeler, LabelerUnavailable, LabelFailure, WindowContext
from labelers.trace import Hazard, Trace

MODEL_ID = "nvidia/Alpamayo-R1-10B"
VERSION = "r1-10b.1"

# (meta-action, pattern) in priority order: the first that matches the decision clause wins
_DIR = r"(?P<dir>left|right)"
_DIR2 = r"(?P<dir2>left|right)"  # a second alternative in one pattern (group names must be unique)
_RULES: tuple[tuple[str, str], ...] = (
    ("overtake_{dir}", rf"\b(overtak\w*|pass(?:ing)?|go(?:ing)? around|get(?:ting)? past)\b[^.;]*?\bon the {_DIR}\b"),
    ("overtake_{dir}", rf"\b(?:change|move|merge|shift)\w*\b[^.;]*?\b{_DIR}\b[^.;]*?\b(overtak\w*|pass)\b"),
    ("overtake_left", r"\bovertak\w*\b"),
    ("change_lane_{dir}", r"\b(?:change|changing|switch\w*|move|moving|merge|merging|shift\w*)\b"
                          rf"[^.;]*?\b(?:to|into|over to) the {_DIR}(?: adjacent)? lane\b"),
    ("change_lane_{dir}", rf"\b{_DIR} lane change\b|\blane change to the {_DIR2}\b|\bmerge (?P<dir3>left|right)\b"),
    ("yield", r"\b(yield\w*|give way|giving way|let (?:the |them |it )?\w* (?:pass|cross|go first))\b"),
    ("go", r"\b(proceed\w*|resum\w* (?:driving|motion)|start\w* (?:moving|to move)|pull\w* away|move off|go ahead)\b"),
    ("stop", r"\b(stop(?:s|ping)?|come to a (?:complete )?(?:stop|halt)|remain\w* stopped|halt\w*|stay stopped)\b"),
    ("turn_{dir}", rf"\b(?:turn\w*|steer\w*|bear\w*|veer\w*|bends?|curves?)\b[^.;]*?\b(?:to the )?{_DIR}\b"
                   rf"|\b{_DIR2}(?:-hand)? (?:turn|curve|bend)\b"),
    ("follow_lead", r"\b(follow\w* (?:the )?(?:lead|leading|preceding|vehicle|car|truck)"
                    r"|keep\w* (?:a )?(?:safe )?(?:following )?distance|stay\w* behind)\b"),
    ("slow_down", r"\b(decelerat\w*|slow\w* down|reduc\w* (?:its |the )?speed|brak\w*|eas\w* off)\b"),
    ("speed_up", r"\b(accelerat\w*|speed\w* up|increas\w* (?:its |the )?speed|pick\w* up speed)\b"),
    ("keep_lane", r"\b(keep\w* (?:its |the |in )?(?:current )?lane|stay\w* in (?:its |the )?(?:current )?lane"
                  r"|maintain\w* (?:its |a |the )?(?:current |steady |constant )?(?:speed|lane|course)"
                  r"|continu\w* (?:straight|ahead|in the lane))\b"),
)
_REASON_SPLIT = re.compile(r"\b(?:because|since|due to|as|given that|so that)\b", re.I)
_HAZARDS: tuple[tuple[str, str], ...] = (
    ("truck", r"\b(truck|lorry|semi|trailer)s?\b"),
    ("bus", r"\bbus(?:es)?\b"),
    ("van", r"\bvans?\b"),
    ("motorcycle", r"\bmotorcycl\w*|motorbike\w*\b"),
    ("cyclist", r"\b(cyclists?|bicycl\w*|bikes?)\b"),
    ("pedestrian", r"\b(pedestrians?|person|people|walkers?)\b"),
    ("stop_line", r"\bstop (?:line|sign)\b"),
    ("traffic_light", r"\b(traffic (?:light|signal)s?|red light|green light)\b"),
    ("construction", r"\b(construction|cones?|work zone|barriers?)\b"),
    ("curve", r"\b(curves?|bends?)\b"),
    ("oncoming_traffic", r"\boncoming\b"),
    ("car", r"\b(cars?|vehicles?|sedans?|suvs?)\b"),
)
_SUBJECT_WORDS = {"truck": "truck", "bus": "bus", "van": "van", "motorcycle": "motorcycle", "cyclist": "cyclist",
                  "pedestrian": "pedestrian", "car": "car", "stop_line": "line", "traffic_light": "light"}


def _meta_from_text(text: str) -> str | None:
    low = text.lower()
    for action, pattern in _RULES:
        m = re.search(pattern, low)
        if m:
            g = m.groupdict()
            return action.format(dir=g.get("dir") or g.get("dir2") or g.get("dir3") or "left")
    return None


def _is_ego(low: str, start: int) -> bool:
    """'the ego vehicle' is the driver, not a hazard."""
    return low[max(0, start - 4): start].strip().endswith("ego")


def _where(text: str, start: int) -> str:
    window = text[start: start + 60].lower()
    for w in ("on the left", "on the right", "to the left", "to the right", "behind", "oncoming"):
        if w in window:
            return w.split()[-1] if w != "oncoming" else "oncoming"
    return "ahead"


def distill_coc(cot: str, meta_action_text: str = "", *, labeler: str = "alpamayo",
                version: str = VERSION) -> Trace | LabelFailure:
    """A Chain-of-Causation (and Alpamayo's own meta-action text, if any) -> a structured Trace."""
    text = " ".join(cot.split())
    if not text:
        return LabelFailure("empty chain-of-causation")
    parts = _REASON_SPLIT.split(text, maxsplit=1)
    decision, reason = parts[0], (parts[1].strip(" ,.") if len(parts) > 1 else "")
    from_coc = _meta_from_text(decision) or _meta_from_text(text)
    from_meta = _meta_from_text(meta_action_text) if meta_action_text else None
    action = from_meta or from_coc
    if action is None:
        return LabelFailure(f"no meta-action recognised in: {text[:120]!r}")
    hazards = []
    low = text.lower()
    for kind, pattern in _HAZARDS:
        for m in re.finditer(pattern, low):
            if not _is_ego(low, m.start()):
                hazards.append(Hazard(kind, _where(text, m.end())))
                break
    subject = ""
    dec_low = decision.lower()
    for kind, pattern in _HAZARDS:
        m = next((m for m in re.finditer(pattern, dec_low) if not _is_ego(dec_low, m.start())), None)
        if m and kind in _SUBJECT_WORDS:
            subject = _SUBJECT_WORDS[kind]
            break
    if not subject:  # the decision names none: the first concrete hazard of the whole CoC
        subject = next((_SUBJECT_WORDS[h.kind] for h in hazards if h.kind in _SUBJECT_WORDS), "")
    confidence = 0.8 if from_meta and from_coc == from_meta else (0.6 if from_coc else 0.5)
    return Trace(scene=decision.strip(" ."), meta_action=action, reason=reason or decision.strip(" ."), labeler=labeler,
                 labeler_version=version, confidence=confidence, hazards=tuple(hazards), subject=subject,
                 prediction="", extra={"cot": text[:2000], "meta_action_text": meta_action_text[:200]})


class AlpamayoLabeler(Labeler):
    """Alpamayo-R1 inference over PAI windows on one GPU (batch 1 as upstream; >1 batches equal-length prompts)."""

    name = "alpamayo"
    version = VERSION
    # upstream's loader reads these beside the front-wide camera (load_physical_aiavdataset.py)
    features = ("camera_cross_left_120fov", "camera_cross_right_120fov", "camera_front_tele_30fov")

    def __init__(self, dataset: Any, *, model_id: str = MODEL_ID, device: str = "cuda", batch_size: int = 1,
                 top_p: float = 0.98, temperature: float = 0.6, max_generation_length: int = 256) -> None:
        self.dataset = dataset  # a physical_ai_av interface over the chunk's files (LocalPAIDataset or the hub's)
        self.model_id, self.device, self.batch_size = model_id, device, batch_size
        self.top_p, self.temperature, self.max_generation_length = top_p, temperature, max_generation_length
        self._model: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        try:
            import torch
            from alpamayo_r1 import helper
            from alpamayo_r1.load_physical_aiavdataset import load_physical_aiavdataset
            from alpamayo_r1.models.alpamayo_r1 import AlpamayoR1
        except ImportError as exc:
            raise LabelerUnavailable(
                "the alpamayo labeler needs NVlabs' alpamayo_r1 package (torch 2.8, transformers 4.57), which cannot "
                "sit beside the pipeline's transformers 5: it runs in its own environment, built with `make "
                f"labeler-env NAME=alpamayo` (labelers/envs/alpamayo.txt) on a GPU node; or use labeler=kinematic ({exc})"
            ) from exc
        if not torch.cuda.is_available():
            raise LabelerUnavailable("the alpamayo labeler needs a CUDA GPU with >= 24 GB (RTX 3090, A100, H100); "
                                     "none is visible here: run it on a GPU node or use labeler=kinematic")
        try:
            model = AlpamayoR1.from_pretrained(self.model_id, dtype=torch.bfloat16).to(self.device)
        except OSError as exc:
            raise LabelerUnavailable(
                f"weights {self.model_id} not available: accept their license on the Hugging Face page, then "
                f"`hf download {self.model_id}` (~22 GB) with HF_TOKEN set, or point HF_HOME at a cache that holds "
                f"them ({exc})") from exc
        self._torch, self._helper, self._load_window = torch, helper, load_physical_aiavdataset
        self._processor = helper.get_processor(model.tokenizer)
        self._model = model

    def label(self, windows: list[WindowContext]) -> list[Trace | LabelFailure]:
        """One result per window. A window upstream's loader rejects (t0 <= 1.6 s, frame times outside
        a video, a missing camera) becomes a LabelFailure with that reason; the others go on. Prompts
        are tokenized one by one and batched only with prompts of the same length: upstream runs batch
        1 and its expert's attention does not mask padding, so a padded batch would plan wrongly."""
        self._load()
        torch, helper = self._torch, self._helper
        out: list[Trace | LabelFailure | None] = [None] * len(windows)
        prompts: dict[int, tuple[dict[str, Any], Any]] = {}
        for i, w in enumerate(windows):
            try:
                data = self._load_window(w.clip_id, t0_us=w.t0_us, avdi=self.dataset)
            except (AssertionError, ValueError, KeyError, IndexError, FileNotFoundError, RuntimeError) as exc:
                out[i] = LabelFailure(f"alpamayo's loader rejected t0={w.t0_us / 1e6:.1f} s: "
                                      f"{type(exc).__name__}: {str(exc)[:200]}")
                continue
            tokens = self._processor.apply_chat_template(
                [helper.create_message(data["image_frames"].flatten(0, 1))], tokenize=True,
                add_generation_prompt=False, continue_final_message=True, return_dict=True, return_tensors="pt")
            prompts[i] = (data, tokens)
        order = list(prompts)
        for group in equal_length_batches([prompts[i][1]["input_ids"].shape[-1] for i in order], self.batch_size):
            batch = [order[g] for g in group]
            tokens = {k: torch.cat([prompts[i][1][k] for i in batch]) for k in prompts[batch[0]][1]}
            model_inputs = helper.to_device({
                "tokenized_data": tokens,
                "ego_history_xyz": torch.cat([prompts[i][0]["ego_history_xyz"] for i in batch]),
                "ego_history_rot": torch.cat([prompts[i][0]["ego_history_rot"] for i in batch]),
            }, self.device)
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                _, _, extra = self._model.sample_trajectories_from_data_with_vlm_rollout(
                    data=model_inputs, top_p=self.top_p, temperature=self.temperature, num_traj_samples=1,
                    max_generation_length=self.max_generation_length, return_extra=True)
            for b, i in enumerate(batch):
                # the released model leaves extra["meta_action"] empty: the CoC alone then decides
                meta = extra.get("meta_action") if isinstance(extra, dict) else None
                out[i] = distill_coc(str(extra["cot"][b, 0, 0]), str(meta[b, 0, 0]) if meta is not None else "",
                                     labeler=self.name, version=self.version)
        return [r if r is not None else LabelFailure("not labeled") for r in out]


def equal_length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Positions grouped into batches of at most `batch_size` whose prompts have the same length,
    in order of first appearance (no padding is ever needed)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    by_length: dict[int, list[int]] = {}
    for pos, n in enumerate(lengths):
        by_length.setdefault(n, []).append(pos)
    return [group[k: k + batch_size] for group in by_length.values() for k in range(0, len(group), batch_size)]
