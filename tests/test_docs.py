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
