"""The terminal: help that explains every command and flag, the environment it reads, progress bars fed
by run logs, and `flywheel tables` naming its lake."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pytest

from core.progress import Progress, parse_progress
from flywheel.cli import build_parser, main
from flywheel.settings import ENV_VARS
from flywheel.terminal import Bars, run_streaming
from transforms.twin.writer import TwinConfig, write_twin

REPO = Path(__file__).resolve().parents[1]


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_and_flag_explains_itself_with_its_default() -> None:
    p = build_parser()
    subs = _subparsers(p)
    top = p.format_help()
    assert {"twin", "discover", "materialize", "train", "eval", "closed-loop", "turn", "tables", "demo", "view"} <= set(subs)
    for name, sp in subs.items():
        assert name in top, f"`flywheel --help` does not list {name}"
        assert sp.description and len(sp.description) > 20, f"flywheel {name} has no description"
        for a in sp._actions:
            if a.option_strings == ["-h", "--help"]:
                continue
            assert a.help and ("default" in a.help or a.required), f"flywheel {name} {a.option_strings}: {a.help!r}"
    for var, _, _ in ENV_VARS:
        assert var in top, var


def test_every_environment_variable_the_code_reads_is_documented_in_help() -> None:
    read = set()
    for d in ("flywheel", "dagster_project", "lake", "transforms", "labelers", "engines"):
        for path in (REPO / d).rglob("*.py"):
            read |= set(re.findall(r"[\"'](FLYWHEEL_[A-Z_]+[A-Z])[\"']", path.read_text()))
    listed = " ".join(v for v, _, _ in ENV_VARS)
    twin = {f"FLYWHEEL_TWIN_{k}" for k in ("CHUNKS", "CLIPS", "SEED", "WIDTH", "HEIGHT", "SECONDS")}
    missing = {v for v in read - twin if v not in listed} - {"FLYWHEEL_CRASH_AT"}  # a test-only fault switch
    assert "FLYWHEEL_LAKE" in read and not missing, missing


def test_tables_names_its_lake_and_refuses_a_path_without_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FLYWHEEL_LAKE", str(tmp_path / "nowhere"))
    assert main(["tables"]) == 2
    err = capsys.readouterr().err
    assert str((tmp_path / "nowhere").resolve()) in err and "FLYWHEEL_LAKE" in err


def test_progress_lines_are_throttled_and_parse_back_from_a_dagster_log_line() -> None:
    lines: list[str] = []
    p = Progress(lines.append, "train", 1000, every_s=3600)
    for _ in range(1000):
        p.update()
    assert lines == ["progress train 1/1000", "progress train 1000/1000"]  # the first, then only the last
    dagster = "2026-11-30 21:00:00 +0000 - dagster - INFO - __ASSET_JOB - 1a2b - train_field_agent - " + lines[0]
    assert parse_progress(dagster) == ("train", 1, 1000)
    assert parse_progress("step 12/1200 loss 0.3") is None


def test_a_runs_progress_lines_become_bars_and_the_rest_is_kept(capsys: pytest.CaptureFixture[str]) -> None:
    script = ("import sys\nfor i in range(1, 6): print('INFO - navsim_eval - progress eval ' + f'{i}/5', flush=True)\n"
              "print('done: 5 windows')\nsys.exit(3)")
    bars = Bars()
    rc, tail = run_streaming([sys.executable, "-c", script], bars, echo=False)
    assert rc == 3 and tail == "done: 5 windows\n"
    assert bars.bars["eval"].n == 5 and bars.bars["eval"].total == 5  # type: ignore[attr-defined]
    bars.close()
    assert "agent windows scored" in capsys.readouterr().err


def test_the_twin_reports_a_progress_line_per_chunk(tmp_path: Path) -> None:
    lines: list[str] = []
    write_twin(tmp_path / "twin", TwinConfig(chunks=2, clips_per_chunk=1, seconds=8.0, width=64, height=36),
               log=lines.append)
    assert lines == ["progress twin_chunks 1/2", "progress twin_chunks 2/2"]


def test_the_automation_settings_refuse_a_bad_value_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from flywheel.settings import Settings

    monkeypatch.setenv("FLYWHEEL_BACKFILL_CRON", "*/10 * * * *")
    monkeypatch.setenv("FLYWHEEL_DISCOVERY_INTERVAL_S", "30")
    s = Settings.from_env()
    assert (s.backfill_cron, s.discovery_interval_s) == ("*/10 * * * *", 30)
    monkeypatch.setenv("FLYWHEEL_BACKFILL_CRON", "hourly")
    with pytest.raises(ValueError, match="FLYWHEEL_BACKFILL_CRON='hourly'"):
        Settings.from_env()
    monkeypatch.setenv("FLYWHEEL_BACKFILL_CRON", "0 * * * *")
    monkeypatch.setenv("FLYWHEEL_DISCOVERY_INTERVAL_S", "0")
    with pytest.raises(ValueError, match="FLYWHEEL_DISCOVERY_INTERVAL_S=0"):
        Settings.from_env()
