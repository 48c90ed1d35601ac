"""Stream WebDataset shards into torch batches for training (and anyone's `webdataset` code).

Shards are split across loader workers, samples pass a shuffle buffer, each of N data-parallel
ranks keeps every N-th sample (trainers.distributed), and JPEG decoding happens inside the
workers, so the training process only receives ready tensors.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import webdataset as wds
from PIL import Image

from transforms.ids import inside
from transforms.label_sets import label_set
from transforms.source import sha256_of


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


def _unit(key: str, seed: int) -> float:
    """A uniform number in [0, 1) from a sample's key and the epoch's seed (any worker, any order)."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{key}".encode()).digest()[:8], "little") / 2**64


def reweighted(weights: dict[str, float], seed: int):  # noqa: ANN201 (a webdataset stage)
    """A pipeline stage that passes each sample w times on average, w its meta-action's weight (1 where
    unnamed): floor(w) copies and one more with probability w - floor(w), drawn from the key and the
    seed, so an epoch's repeats do not depend on the worker split. Zero-download reweighting: the
    training mix moves towards a data request (core/request.py `sample_weights`)."""

    def stage(src: Any) -> Any:
        for sample in src:
            w = weights.get(json.loads(sample["json"])["meta_action"], 1.0)
            n = int(w) + (_unit(sample["__key__"], seed) < w - int(w))
            for _ in range(n):
                yield sample

    return stage


