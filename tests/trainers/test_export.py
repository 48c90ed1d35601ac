"""The exported agent: ONNX through onnxruntime plans what the PyTorch agent plans for the same noise.

Marked slow: torch's exporter takes about 80 s on the tiny agent (the flow loop is unrolled)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from trainers.agent import EgoState, FieldAgent
from trainers.export import OnnxAgent, export_onnx

pytestmark = pytest.mark.slow
# float32 through two runtimes (different kernels, fused ops): measured ~1e-6 on (a, κ)
TOLERANCE = {"accel": 1e-4, "kappa": 1e-5}


def test_onnx_agent_plans_what_the_pytorch_agent_plans(tiny_run: tuple, tmp_path: Path) -> None:
    res, _ = tiny_run
    path = export_onnx(res.checkpoint, tmp_path / "onnx")
    meta = json.loads((path.parent / "onnx.json").read_text())
    assert meta["run_id"] == res.run_id and meta["flow_steps"] == 10 and path.stat().st_size > 1e6
    torch_agent, onnx_agent = FieldAgent.load(res.checkpoint), OnnxAgent(path, res.checkpoint)
    rng, worst = np.random.default_rng(0), [0.0, 0.0]
    h, w = torch_agent.image_hw
    cases = [("Keep the lane", EgoState(12.0)), ("Overtake the truck on the left", EgoState(20.0, 0.3, 0.002)),
             ("Stop at the stop line", EgoState(5.0, -1.0, 0.0, 0.01))]  # commands of different token lengths
    for seed, (command, state) in enumerate(cases):
        image = rng.integers(0, 255, (h * 2, w * 2, 3), dtype=np.uint8)  # resized by both
        for noise_scale in (0.0, 1.0):
            a = torch_agent.act(image, command, state, seed=seed, noise_scale=noise_scale)
            b = onnx_agent.act(image, command, state, seed=seed, noise_scale=noise_scale)
            da = float(np.abs(a.accel_mps2 - b.accel_mps2).max())
            dk = float(np.abs(a.curvature_1pm - b.curvature_1pm).max())
            assert da < TOLERANCE["accel"] and dk < TOLERANCE["kappa"], (command, noise_scale, da, dk)
            worst = [max(worst[0], da), max(worst[1], dk)]
    other = onnx_agent.act(image, command, state, seed=99, noise_scale=1.0)
    assert float(np.abs(other.accel_mps2 - b.accel_mps2).max()) > 1e-3  # the noise input is used

    def p50_ms(agent: FieldAgent) -> float:
        times = []
        for _ in range(15):
            t = time.perf_counter()
            agent.act(image, command, state)
            times.append(time.perf_counter() - t)
        return float(np.median(times[3:]) * 1e3)

    print(f"ONNX parity over 6 plans: max |Δa| {worst[0]:.2e} m/s², max |Δκ| {worst[1]:.2e} 1/m")
    print(f"CPU latency per plan, p50: PyTorch {p50_ms(torch_agent):.1f} ms, onnxruntime {p50_ms(onnx_agent):.1f} ms")
