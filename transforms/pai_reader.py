"""The official `physical-ai-av` reader over local data: a plain PAI-layout directory or an HF cache.

`PhysicalAIAVDatasetInterface` resolves every file through the Hugging Face cache
(`try_to_load_from_cache`), so a plain directory (the twin, an rsync'd mirror) is invisible to
it even with `local_dir=`. `LocalPAIDataset` overrides only that lookup; decoding (egomotion
interpolators, f-theta intrinsics, extrinsics, `SeekVideoReader`) is the package's own.
For an HF cache, use the stock class with `cache_dir=` and `HF_HUB_OFFLINE=1`.
"""

from __future__ import annotations

import math
from pathlib import Path

from physical_ai_av.dataset import PhysicalAIAVDatasetInterface

from transforms.pai_layout import REPO_ID


class LocalPAIDataset(PhysicalAIAVDatasetInterface):
    """PAI reader over a directory that holds the dataset's files at their repo paths."""

    def __init__(self, local_dir: str | Path, *, revision: str = "local") -> None:
        self._root = Path(local_dir)
        if not (self._root / "features.csv").is_file():
            raise FileNotFoundError(
                f"{self._root}/features.csv not found: point local_dir at the root of a PAI-layout "
                "directory (the one holding features.csv and clip_index.parquet)")
        super().__init__(revision=revision, repo_id=REPO_ID, token=False, local_dir=self._root,
                         confirm_download_threshold_gb=math.inf)

    def _get_cached_path(self, filename: str) -> str | None:
        path = self._root / filename
        return str(path) if path.is_file() else None

    def _has_file(self, filename: str) -> bool:
        # the stock version asks the hub when a file is not cached; a local directory is complete
        return self._get_cached_path(filename) is not None

    def download_file(self, filename: str, **kwargs: object) -> str:
        path = self._get_cached_path(filename)
        if path is None:
            raise FileNotFoundError(f"{filename} is not in the local PAI directory {self._root}")
        return path
