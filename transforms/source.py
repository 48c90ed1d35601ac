"""Where PAI chunks come from: the offline twin, a local mirror, or the Hugging Face hub.

All three hand back the same thing, a `ChunkFiles`: local paths for the dataset's metadata files
and one chunk's feature files, keyed by their repo paths. Everything downstream reads only that.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from transforms import pai_layout as L
from transforms.ids import inside
from transforms.twin.writer import (
    ACQUIRED_BASE,
    TwinConfig,
    acquired_plans,
    chunk_is_written,
    twin_gt_paths,
    write_metadata,
    write_twin,
)

log = logging.getLogger(__name__)

SHA40 = re.compile(r"^[0-9a-f]{40}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
DISCOVERY_DEADLINE_S = 30.0  # discovery runs in a sensor tick, which Dagster cuts off at 60 s
RETRY_STATUS = (408, 429, 500, 502, 503, 504)  # the hub's "try again" answers (as huggingface_hub's own backoff)


def is_transient(exc: BaseException) -> bool:
    """A network hiccup worth retrying (timeouts, resets, 429/5xx), not a gate, a 404 or offline mode."""
    import httpx
    from huggingface_hub import errors

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # hf wraps the cause: walk the chain
        seen.add(id(exc))
        if isinstance(exc, errors.OfflineModeIsEnabled):
            return False
        if isinstance(exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError,
                            ConnectionError, TimeoutError)):
            return True
        if isinstance(exc, errors.HfHubHTTPError) and not isinstance(
                exc, (errors.GatedRepoError, errors.RepositoryNotFoundError, errors.RevisionNotFoundError,
                      errors.EntryNotFoundError)):
            response = getattr(exc, "response", None)
            return response is not None and response.status_code in RETRY_STATUS
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def with_retries[T](fn: Callable[[], T], *, what: str, attempts: int = 5, base_s: float = 2.0, max_s: float = 60.0,
                    transient: Callable[[BaseException], bool] = is_transient,
                    sleep: Callable[[float], None] | None = None) -> T:
    """Call `fn`, retrying transient failures with exponential backoff and jitter (2, 4, 8 ... s).

    Hub downloads resume from their `.incomplete` file, so a retry costs only what was lost.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not transient(exc):
                raise
            delay = min(max_s, base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            log.warning("%s: transient failure (%s: %s); retry %d/%d in %.1f s", what, type(exc).__name__,
                        str(exc)[:200], attempt, attempts - 1, delay)
            (sleep or time.sleep)(delay)
    raise AssertionError("unreachable")


class SourceError(RuntimeError):
    """A source cannot deliver what was asked; the message says what to do about it."""


def call_within[T](fn: Callable[[], T], *, seconds: float, what: str) -> T:
    """`fn()`, or a SourceError once `seconds` have passed without an answer.

    huggingface_hub retries a refused or timed-out request itself (6 tries, ~25 s of backoff, each
    try up to its 10 s timeout), so no retry count bounds the wait; a clock does. The call goes on
    in a daemon thread that nobody waits for and that ends when huggingface_hub gives up.
    """
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"within:{what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise SourceError(f"{what}: no answer within {seconds:g} s; the hub is unreachable or slow: check the "
                          "network (or HF_ENDPOINT), or use FLYWHEEL_SOURCE=mirror")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


@dataclass(frozen=True)
class ChunkFiles:
    chunk_id: int
    source: str  # twin | mirror | hub
    revision: str
    files: dict[str, Path]  # repo path -> local file (metadata + this chunk's feature files)
    features: dict[str, L.Feature]

    def path(self, repo_path: str) -> Path:
        try:
            return self.files[repo_path]
        except KeyError:
            raise SourceError(f"{repo_path} was not fetched for chunk {self.chunk_id} from {self.source}") from None

    def feature_path(self, feature: str) -> Path:
        if feature not in self.features:
            raise SourceError(f"feature {feature!r} is not in this dataset's features.csv")
        return self.path(self.features[feature].path(self.chunk_id))


