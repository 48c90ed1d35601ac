"""Alpamayo-R1 labeler: CoC -> trace -> command on realistic Chain-of-Causation text, and clear
failures where the package, weights or GPU are missing (they always are here)."""

from __future__ import annotations

import pytest

from labelers.alpamayo import AlpamayoLabeler, distill_coc
from labelers.base import LabelerUnavailable, LabelFailure
from labelers.trace import Trace, render_command

# Written in the style of Alpamayo-R1's Chain-of-Causation outputs (decision, then its cause).
COC = [
    ("The ego vehicle should change to the left lane to overtake the slow-moving truck ahead because the left lane "
     "is clear of traffic.", "overtake_left", "truck"),
    ("Nudge to the left and pass the parked van on the left, since it blocks part of the ego lane.",
     "overtake_left", "van"),
    ("The ego vehicle should decelerate and come to a complete stop at the stop line because there is a stop sign "
     "at the intersection ahead.", "stop", "line"),
    ("Remain stopped behind the stop line as cross traffic is still passing through the intersection.", "stop", "line"),
    ("Proceed through the intersection since the cross traffic has cleared and the ego vehicle has the right of way.",
     "go", ""),
    ("Start moving again because the traffic light has turned green.", "go", "light"),
    ("Yield to the pedestrian crossing the road ahead because pedestrians have priority at the crosswalk.",
     "yield", "pedestrian"),
    ("Give way to the oncoming bus before turning, as it is too close to turn safely.", "yield", "bus"),
    ("The ego vehicle should follow the lead vehicle and keep a safe distance because traffic ahead is moving "
     "steadily at a lower speed.", "follow_lead", "car"),
    ("Stay behind the truck in the ego lane since the adjacent lane is occupied.", "follow_lead", "truck"),
    ("The ego vehicle should slow down because the car ahead is braking.", "slow_down", "car"),
    ("Reduce speed as the road curves sharply to the right and visibility is limited.", "slow_down", ""),
    ("Accelerate to match the speed of traffic since the road ahead is clear.", "speed_up", ""),
    ("The ego vehicle should speed up to merge into the faster flow of traffic on the highway.", "speed_up", ""),
    ("Keep the current lane and maintain speed because there are no obstacles ahead.", "keep_lane", ""),
    ("Continue straight in the lane since the lane markings are clear and no vehicles are nearby.", "keep_lane", ""),
    ("Turn left at the intersection following the route, as the oncoming lane is clear.", "turn_left", ""),
    ("The ego vehicle should follow the road as it bends to the right, slowing slightly for the curve.",
     "turn_right", ""),
    ("Change to the right lane to prepare for the upcoming exit because the exit ramp is on the right.",
     "change_lane_right", ""),
    ("Move over to the left lane because a construction zone with cones closes the right lane ahead.",
     "change_lane_left", ""),
    ("Merge left since the ego lane ends in 200 meters.", "change_lane_left", ""),
    ("Pass the cyclist on the left while leaving enough lateral clearance, as the oncoming lane is empty.",
     "overtake_left", "cyclist"),
    ("The ego vehicle should brake gently because the traffic light ahead has turned yellow.", "slow_down", "light"),
]


@pytest.mark.parametrize("cot, action, subject", COC)
def test_chain_of_causation_distills_to_trace_and_command(cot: str, action: str, subject: str) -> None:
    trace = distill_coc(cot)
    assert isinstance(trace, Trace), trace
    assert trace.meta_action == action, (cot, trace.meta_action)
    if subject:
        assert trace.subject == subject, (cot, trace.subject)
    assert trace.reason and trace.labeler == "alpamayo" and trace.extra["cot"].startswith(cot[:20])
    assert Trace.from_json(trace.to_json()) == trace
    command = render_command(trace, "clip/5100000")
    assert command and "{" not in command
    print(f"{action:18s} -> {command}")


def test_enough_realistic_sentences() -> None:
    assert len(COC) >= 20 and len({a for _, a, _ in COC}) >= 11


