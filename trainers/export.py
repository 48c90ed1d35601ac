"""The field agent outside PyTorch: an ONNX export and an onnxruntime agent.

    python -m trainers.export lakehouse/checkpoints/<run>/checkpoint      # -> <checkpoint>/onnx/agent.onnx

What is in the graph: SmolVLA from the camera image, the normalised state and the command's
tokens to the normalised action chunk, the whole flow-matching loop included (its `flow_steps`
Euler steps unrolled, the prefix's key/value cache computed once and shared by every step), for
the noise given as an input. What stays in the thin runtime around it (`OnnxAgent`, the same code
path as `FieldAgent`): resizing the frame, tokenizing the command (padded to the tokenizer's
max length, 48: the graph has fixed shapes) and normalising the state with LeRobot's
preprocessor, and after it un-normalising the actions and the unicycle rollout to a trajectory.
Batch 1: the agent plans for one car.

Exported with torch's dynamo exporter (`torch.export`): the TorchScript tracer cannot follow
transformers' attention-mask helpers in the vision tower.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from trainers.agent import FieldAgent
from trainers.policy import CAMERA_KEY, STATE_KEY

INPUTS = ("image", "state", "tokens", "mask", "noise")
TOKENS_KEY, MASK_KEY = "observation.language.tokens", "observation.language.attention_mask"


class _Network(torch.nn.Module):
    """SmolVLA's predict_action_chunk from preprocessed tensors (what the ONNX graph holds)."""

    def __init__(self, policy: torch.nn.Module, action_dim: int) -> None:
        super().__init__()
        self.policy, self.action_dim = policy, action_dim

    def forward(self, image: torch.Tensor, state: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        batch = {CAMERA_KEY: image, STATE_KEY: state}
        images, img_masks = self.policy.prepare_images(batch)
        actions = self.policy.model.sample_actions(images, img_masks, tokens, mask, self.policy.prepare_state(batch),
                                                   noise=noise)
        return actions[:, :, :self.action_dim]


def padded_tokens(obs: dict, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The preprocessor's (right-padded, longest-in-batch) tokens and mask, padded on to `length`."""
    tok, msk = obs[TOKENS_KEY], obs[MASK_KEY]
    if tok.shape[1] > length:
        raise ValueError(f"the command has {tok.shape[1]} tokens; the exported agent takes at most {length}")
    pad = length - tok.shape[1]
    tok = torch.nn.functional.pad(tok, (0, pad), value=0)
    msk = torch.nn.functional.pad(msk, (0, pad), value=False)
    return tok.numpy().astype(np.int64), msk.numpy().astype(bool)


def _example(agent: FieldAgent) -> tuple[torch.Tensor, ...]:
    h, w = agent.image_hw
    obs = agent.loaded.pre({CAMERA_KEY: torch.rand(1, 3, h, w), STATE_KEY: torch.tensor([[10.0, 0.0, 0.0, 0.0]]),
                            "task": ["Keep the lane"]})
    tok, msk = padded_tokens(obs, agent.loaded.cfg.tokenizer_max_length)
    return (obs[CAMERA_KEY], obs[STATE_KEY], torch.from_numpy(tok), torch.from_numpy(msk),
            torch.zeros(1, agent.chunk, agent.max_action_dim))


def export_onnx(ckpt: str | Path, out_dir: str | Path | None = None) -> Path:
    """Export a checkpoint's agent to <out_dir>/agent.onnx (default <ckpt>/onnx), checked by onnx's
    checker, with onnx.json beside it (shapes, flow steps, the checkpoint it came from)."""
    import onnx

    ckpt = Path(ckpt)
    out = Path(out_dir) if out_dir else ckpt / "onnx"
    out.mkdir(parents=True, exist_ok=True)
    agent = FieldAgent.load(ckpt)
    cfg = agent.loaded.cfg
    net = _Network(agent.loaded.policy.eval(), int(cfg.action_feature.shape[0]))
    tmp = out / "agent.onnx.tmp"
    t0 = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(net, _example(agent), str(tmp), dynamo=True, opset_version=18, input_names=list(INPUTS),
                          output_names=["actions"], external_data=False, verbose=False)
    onnx.checker.check_model(str(tmp))
    tmp.replace(out / "agent.onnx")
    meta = {"checkpoint": str(ckpt.absolute()), "run_id": agent.meta.get("run_id"), "step": agent.meta.get("step"),
            "image_hw": list(agent.image_hw), "tokens": cfg.tokenizer_max_length, "flow_steps": cfg.num_steps,
            "chunk": agent.chunk, "max_action_dim": agent.max_action_dim, "opset": 18, "torch": torch.__version__,
            "onnx": onnx.__version__, "export_s": round(time.perf_counter() - t0, 1)}
    (out / "onnx.json").write_text(json.dumps(meta, indent=1))
    return out / "agent.onnx"


class OnnxAgent(FieldAgent):
    """The exported graph run by onnxruntime inside FieldAgent's own pre- and post-processing."""

    def __init__(self, onnx_path: str | Path, ckpt: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        loaded = FieldAgent.load(ckpt).loaded
        super().__init__(loaded, "cpu")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.tokens = loaded.cfg.tokenizer_max_length

    def _chunk(self, obs: dict, noise: torch.Tensor) -> torch.Tensor:
        tok, msk = padded_tokens(obs, self.tokens)
        rows = []
        for i in range(len(tok)):  # the graph plans one observation at a time
            feed = {"image": obs[CAMERA_KEY][i:i + 1].numpy(), "state": obs[STATE_KEY][i:i + 1].numpy(),
                    "tokens": tok[i:i + 1], "mask": msk[i:i + 1], "noise": noise[i:i + 1].numpy()}
            rows.append(self.session.run(["actions"], feed)[0])
        return torch.from_numpy(np.concatenate(rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainers.export", description="Export a field agent to ONNX.")
    p.add_argument("checkpoint", help="a run's checkpoint folder (lakehouse/checkpoints/<run>/checkpoint)")
    p.add_argument("--out", default=None, help="output folder (default: <checkpoint>/onnx)")
    args = p.parse_args(argv)
    path = export_onnx(args.checkpoint, args.out)
    print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB): {json.loads((path.parent / 'onnx.json').read_text())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
