"""`standin`: a tiny random GPT-2 that picks a Chain-of-Causation sentence, run in its own environment.

It exists to exercise the path a model labeler with conflicting dependencies takes (Alpamayo-R1
pins transformers 4.57, the pipeline runs transformers 5): its environment holds transformers 4
(labelers/envs/standin.txt), and the worker (labelers/worker.py) runs it there. Its labels mean
nothing: the model is random, so it scores the candidate sentences arbitrarily, though
deterministically (seeded, CPU). The chosen sentence is distilled exactly as Alpamayo's CoC is.
"""

from __future__ import annotations

from typing import Any

from labelers.alpamayo import distill_coc
from labelers.base import Labeler, LabelerUnavailable, LabelFailure, WindowContext
from labelers.trace import Trace

VERSION = "tf4-gpt2-tiny.1"
CANDIDATES = (
    "Keep the current lane because the road ahead is clear.",
    "Slow down because the car ahead is braking.",
    "Speed up since the road ahead is clear.",
    "Follow the lead vehicle and keep a safe distance.",
    "Stop at the stop line because of the stop sign.",
)


class StandInLabeler(Labeler):
    name = "standin"
    version = VERSION

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._model: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        import transformers

        if int(transformers.__version__.split(".")[0]) >= 5:
            raise LabelerUnavailable(f"the standin labeler runs on transformers 4 (found {transformers.__version__}): "
                                     "run it in its own environment (make labeler-env NAME=standin)")
        torch.manual_seed(self.seed)
        cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=256, n_positions=256)
        self._torch, self._model = torch, transformers.GPT2LMHeadModel(cfg).eval()
        self.transformers_version = transformers.__version__

    def _score(self, prompt: str, sentence: str) -> float:
        torch = self._torch
        ids = torch.tensor([list((prompt + " " + sentence).encode()[:255])])
        n = len(prompt.encode()) + 1
        with torch.no_grad():
            logp = torch.log_softmax(self._model(ids).logits[0, :-1], -1)
        return float(logp[n - 1:].gather(1, ids[0, n:, None]).mean())

    def label(self, windows: list[WindowContext]) -> list[Trace | LabelFailure]:
        self._load()
        out: list[Trace | LabelFailure] = []
        for w in windows:
            prompt = f"v={w.v0_mps:.1f} a={float(w.accel_mps2[:10].mean()):+.2f}"
            best = max(CANDIDATES, key=lambda s: self._score(prompt, s))
            r = distill_coc(best, labeler=self.name, version=self.version)
            if isinstance(r, Trace):
                r.extra["transformers"] = self.transformers_version
            out.append(r)
        return out
