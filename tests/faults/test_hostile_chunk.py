"""One chunk with a different fault in each of seven clips, through the real chunk stages.

Each damaged clip must be quarantined at the index with its own reason, the three healthy clips
must come through with exactly the rows of a clean run, and nothing may be written outside the
lake. Then the same again with each stage as a run of its own (a retry, a backfill): the gate is
the data (`clips.status`), not the run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import damage as D
from tests.faults.conftest import Run, run_chain

# clip position in the chunk -> (damage, the quarantine kind the index must give it)
CASES = {
    0: ("split '../../../../escape_split'", "bad_identifier"),
    1: ("clip id '../../<uuid>'", "bad_identifier"),
    2: ("5 s gap in the egomotion", "egomotion_gap"),
    3: ("timestamps parquet shorter than the video", "frame_mismatch"),
    4: ("timestamps parquet longer than the video", "frame_mismatch"),
    5: ("egomotion column of strings", "bad_egomotion"),
    6: ("listed in clip_index, absent from the zips", "missing_member"),
}


def _damage(root: Path) -> dict[int, str]:
    """Apply CASES; returns the position -> clip id the index will see."""
    clips = D.clips_of(root)
    ids = dict(enumerate(clips))
    D.set_split(root, clips[0], "../../../../escape_split")
    ids[1] = f"../../{clips[1]}"
    D.rename_clip(root, clips[1], ids[1])
    D.egomotion_gap(root, clips[2])
    D.frame_timestamps(root, clips[3], rows=200)
    D.frame_timestamps(root, clips[4], rows=600)
    D.egomotion_column_as_strings(root, clips[5])
    D.remove_clip_files(root, clips[6])
    return ids


def _check(run: Run, clean: Run, ids: dict[int, str], before: set[str], top: Path, allowed: list[Path]) -> None:
    assert run.ok, "a per-clip fault blocked its chunk"
    index_q = {clip: kind for (stage, clip), kind in run.quarantine.items() if stage == "clip_index"}
    # the renamed clip's zip members now climb out of any folder: refused by name, never extracted
    assert index_q == {ids[i]: kind for i, (_, kind) in CASES.items()} | {ids[1].removeprefix("../../"): "unsafe_member"}
    healthy = [ids[i] for i in ids if i not in CASES]
    for counts, clean_counts in ((run.targets, clean.targets), (run.labels, clean.labels),
                                 (run.samples, clean.samples)):
        assert set(counts) == set(healthy)  # no damaged clip reached any later table or shard
        assert all(counts[c] == clean_counts[c] > 0 for c in healthy)  # and the healthy ones lost nothing
    assert D.files_outside(top, allowed) == before  # nothing written outside the lake


@pytest.mark.parametrize("separate", [False, True], ids=["one run", "one run per stage"])
def test_each_bad_clip_is_quarantined_and_the_rest_of_the_chunk_goes_on(fault_copy: Path, tmp_path: Path,
                                                                        clean_run: Run, separate: bool) -> None:
    ids = _damage(fault_copy)
    lake = tmp_path / "a" / "b" / "c" / "lake"  # deep enough that an escape of 4 levels lands in tmp_path
    allowed = [lake, fault_copy]
    before = D.files_outside(tmp_path, allowed)
    run = run_chain(lake, fault_copy, separate=separate)
    _check(run, clean_run, ids, before, tmp_path, allowed)
