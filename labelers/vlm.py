"""The `vlm` labeler: any local image-text-to-text model (transformers) asked for a trace as JSON.

The model sees the front camera at t0 and a prompt naming the trace fields and the meta-action
vocabulary. Its answer must hold a JSON object that passes the trace schema; otherwise it is
asked again (a new sample), and after `retries` more failures the window is flagged, never
stored as a label. Who labeled it is set here, not taken from the model.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from core.vocab import HAZARD_KINDS, META_ACTIONS
from labelers.base import Labeler, LabelerUnavailable, LabelFailure, WindowContext
from labelers.trace import Trace, TraceError

PROMPT_VERSION = "1"
PROMPT = (
    "You label driving scenes for a driving policy. Look at the front camera image. Answer with one JSON object "
    "and nothing else, with keys: scene (string), hazards (list of {{kind, where}}), prediction (string), "
    f"meta_action (one of: {', '.join(META_ACTIONS)}), subject (string), reason (string), confidence (0..1). "
    f"Hazard kinds: {', '.join(HAZARD_KINDS)}. The ego drives at {{speed:.0f}} km/h."
)
_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


def parse_trace(text: str, *, labeler: str, version: str) -> Trace:
    """The first JSON object in a model's answer, validated as a trace (TraceError if it is not one)."""
    m = _JSON_OBJECT.search(text)
    if not m:
        raise TraceError(f"no JSON object in the answer: {text[:80]!r}")
    try:
        d = json.loads(m.group(0))
    except json.JSONDecodeError as exc:
        raise TraceError(f"answer is not valid JSON: {exc}") from exc
    if not isinstance(d, dict):
        raise TraceError("answer is not a JSON object")
    d.setdefault("confidence", 0.5)
    return Trace.from_dict({**d, "labeler": labeler, "labeler_version": version})


class VLMLabeler(Labeler):
    name = "vlm"

    def __init__(self, model_dir: str | Path, *, max_new_tokens: int = 192, retries: int = 2, seed: int = 0,
                 batch_size: int = 8, device: str = "cpu") -> None:
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise LabelerUnavailable(f"{self.model_dir} holds no model (config.json): point vlm_model_dir at a local "
                                     "image-text-to-text model folder (e.g. a SmolVLM snapshot)")
        cfg_hash = hashlib.sha256((self.model_dir / "config.json").read_bytes()).hexdigest()[:8]
        # a different model or prompt is a different labeler version: its rows never replace these
        self.version = f"{self.model_dir.name}-{cfg_hash}-p{PROMPT_VERSION}"
        self.max_new_tokens, self.retries, self.seed = max_new_tokens, retries, seed
        self.batch_size, self.device = batch_size, device
        self._model: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            self._processor = AutoProcessor.from_pretrained(self.model_dir, local_files_only=True)
            self._model = AutoModelForImageTextToText.from_pretrained(self.model_dir, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise LabelerUnavailable(f"cannot load an image-text-to-text model from {self.model_dir}: {exc}") from exc
        self._model.to(self.device).eval()

    def _generate(self, windows: list[WindowContext], attempt: int) -> list[str]:
        import torch

        prompts, images = [], []
        for w in windows:
            msgs = [{"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": PROMPT.format(speed=w.v0_mps * 3.6)}]}]
            prompts.append(self._processor.apply_chat_template(msgs, add_generation_prompt=True))
            images.append([w.image])
        inputs = self._processor(text=prompts, images=images, return_tensors="pt", padding=True).to(self.device)
        torch.manual_seed(self.seed * 1000 + attempt)  # each retry is a new, reproducible sample
        with torch.no_grad():
            out = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=attempt > 0,
                                       top_p=0.9, temperature=0.7)
        return self._processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    def label(self, windows: list[WindowContext]) -> list[Trace | LabelFailure]:
        missing = [w.key for w in windows if w.image is None]
        if missing:
            raise ValueError(f"the vlm labeler needs the front image of every window; none for {missing[:3]}")
        self._load()
        results: list[Trace | LabelFailure | None] = [None] * len(windows)
        errors: dict[int, str] = {}
        todo = list(range(len(windows)))
        for attempt in range(self.retries + 1):
            still = []
            for i in range(0, len(todo), self.batch_size):
                idx = todo[i: i + self.batch_size]
                for j, text in zip(idx, self._generate([windows[k] for k in idx], attempt), strict=True):
                    try:
                        results[j] = parse_trace(text, labeler=self.name, version=self.version)
                    except TraceError as exc:
                        errors[j] = str(exc)
                        still.append(j)
            todo = still
            if not todo:
                break
        for j in todo:
            results[j] = LabelFailure(f"unparseable VLM answer after {self.retries + 1} tries: {errors[j]}")
        return results  # type: ignore[return-value]
