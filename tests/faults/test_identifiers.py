"""Identifiers from data: property tests of the one validation every path, member and key goes through."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import ids
from transforms import pai_layout as L

SEGMENT = st.sampled_from(["..", ".", "", "a", "b.tar", "/", "\\", "..\\x", "x:y", "\x00", "~", "ü"])
PATHS = st.lists(SEGMENT, min_size=1, max_size=6).map("/".join) | st.text(max_size=30)


@settings(max_examples=400, deadline=None)
@given(rel=PATHS)
def test_inside_never_yields_a_path_outside_its_root(rel: str) -> None:
    root = Path("/srv/lake/shards")
    try:
        out = ids.inside(root, rel)
    except ids.UnsafePathError:
        return
    norm = os.path.normpath(out)
    assert norm == str(root) or norm.startswith(str(root) + os.sep), (rel, out)


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=40) | st.uuids().map(str) | st.integers() | st.none())
def test_clip_ids_are_exactly_lowercase_uuids(value: object) -> None:
    is_uuid = isinstance(value, str) and value == value.lower() and _parses_as_uuid(value)
    assert (ids.clip_id_problem(value) is None) == is_uuid
    if not is_uuid:
        assert repr(value) in ids.clip_id_problem(value)  # the message names the bad value


def _parses_as_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


@settings(max_examples=300, deadline=None)
@given(key=st.from_regex(r"chunk_[0-9]{1,7}", fullmatch=True) | st.text(max_size=14))
def test_a_chunk_has_one_partition_key(key: str) -> None:
    try:
        n = L.chunk_id_of(key)
    except ValueError as exc:
        assert repr(key) in str(exc)
        return
    assert L.chunk_key(n) == key  # accepted only in its canonical form: no alias of another key


@pytest.mark.parametrize("key, hint", [("chunk_0", "chunk_0000"), ("chunk_00000", "chunk_0000"),
                                       ("chunk_007", "chunk_0007")])
def test_partition_key_aliases_are_refused_with_the_canonical_key(key: str, hint: str) -> None:
    with pytest.raises(ValueError, match=f"did you mean '{hint}'"):
        L.chunk_id_of(key)


@given(split=st.text(max_size=20))
def test_splits_are_a_closed_set(split: str) -> None:
    assert (ids.split_problem(split) is None) == (split in ("train", "val", "test", "benchmark"))


def test_features_csv_paths_must_stay_in_the_dataset_root(tmp_path: Path) -> None:
    rows = L.features_csv_rows()
    for bad in ("../../../../etc/hostname", "/etc/hostname"):
        edited = [{**r, "chunk_path": bad} if r["feature"] == L.EGOMOTION else r for r in rows]
        path = tmp_path / "features.csv"
        import pandas as pd

        pd.DataFrame(edited).to_csv(path, index=False)
        with pytest.raises(ValueError, match=r"feature 'egomotion' chunk_path: path .* must be relative"):
            L.load_features_csv(str(path))
