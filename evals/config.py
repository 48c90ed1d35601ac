"""What an evaluation is configured by: the one declaration of navsim_eval's knobs.

The asset's launchpad config (dagster_project/assets/evaluation.py) and `flywheel eval`'s flags are
derived from it. Light to import: the CLI builds its flags from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import knob
from transforms.ids import BENCHMARK_SPLIT


@dataclass(frozen=True)
class EvalConfig:
    run_id: str = knob("", "the training run to score; empty: the latest finished one in eval.training_runs")
    # held-out splits (train would flatter): the training chunks' val/test, and the benchmark set
    splits: tuple[str, ...] = knob(("val", "test", BENCHMARK_SPLIT), "held-out splits to score")
    max_windows: int = knob(0, "score at most this many windows; 0: every window of those splits")
    wrong_command: bool = knob(True, "also score the agent given another window's command (does language matter?)")
    seed: int = knob(0, "the agent's sampling noise (with noise_scale > 0) and the wrong-command pairing")
    noise_scale: float = knob(0.0, "the agent's sampling noise; 0: its deterministic plan (flow matching from the "
                                   "noise mean)")
    batch_size: int = knob(16, "windows per forward pass of the agent")
    device: str = knob("auto", "cpu, cuda, cuda:N; auto: cuda where available")
    labeler: str = knob("", "the commands the agent is given: shards of this labeler; empty: the labels the run "
                            "trained on")
    labeler_version: str = knob("", "... and this version of it; empty: the run's")

    def __post_init__(self) -> None:
        if not self.splits:
            raise ValueError(f"splits={list(self.splits)}: name at least one held-out split, e.g. val test "
                             f"{BENCHMARK_SPLIT}")
        if self.max_windows < 0 or self.batch_size < 1 or self.noise_scale < 0:
            raise ValueError(f"max_windows={self.max_windows} (>= 0), batch_size={self.batch_size} (>= 1), "
                             f"noise_scale={self.noise_scale} (>= 0)")
