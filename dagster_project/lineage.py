"""The lineage view with every asset group open. Dagster's UI opens the global lineage with its groups
collapsed (it remembers a person's choice in the browser); its `expanded` query parameter opens the
groups it names, so `make ui` prints this link and the README gives it."""

from __future__ import annotations

import sys
from urllib.parse import quote

from dagster_project.definitions import defs


def group_names() -> list[str]:
    """Every asset group of the code location, sorted."""
    graph = defs.resolve_asset_graph()
    return sorted({graph.get(k).group_name for k in graph.get_all_asset_keys()} - {None})


def lineage_url(base: str = "http://127.0.0.1:3000") -> str:
    """The global lineage with every group expanded (group ids as the UI writes them: `global@global:NAME`)."""
    ids = ",".join(f"global@global:{g}" for g in group_names())
    return f"{base.rstrip('/')}/asset-groups?expanded={quote(ids, safe='@:,')}"


if __name__ == "__main__":
    print(lineage_url(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:3000"))