def rank_slice(rank: int, world: int):  # noqa: ANN201 (a webdataset stage)
    """Every `world`-th sample from the `rank`-th on. Ranks see the same stream (same shards, order and
    shuffle seeds), so their slices partition it: each sample once per epoch across ranks."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in 0..{world - 1}")

    def stage(src: Any) -> Any:
        for i, sample in enumerate(src):
            if i % world == rank:
                yield sample

    return stage


def make_dataset(urls: list[str], *, batch_size: int, shuffle_buffer: int = 500, seed: int = 0,
                 shuffle_shards: bool = True, partial_last: bool = True,
                 weights: dict[str, float] | None = None, rank: int = 0, world: int = 1) -> wds.DataPipeline:
    """shards -> worker split -> samples -> (reweighting) -> shuffle buffer -> this rank's slice ->
    decode -> batches (of batch_size samples: a rank's share of the global batch).

    Shards are not split by rank: the twin has a few shards per chunk of unequal size, and ranks
    with unequal data would run out of batches at different steps. Slicing after the shuffle keeps
    the ranks within one sample of each other and decodes only the rank's own samples."""
    stages: list[Any] = [wds.SimpleShardList(urls)]
    if shuffle_shards:
        stages.append(wds.shuffle(len(urls), seed=seed))
    stages += [wds.split_by_worker, wds.tarfile_to_samples()]
    if weights:
        stages.append(reweighted(weights, seed))
    if shuffle_buffer > 1:
        stages.append(wds.shuffle(shuffle_buffer, initial=min(shuffle_buffer, 100), seed=seed))
    if world > 1:
        stages.append(rank_slice(rank, world))
    stages += [wds.map(decode_sample), wds.batched(batch_size, collation_fn=collate, partial=partial_last)]
    return wds.DataPipeline(*stages)


def make_loader(urls: list[str], *, batch_size: int, num_workers: int = 0, **kw: Any) -> wds.WebLoader:
    """A torch DataLoader over the pipeline; batching happens in the workers (batch_size=None here).

    The loader seeds its workers from its own generator: left to the global one, every new epoch's
    iterator would draw from the training RNG and a resumed run would sample different noise.
    """
    gen = torch.Generator().manual_seed(int(kw.get("seed", 0)))
    return wds.WebLoader(make_dataset(urls, batch_size=batch_size, **kw), batch_size=None, num_workers=num_workers,
                         persistent_workers=num_workers > 0, generator=gen)


def state_action_samples(urls: list[str], limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """States (N, 4) and actions (N, 64, 2) of the first `limit` samples, without decoding images
    (normalisation statistics need only these)."""
    states, actions = [], []
    for sample in wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples()):
        s = json.loads(sample["json"])["state"]
        states.append([s["v_mps"], s["a_mps2"], s["kappa_1pm"], s["yaw_rate_radps"]])
        actions.append(np.load(io.BytesIO(sample["actions.npy"])))
        if len(states) >= limit:
            break
    if not states:
        raise ValueError(f"no samples in {len(urls)} shards ({urls[:2]}...): re-materialize webdataset_shards")
    return torch.tensor(states, dtype=torch.float32), torch.from_numpy(np.stack(actions)).float()


def meta_action_counts(labels: pa.Table, clips: pa.Table, label_set: tuple[str, str]) -> dict[str, int]:
    """Training windows per meta-action: `commander_labels` rows of one label set on train-split clips."""
    train = {c for c, s in zip(clips.column("clip_id").to_pylist(), clips.column("split").to_pylist(), strict=True)
             if s == "train"}
    out: dict[str, int] = {}
    for r in labels.select(["clip_id", "labeler", "labeler_version", "meta_action"]).to_pylist():
        if r["clip_id"] in train and (r["labeler"], r["labeler_version"]) == tuple(label_set):
            out[r["meta_action"]] = out.get(r["meta_action"], 0) + 1
    return out


@dataclass(frozen=True)
class ShardSet:
    """The shards a training run reads, and the identity of that data."""

    train: list[str]
    val: list[str]
    data_version: str  # a hash of the chunks' dataset versions (each covers its export config and inputs)
    chunks: dict[str, str]  # chunk -> dataset version
    samples: dict[str, int]  # split -> samples
    labels: tuple[str, str] = ("", "")  # (labeler, labeler_version) of every shard in the set


def verify_shards(rows: list[dict[str, Any]], shard_root: str | Path, *, sha256: bool = True) -> None:
    """Every listed shard is there with the manifest's size and (when asked) sha256: training reads
    what the manifest describes or nothing. Hashing reads each file once, ~1 GB/s, a small
    fraction of one epoch's decoding."""
    missing = [r["path"] for r in rows if not inside(shard_root, r["path"]).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shards in the manifest are missing under {shard_root}, e.g. "
                                f"{missing[0]}: re-materialize webdataset_shards for their chunks")
    for r in rows:
        path = inside(shard_root, r["path"])
        size = path.stat().st_size
        if size != r["bytes"] or (sha256 and sha256_of(path) != r["sha256"]):
            what = f"{size} bytes where the manifest says {r['bytes']}" if size != r["bytes"] else \
                f"sha256 differs from the manifest's {r['sha256'][:12]}..."
            raise ValueError(f"shard {path}: {what}: the file is not the one the manifest lists; re-materialize "
                             f"webdataset_shards for {r['chunk']}")


def shards_from_manifest(manifest: pa.Table, shard_root: str | Path, *, labeler: str = "", labeler_version: str = "",
                         verify_sha256: bool = True) -> ShardSet:
    """Train/val shard files of every chunk in the manifest exported with one label set (`label_set`:
    empty names take the labels the shards hold); each must be there as the manifest describes it
    (size, sha256)."""
    every = manifest.to_pylist()
    labels = label_set(every, labeler=labeler, labeler_version=labeler_version, what="the shard manifest",
                       hint="materialize webdataset_shards with those labels first")
    rows = [r for r in every if (r["labeler"], r["labeler_version"]) == labels]
    verify_shards(rows, shard_root, sha256=verify_sha256)
    rows.sort(key=lambda r: r["path"])
    chunks = {r["chunk"]: r["dataset_version"] for r in rows}
    digest = hashlib.sha256(json.dumps(sorted(chunks.items())).encode()).hexdigest()[:16]
    urls = {s: [str(inside(shard_root, r["path"])) for r in rows if r["split"] == s] for s in ("train", "val")}
    if not urls["train"]:
        raise ValueError(f"the manifest has no train shards for {labels[0]} {labels[1]}")
    samples = {s: sum(r["samples"] for r in rows if r["split"] == s) for s in sorted({r["split"] for r in rows})}
    return ShardSet(urls["train"], urls["val"], digest, chunks, samples, labels)
