"""Stream WebDataset shards into torch batches for training (and anyone's `webdataset` code).

Shards are split across nodes and loader workers, samples pass a shuffle buffer, and JPEG
decoding happens inside the workers, so the training process only receives ready tensors.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from PIL import Image


def shard_urls(root: str | Path, split: str) -> list[str]:
    """The split's shard files under a shard root, in a stable order."""
    urls = sorted(str(p) for p in (Path(root) / split).glob("*.tar"))
    if not urls:
        raise FileNotFoundError(f"no {split} shards under {root}/{split}: materialize webdataset_shards first")
    return urls


def decode_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Raw tar members -> arrays: image (3, H, W) uint8, state (4,), actions (64, 2), future, history.

    Images stay uint8 (4x less to move between processes); `images_to_float` scales a batch
    where it is used, on the training device. Tensors are made once per batch in `collate`.
    """
    meta = json.loads(sample["json"])
    img = np.asarray(Image.open(io.BytesIO(sample["jpg"])).convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    s = meta["state"]
    return {
        "key": sample["__key__"],
        "image": img,
        "state": np.array([s["v_mps"], s["a_mps2"], s["kappa_1pm"], s["yaw_rate_radps"]], dtype=np.float32),
        "actions": np.load(io.BytesIO(sample["actions.npy"])),
        "future": np.load(io.BytesIO(sample["future.npy"])),
        "history": np.load(io.BytesIO(sample["history.npy"])),
        "command": meta["command"],
        "meta_action": meta["meta_action"],
    }


def images_to_float(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float32 in [0, 1]."""
    return images.to(torch.float32).div_(255.0)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in samples[0]:
        vals = [s[k] for s in samples]
        out[k] = torch.from_numpy(np.stack(vals)) if isinstance(vals[0], np.ndarray) else vals
    return out


def make_dataset(urls: list[str], *, batch_size: int, shuffle_buffer: int = 500, seed: int = 0,
                 shuffle_shards: bool = True, partial_last: bool = True) -> wds.DataPipeline:
    """shards -> (node, worker) split -> samples -> shuffle buffer -> decode -> batches."""
    stages: list[Any] = [wds.SimpleShardList(urls)]
    if shuffle_shards:
        stages.append(wds.shuffle(len(urls), seed=seed))
    stages += [wds.split_by_node, wds.split_by_worker, wds.tarfile_to_samples()]
    if shuffle_buffer > 1:
        stages.append(wds.shuffle(shuffle_buffer, initial=min(shuffle_buffer, 100), seed=seed))
    stages += [wds.map(decode_sample), wds.batched(batch_size, collation_fn=collate, partial=partial_last)]
    return wds.DataPipeline(*stages)


def make_loader(urls: list[str], *, batch_size: int, num_workers: int = 0, **kw: Any) -> wds.WebLoader:
    """A torch DataLoader over the pipeline; batching happens in the workers (batch_size=None here)."""
    return wds.WebLoader(make_dataset(urls, batch_size=batch_size, **kw), batch_size=None, num_workers=num_workers,
                         persistent_workers=num_workers > 0)


def iterate_forever(loader: wds.WebLoader) -> Iterator[dict[str, Any]]:
    """Epoch after epoch, for step-based training loops."""
    while True:
        yield from loader
