"""What an evaluation is configured by: the one declaration of navsim_eval's knobs.

The asset's launchpad config (dagster_project/assets/evaluation.py) and `flywheel eval`'s flags are
derived from it. Light to import: the CLI builds its flags from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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


CLOSED_LOOP_POLICIES = ("field_agent", "field_agent_shield", "constant_controls", "driver_model")


@dataclass(frozen=True)
class ClosedLoopConfig:
    run_id: str = knob("", "the training run whose agent drives; empty: the latest finished one")
    scenarios: tuple[str, ...] = knob((), "twin scenarios to drive a route in; empty: every one")
    routes_per_scenario: int = knob(1, "routes per scenario (intervals are over routes)")
    seconds: float = knob(20.0, "route length in seconds of driving (the goal: where the logged driver got)")
    policies: tuple[str, ...] = knob(CLOSED_LOOP_POLICIES, "who drives: the field agent, the agent behind the "
                                                           "safety shield, constant (a, κ) re-planned every step, "
                                                           "the twin's driver model (privileged)")
    execute_steps: int = knob(5, "steps of each agent plan run before the next should take over")
    delay_ms: float = knob(0.0, "inference delay imposed on every agent plan, on top of its compute")
    reactive: bool = knob(True, "other vehicles react to the ego (the twin's IDM); false: they replay their log")
    seed: int = knob(0, "which routes (their worlds are drawn from it)")
    device: str = knob("auto", "cpu, cuda, cuda:N; auto: cuda where available")
    videos: bool = knob(True, "write GIFs (camera beside bird's-eye view) of the agent's best and worst routes")
    commander: Literal["rules", "kinematic", "vlm"] = knob(
        "rules", "who speaks at 1 Hz: rules with the twin's ground truth, or a labeler (kinematic; vlm with "
                 "vlm_model_dir) saying in words what the route's privileged plan does next, from the camera")
    vlm_model_dir: str = knob("", "with commander=vlm: a local image-text-to-text model folder")

    def __post_init__(self) -> None:
        bad = [p for p in self.policies if p not in CLOSED_LOOP_POLICIES]
        if bad or not self.policies:
            raise ValueError(f"policies={list(self.policies)}: choose from {list(CLOSED_LOOP_POLICIES)}")
        if self.commander == "vlm" and not self.vlm_model_dir:
            raise ValueError("commander=vlm needs vlm_model_dir: a local image-text-to-text model folder")
        if self.routes_per_scenario < 1 or self.execute_steps < 1 or self.delay_ms < 0 or self.seconds < 4:
            raise ValueError(f"routes_per_scenario={self.routes_per_scenario} (>= 1), execute_steps="
                             f"{self.execute_steps} (>= 1), delay_ms={self.delay_ms} (>= 0), seconds={self.seconds} "
                             "(>= 4)")