def test_hazards_exclude_the_ego_and_carry_side() -> None:
    trace = distill_coc("The ego vehicle should overtake the truck on the left because the truck is slow.")
    kinds = [h.kind for h in trace.hazards]
    assert kinds == ["truck"] and trace.subject == "truck"


def test_alpamayo_meta_action_text_wins_and_agreement_raises_confidence() -> None:
    both = distill_coc("Slow down because the car ahead brakes.", "decelerate")
    only = distill_coc("Slow down because the car ahead brakes.")
    assert both.meta_action == only.meta_action == "slow_down" and both.confidence > only.confidence


@pytest.mark.parametrize("cot", ["", "   ", "The weather is sunny and the sky is blue."])
def test_unusable_coc_is_flagged_not_labeled(cot: str) -> None:
    assert isinstance(distill_coc(cot), LabelFailure)


def test_labeler_fails_clearly_without_package_gpu_or_weights() -> None:
    with pytest.raises(LabelerUnavailable, match=r"alpamayo_r1 package|CUDA GPU|weights"):
        AlpamayoLabeler(dataset=None).label([])


def test_equal_length_batches_never_pad() -> None:
    from labelers.alpamayo import equal_length_batches

    lengths = [10, 12, 10, 10, 12, 11, 10]
    batches = equal_length_batches(lengths, 2)
    assert batches == [[0, 2], [3, 6], [1, 4], [5]]
    assert all(len({lengths[i] for i in b}) == 1 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert equal_length_batches(lengths, 1) == [[i] for i in (0, 2, 3, 6, 1, 4, 5)]
    with pytest.raises(ValueError, match="batch_size=0"):
        equal_length_batches(lengths, 0)


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_a_window_upstream_rejects_is_a_labeling_failure_and_batches_hold_equal_prompts() -> None:
    """Upstream's calls replaced by stand-ins that behave as they do: the loader asserts on an early
    t0, the processor's prompt length varies by window, the model answers one CoC per sample."""
    import numpy as np
    import torch

    from labelers.base import WindowContext

    class Frames:
        def flatten(self, *_: int) -> str:
            return "frames"

    def load(clip_id: str, *, t0_us: int, avdi: object) -> dict:
        assert t0_us > 1_600_000, f"t0 {t0_us} must leave 1.6 s of history"
        return {"image_frames": Frames(), "ego_history_xyz": torch.zeros(1, 1, 16, 3),
                "ego_history_rot": torch.zeros(1, 1, 16, 3, 3), "t0": t0_us}

    lengths = iter([30, 31, 30, 30])

    class Processor:
        def apply_chat_template(self, messages: list, **_: object) -> dict:
            n = next(lengths)
            return {"input_ids": torch.full((1, n), n), "attention_mask": torch.ones(1, n, dtype=torch.long)}

    seen = []

    class Model:
        def sample_trajectories_from_data_with_vlm_rollout(self, data: dict, **_: object) -> tuple:
            ids = data["tokenized_data"]["input_ids"]
            seen.append(tuple(ids.shape))
            cot = np.array([[["Keep the current lane because the road ahead is clear."]]] * ids.shape[0])
            return None, None, {"cot": cot, "meta_action": np.array([[[""]]] * ids.shape[0])}

    class Helper:
        create_message = staticmethod(lambda frames: {"frames": frames})
        to_device = staticmethod(lambda d, device: d)

    lab = AlpamayoLabeler(dataset=None, batch_size=4)
    lab._model, lab._torch, lab._helper, lab._load_window, lab._processor = Model(), torch, Helper(), load, Processor()
    windows = [WindowContext(f"c{i}", t0, 10.0, np.zeros(64), np.zeros(64), np.zeros((64, 3)), np.zeros(64))
               for i, t0 in enumerate([1_500_000, 2_000_000, 2_500_000, 3_000_000, 3_500_000])]
    out = lab.label(windows)
    assert isinstance(out[0], LabelFailure) and "rejected t0=1.5 s: AssertionError" in out[0].reason
    assert all(isinstance(r, Trace) and r.meta_action == "keep_lane" for r in out[1:])
    assert sorted(seen) == [(1, 31), (3, 30)]  # windows 1, 3, 4 together; window 2 alone: no padding
