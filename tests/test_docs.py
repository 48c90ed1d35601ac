"""The README stays a front page and every documentation path the code cites exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("core", "lake", "engines", "transforms", "labelers", "qa", "trainers", "evals", "flywheel",
               "dagster_project", "benchmarks", "scripts")


def test_every_docs_path_cited_in_code_exists() -> None:
    cited = {}
    for d in SOURCE_DIRS:
        for path in (REPO / d).rglob("*.py"):
            for m in re.finditer(r"\bdocs/[\w.-]+\.md\b", path.read_text()):
                cited.setdefault(m.group(0), path.relative_to(REPO))
    assert cited, "no module cites docs/: the scan is broken"
    missing = {doc: str(where) for doc, where in cited.items() if not (REPO / doc).is_file()}
    assert not missing, f"cited but absent: {missing}"


def test_readme_is_a_front_page_with_working_links() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) < 12_000, len(readme.encode())
    lines = readme.splitlines()  # it opens with the two commands that set up a fresh machine
    assert lines[2] == "```bash" and lines[3].startswith("make demo") and lines[4].startswith("make test"), lines[:6]
    for doc in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if not target.startswith("http"):
                assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which does not exist"


def _quoted_asset_keys(text: str, *, lineage: bool) -> set[str]:
    """Asset keys the text selects (`--select A,B`, `--assets A`) or, with `lineage`, draws (`a → b`)."""
    keys = set()
    for m in re.finditer(r"--(?:select|assets)[ =]([\w,]+)", text):
        keys |= set(m.group(1).split(","))
    for line in text.splitlines() if lineage else []:
        if "→" in line:
            keys |= {w for w in re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", line)}
    return keys


def test_every_asset_key_quoted_in_the_docs_exists() -> None:
    """Dagster drops an unknown key from a selection without a word: the README and docs must only name real ones."""
    from dagster_project.definitions import defs

    real = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    docs = [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    quoted = {doc.name: _quoted_asset_keys(doc.read_text(), lineage=doc.name == "README.md") for doc in docs}
    assert "train_field_agent" in quoted["README.md"] and "navsim_eval" in quoted["README.md"], quoted["README.md"]
    unknown = {name: sorted(keys - real) for name, keys in quoted.items() if keys - real}
    assert not unknown, f"docs name assets that do not exist: {unknown}"


def test_the_readmes_lineage_link_opens_every_group() -> None:
    from dagster_project.lineage import group_names, lineage_url

    assert len(group_names()) >= 8
    assert lineage_url("http://127.0.0.1:3000") in (REPO / "README.md").read_text()