def sha256_of(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def placed_chunks(clip_index: pd.DataFrame, path: Path) -> tuple[pd.Series, str]:
    """Each clip's chunk id as a nullable integer, and a note on the clips that name no usable chunk.

    PAI's column holds integers; digits in strings or integral floats mean the same chunk, so every
    reader places a clip alike. A NaN, a fraction or a word places it in no chunk: such a clip can
    be indexed by no partition, and the note (logged, and in each chunk's index notes) names it.
    """
    raw = clip_index["chunk"]
    num = pd.to_numeric(raw, errors="coerce")
    ok = num.notna() & (num == num.round()) & (num >= 0)
    note = ""
    if not ok.all():
        bad = raw[~ok]
        examples = ", ".join(f"{cid}: {v!r}" for cid, v in list(bad.items())[:3])
        note = (f"{path.name}: {len(bad)} clips name no usable chunk (e.g. {examples}): they are in no chunk "
                "partition; fix their 'chunk' values")
        log.warning(note)
    return num.where(ok).astype("Int64"), note


def _chunks_in_clip_index(path: Path) -> list[int]:
    placed, _ = placed_chunks(pd.read_parquet(path, columns=["chunk"]), path)
    return sorted(int(c) for c in placed.dropna().unique())


def _repo_paths(features: dict[str, L.Feature], chunk_id: int, wanted: tuple[str, ...]) -> list[str]:
    missing = [f for f in wanted if f not in features]
    if missing:
        raise SourceError(f"features {missing} are not listed in features.csv; is this a PAI dataset?")
    return [features[f].path(chunk_id) for f in wanted]


class Source(ABC):
    name: str
    revision: str

    @abstractmethod
    def list_chunks(self) -> list[int]:
        """Chunk ids available at this source (for discovery)."""

    @abstractmethod
    def fetch_chunk(self, chunk_id: int, features: tuple[str, ...] = L.REQUIRED_FEATURES) -> ChunkFiles:
        """Make the metadata and the chunk's feature files local; verify them; return their paths."""


class LocalDirSource(Source):
    """A directory holding files at their repo paths: a mirror, or the twin once written."""

    name = "mirror"

    def __init__(self, root: str | Path, revision: str = "local") -> None:
        self.root = Path(root)
        self.revision = revision

    def _require(self, rel: str) -> Path:
        p = inside(self.root, rel)
        if not p.is_file():
            raise SourceError(f"{p} is missing: the {self.name} source at {self.root} does not hold {rel}")
        return p

    def list_chunks(self) -> list[int]:
        features = L.load_features_csv(str(self._require("features.csv")))
        chunks = _chunks_in_clip_index(self._require("clip_index.parquet"))
        # a mirror may hold only some chunks: offer those whose required files are all there
        return [c for c in chunks if all(inside(self.root, p).is_file() for p in _repo_paths(features, c, L.REQUIRED_FEATURES))]

    def fetch_chunk(self, chunk_id: int, features: tuple[str, ...] = L.REQUIRED_FEATURES) -> ChunkFiles:
        meta = {rel: self._require(rel) for rel in ("features.csv", "clip_index.parquet")}
        for rel in L.METADATA_FILES[2:]:
            if (self.root / rel).is_file():
                meta[rel] = self.root / rel
        if "metadata/feature_presence.parquet" not in meta and (self.root / L.LEGACY_PRESENCE).is_file():
            meta[L.LEGACY_PRESENCE] = self.root / L.LEGACY_PRESENCE
        if (self.root / L.SPLITS_FILE).is_file():
            meta[L.SPLITS_FILE] = self.root / L.SPLITS_FILE
        feats = L.load_features_csv(str(meta["features.csv"]))
        known = _chunks_in_clip_index(meta["clip_index.parquet"])
        if chunk_id not in known:
            raise SourceError(f"unknown chunk {chunk_id}: {self.root}/clip_index.parquet lists chunks "
                              f"{known[:5]}{'...' if len(known) > 5 else ''} ({len(known)} in all)")
        files = {**meta, **{rel: self._require(rel) for rel in _repo_paths(feats, chunk_id, features)}}
        # the twin's ground truth travels with its chunk when present (a copy of a twin, too)
        files.update({rel: inside(self.root, rel) for rel in twin_gt_paths(chunk_id).values()
                      if (self.root / rel).is_file()})
        return ChunkFiles(chunk_id, self.name, self.revision, files, feats)


class TwinSource(LocalDirSource):
    """The offline twin: chunks are generated on first use, deterministically from the config."""

    name = "twin"

    def __init__(self, root: str | Path, config: TwinConfig) -> None:
        super().__init__(root, revision=f"twin-{config.config_hash()}")
        self.config = config

    def list_chunks(self) -> list[int]:
        # its own chunks, and those acquired into it on request (transforms/twin/acquire.py)
        return list(range(self.config.chunks)) + sorted(acquired_plans(self.root))

    def fetch_chunk(self, chunk_id: int, features: tuple[str, ...] = L.REQUIRED_FEATURES) -> ChunkFiles:
        if not 0 <= chunk_id < self.config.chunks and chunk_id not in acquired_plans(self.root):
            raise SourceError(f"unknown chunk {chunk_id}: the twin has chunks 0..{self.config.chunks - 1} "
                              "(raise FLYWHEEL_TWIN_CHUNKS for more) and no acquired chunk of that id")
        if not (self.root / "features.csv").is_file() or chunk_id >= ACQUIRED_BASE:
            # an acquired chunk's clips must be in the clip index, whoever rewrote it last
            write_metadata(self.root, self.config)
        if not chunk_is_written(self.root, chunk_id):
            log.info("twin: generating chunk %d under %s", chunk_id, self.root)
            write_twin(self.root, self.config, chunks=[chunk_id])
        return super().fetch_chunk(chunk_id, features)


def find_hf_snapshot(cache_dir: Path, revision: str | None, repo_id: str = L.REPO_ID) -> Path | None:
    """The snapshot folder of a dataset in an HF cache, if `cache_dir` is one (else None)."""
    repo_dir = Path(cache_dir) / f"datasets--{repo_id.replace('/', '--')}"
    if not repo_dir.is_dir():
        return None
    rev = revision
    if not rev or not SHA40.match(rev):
        ref = repo_dir / "refs" / (rev or "main")
        if not ref.is_file():
            raise SourceError(f"HF cache {cache_dir} has no ref {rev or 'main'!r}: set FLYWHEEL_HF_REVISION to one of "
                              f"{sorted(p.name for p in (repo_dir / 'snapshots').iterdir())}")
        rev = ref.read_text().strip()
    snap = repo_dir / "snapshots" / rev
    if not snap.is_dir():
        raise SourceError(f"HF cache {cache_dir} has no snapshot {rev}; set FLYWHEEL_HF_REVISION to a cached one")
    return snap


def mirror_source(root: str | Path, revision: str | None = None) -> LocalDirSource:
    """A mirror is a plain PAI-layout directory or an HF cache holding the dataset."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"mirror directory {root} does not exist; set FLYWHEEL_MIRROR_DIR to a PAI copy or HF cache")
    snap = find_hf_snapshot(root, revision)
    if snap is not None:
        return LocalDirSource(snap, revision=snap.name)
    return LocalDirSource(root, revision=revision or "local")


class HubSource(Source):
    """The gated dataset on the Hugging Face hub, through huggingface_hub, at a pinned commit."""

    name = "hub"

    def __init__(self, revision: str, *, token: str | None = None, cache_dir: str | Path | None = None,
                 repo_id: str = L.REPO_ID) -> None:
        if not revision:
            raise SourceError("the hub source needs FLYWHEEL_HF_REVISION pinned to a commit sha (40 hex); "
                              "find one with `hf api` or the dataset page's 'History'")
        if not SHA40.match(revision):
            raise SourceError(f"FLYWHEEL_HF_REVISION={revision!r} is not a 40-hex commit sha; pin a commit so "
                              "that re-runs read the same bytes (branches move)")
        self.revision = revision
        self.repo_id = repo_id
        self.cache_dir = str(cache_dir) if cache_dir else None
        self._token = token or None  # never logged, never stored in metadata

    def __repr__(self) -> str:
        return f"HubSource(repo_id={self.repo_id!r}, revision={self.revision!r}, token={'***' if self._token else None})"

    @contextmanager
    def _hub_errors(self, what: str) -> Iterator[None]:
        """Turn huggingface_hub's exceptions into messages that say what to do."""
        from huggingface_hub import errors

        try:
            yield
        except errors.GatedRepoError as exc:
            raise SourceError(f"access to {self.repo_id} is gated: accept the NVIDIA AV dataset license on "
                              f"https://huggingface.co/datasets/{self.repo_id} with the account of HF_TOKEN") from exc
        except errors.RepositoryNotFoundError as exc:
            hint = "set HF_TOKEN to a token of an account that accepted the license" if not self._token else \
                "check that HF_TOKEN is valid (hf auth whoami)"
            raise SourceError(f"{self.repo_id} not reachable with the given credentials: {hint}") from exc
        except errors.RevisionNotFoundError as exc:
            raise SourceError(f"revision {self.revision} does not exist in {self.repo_id}; fix FLYWHEEL_HF_REVISION") from exc
        # LocalEntryNotFoundError subclasses EntryNotFoundError: it must come first
        except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as exc:
            raise SourceError(f"{what} is not in the HF cache and the hub is unreachable (offline, "
                              "HF_HUB_OFFLINE=1, or no network); pre-fetch it or use FLYWHEEL_SOURCE=mirror") from exc
        except errors.EntryNotFoundError as exc:
            raise SourceError(f"{what} does not exist in {self.repo_id}@{self.revision[:10]}: unknown chunk or "
                              "feature") from exc
        except errors.HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status == 401:
                raise SourceError(f"the hub refused HF_TOKEN for {what} (401): it is invalid, expired or revoked; "
                                  "create a read token at https://huggingface.co/settings/tokens, set HF_TOKEN to "
                                  "it and check it with `hf auth whoami`") from exc
            if status == 403:
                raise SourceError(f"the hub forbids {what} to this token (403): a fine-grained token needs 'Read "
                                  f"access to contents of all public gated repos you can access', and the account "
                                  f"must have accepted the license on https://huggingface.co/datasets/{self.repo_id}"
                                  ) from exc
            raise

    def _download(self, repo_path: str, *, attempts: int = 5) -> Path:
        import huggingface_hub as hfh

        with self._hub_errors(repo_path):
            # hf_hub_download resumes partial downloads (.incomplete) and checks the etag itself
            local = with_retries(lambda: hfh.hf_hub_download(self.repo_id, repo_path, repo_type=L.REPO_TYPE,
                                                             revision=self.revision, cache_dir=self.cache_dir,
                                                             token=self._token), what=repo_path, attempts=attempts)
        path = Path(local)
        self._verify(path, repo_path)
        return path

    def _optional(self, repo_path: str) -> Path | None:
        """A file some revisions of the dataset lack: None when the hub answers that it does not exist
        at this revision or, offline, when the cached snapshot of the revision does not hold it."""
        from huggingface_hub import errors

        try:
            return self._download(repo_path)
        except SourceError as exc:
            cause = exc.__cause__
            if isinstance(cause, errors.LocalEntryNotFoundError | errors.OfflineModeIsEnabled):
                snap = find_hf_snapshot(Path(self.cache_dir), self.revision, self.repo_id) if self.cache_dir else None
                if snap is not None and not (snap / repo_path).exists():
                    return None
                raise
            if isinstance(cause, errors.EntryNotFoundError):
                return None
            raise

    def _metadata(self) -> dict[str, Path]:
        """Presence (current or pre-26.03), data collection, and the official splits where they exist."""
        meta = {"metadata/data_collection.parquet": self._download("metadata/data_collection.parquet")}
        presence = self._optional("metadata/feature_presence.parquet")
        if presence is not None:
            meta["metadata/feature_presence.parquet"] = presence
        elif (legacy := self._optional(L.LEGACY_PRESENCE)) is not None:
            meta[L.LEGACY_PRESENCE] = legacy
        else:
            raise SourceError(f"{self.repo_id}@{self.revision[:10]} has neither metadata/feature_presence.parquet "
                              f"(26.03 on) nor {L.LEGACY_PRESENCE} (before), or neither is cached offline; "
                              "pre-fetch one, or check FLYWHEEL_HF_REVISION")
        if (splits := self._optional(L.SPLITS_FILE)) is not None:
            meta[L.SPLITS_FILE] = splits
        return meta

    @staticmethod
    def _verify(path: Path, repo_path: str) -> None:
        # LFS files are stored in the cache under their sha256 (the etag): re-hash to catch bit rot
        # or a truncated copy that a previous crash left behind.
        blob = path.resolve().name
        if SHA256.match(blob):
            got = sha256_of(path)
            if got != blob:
                raise SourceError(f"{repo_path}: sha256 {got[:12]}... does not match the hub's {blob[:12]}...; delete "
                                  f"{path.resolve()} and fetch again")

    def list_chunks(self) -> list[int]:
        # discovery runs in a sensor tick: one try (huggingface_hub's own retries included), on a clock
        path = call_within(lambda: self._download("clip_index.parquet", attempts=1), seconds=DISCOVERY_DEADLINE_S,
                           what=f"discovering chunks of {self.repo_id}")
        return _chunks_in_clip_index(path)

    def fetch_chunk(self, chunk_id: int, features: tuple[str, ...] = L.REQUIRED_FEATURES) -> ChunkFiles:
        meta = {rel: self._download(rel) for rel in ("features.csv", "clip_index.parquet")}
        known = _chunks_in_clip_index(meta["clip_index.parquet"])
        if chunk_id not in known:
            raise SourceError(f"unknown chunk {chunk_id}: {self.repo_id}@{self.revision[:10]} has chunks "
                              f"{known[0]}..{known[-1]} ({len(known)})")
        meta |= self._metadata()
        feats = L.load_features_csv(str(meta["features.csv"]))
        wanted = _repo_paths(feats, chunk_id, features)
        if not is_offline_mode():
            import huggingface_hub as hfh

            # one parallel, resumable transfer of the chunk's files (GBs); the per-file calls
            # below then find them cached and only verify
            with self._hub_errors(f"chunk {chunk_id}"):
                with_retries(lambda: hfh.snapshot_download(
                    self.repo_id, repo_type=L.REPO_TYPE, revision=self.revision,
                    allow_patterns=allow_patterns(feats, [chunk_id], features), cache_dir=self.cache_dir,
                    token=self._token), what=f"chunk {chunk_id}")
        files = {**meta, **{rel: self._download(rel) for rel in wanted}}
        return ChunkFiles(chunk_id, self.name, self.revision, files, feats)


def is_offline_mode() -> bool:
    import huggingface_hub as hfh

    return bool(hfh.constants.HF_HUB_OFFLINE)


def allow_patterns(features: dict[str, L.Feature], chunk_ids: list[int], wanted: tuple[str, ...]) -> list[str]:
    """`snapshot_download(allow_patterns=...)` for some chunks: metadata plus each feature's files."""
    return list(L.METADATA_FILES + L.OPTIONAL_METADATA) + [p for c in chunk_ids for p in _repo_paths(features, c, wanted)]


def write_hf_cache(dataset_dir: str | Path, cache_dir: str | Path, revision: str, *,
                   repo_id: str = L.REPO_ID) -> Path:
    """Lay out a PAI-layout directory as a Hugging Face hub cache at `revision`.

    The structure is huggingface_hub's own (blobs/ named by etag, snapshots/<rev>/ symlinks,
    refs/main), so `hf_hub_download(..., revision=rev)` with HF_HUB_OFFLINE=1 resolves from it:
    for air-gapped clusters and for testing the hub path without the network.
    """
    if not SHA40.match(revision):
        raise ValueError(f"revision must be a 40-hex commit sha, got {revision!r}")
    src = Path(dataset_dir)
    repo_dir = Path(cache_dir) / f"datasets--{repo_id.replace('/', '--')}"
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    snap = repo_dir / "snapshots" / revision
    for f in sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = f.relative_to(src).as_posix()
        data = f.read_bytes()
        if f.suffix in (".zip", ".parquet", ".mp4"):
            etag = hashlib.sha256(data).hexdigest()  # LFS: the etag is the sha256
        else:
            etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git blob id
        blob = repo_dir / "blobs" / etag
        if not blob.exists():
            blob.write_bytes(data)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snap


def _feature_of(repo_path: str, features: dict[str, L.Feature], chunk_id: int) -> str:
    for name, feat in features.items():
        if feat.path(chunk_id) == repo_path:
            return name
    for name, rel in twin_gt_paths(chunk_id).items():
        if rel == repo_path:
            return f"twin_{name}"
    return "metadata"


def chunk_manifest(files: ChunkFiles, *, chunk: str) -> pa.Table:
    """Bronze `chunks` rows: one per file the chunk needs, with size and sha256 as fetched."""
    rows = [{"chunk": chunk, "feature": _feature_of(rel, files.features, files.chunk_id), "path": rel,
             "local_path": str(local), "bytes": local.stat().st_size, "sha256": sha256_of(local),
             "source": files.source, "revision": files.revision}
            for rel, local in sorted(files.files.items())]
    return pa.Table.from_pylist(rows)


def chunk_files_from_manifest(manifest: pa.Table, chunk_id: int) -> ChunkFiles:
    """Rebuild a chunk's `ChunkFiles` from its bronze rows, checking the files are still there."""
    if manifest.num_rows == 0:
        raise SourceError(f"no `chunks` rows for chunk {chunk_id}: materialize raw_chunks for it first")
    rows = manifest.to_pylist()
    files = {r["path"]: Path(r["local_path"]) for r in rows}
    gone = [str(p) for p in files.values() if not p.is_file()]
    if gone:
        raise SourceError(f"files of chunk {chunk_id} listed in the lake are gone ({gone[:2]}...): "
                          "re-materialize raw_chunks for it")
    feats = L.load_features_csv(str(files["features.csv"]))
    return ChunkFiles(chunk_id, rows[0]["source"], rows[0]["revision"] or "", files, feats)
