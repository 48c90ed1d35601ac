"""The data-QA report: one self-contained HTML page from `qa.qa_results` rows.

GE's own Data Docs load their CSS from CDNs and render unstyled offline; this page has no
external references, so it reads the same on an air-gapped cluster and as a CI artifact.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict

import pyarrow as pa

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f2f2f2}.ok{color:#17692b;font-weight:600}.bad{color:#b00020;font-weight:600}
.warn{color:#a15c00;font-weight:600}code{font-size:12px;word-break:break-all}
"""


def _status(ok: bool, blocking: bool) -> str:
    if ok:
        return '<span class="ok">passed</span>'
    return '<span class="bad">FAILED (blocking)</span>' if blocking else '<span class="warn">failed (warning)</span>'


def summarize(results: pa.Table) -> list[dict]:
    """One record per validated (table, partition): rows, expectations met / total, failures."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in results.to_pylist():
        groups[(r["table_name"], r["partition_key"])].append(r)
    out = []
    for (table, part), rs in sorted(groups.items()):
        failed = [r for r in rs if not r["success"]]
        out.append({"table": table, "partition": part, "rows": rs[0]["rows"], "expectations": len(rs),
                    "failed": len(failed), "blocking": rs[0]["blocking"], "failures": failed,
                    "validated_us": max(r["validated_us"] for r in rs), "run_id": rs[0]["run_id"]})
    return out


def render_html(results: pa.Table, *, title: str, run_id: str | None = None) -> str:
    """The report page: a summary per table and partition, then every failed expectation."""
    groups = summarize(results)
    e = html.escape
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    failed = [g for g in groups if g["failed"]]
    head = (f"<h1>{e(title)}</h1><p>{len(groups)} table partitions validated, "
            f"{sum(g['expectations'] for g in groups)} expectations, "
            f"<b>{len(failed)}</b> partitions with failures"
            f"{f' ({sum(g['blocking'] for g in failed)} blocking)' if failed else ''}. "
            f"Written {e(now)}{f' by run {e(run_id)}' if run_id else ''}.</p>")
    rows = "".join(
        f"<tr><td>{e(g['table'])}</td><td>{e(g['partition'])}</td><td>{g['rows']:,}</td>"
        f"<td>{g['expectations'] - g['failed']}/{g['expectations']}</td>"
        f"<td>{_status(not g['failed'], g['blocking'])}</td>"
        f"<td>{e(dt.datetime.fromtimestamp(g['validated_us'] / 1e6, dt.UTC).strftime('%Y-%m-%d %H:%M:%S'))}</td>"
        f"<td><code>{e(g['run_id'] or '')}</code></td></tr>" for g in groups)
    summary = ("<h2>Tables</h2><table><tr><th>table</th><th>partition</th><th>rows</th><th>met</th><th>status</th>"
               f"<th>validated (UTC)</th><th>by run</th></tr>{rows}</table>")
    details = ""
    for g in failed:
        items = "".join(
            f"<tr><td>{e(f['check'])}</td><td><code>{e(f['expectation'])}</code></td><td>{e(f['column'] or '')}</td>"
            f"<td>{'' if f['unexpected_count'] is None else f['unexpected_count']}"
            f"{'' if not f['element_count'] else ' of ' + str(f['element_count'])}</td>"
            f"<td><code>{e(f['observed'] or '')}</code></td></tr>" for f in g["failures"])
        details += (f"<h2>{e(g['table'])} [{e(g['partition'])}]: {g['failed']} failed</h2><table><tr><th>check</th>"
                    f"<th>expectation</th><th>column</th><th>unexpected</th><th>observed / examples</th></tr>{items}</table>")
    if not groups:
        details = "<p>No validations recorded yet: materialize assets (their checks run with them).</p>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_CSS}</style></head>"
            f"<body>{head}{summary}{details}</body></html>")


def summary_markdown(results: pa.Table) -> str:
    """The per-table summary as markdown (for Dagster metadata)."""
    lines = ["| table | partition | rows | met | status |", "|---|---|---:|---:|---|"]
    for g in summarize(results):
        status = "passed" if not g["failed"] else ("**FAILED (blocking)**" if g["blocking"] else "failed (warning)")
        lines.append(f"| {g['table']} | {g['partition']} | {g['rows']:,} | {g['expectations'] - g['failed']}/"
                     f"{g['expectations']} | {status} |")
    return "\n".join(lines)


def blocking_failures(results: pa.Table, partitions: list[str]) -> list[str]:
    """Failed blocking expectations of the given partitions, as "table[partition]: check" lines."""
    wanted = set(partitions)
    return sorted({f"{r['table_name']}[{r['partition_key']}]: {r['check']}" for r in results.to_pylist()
                   if r["blocking"] and not r["success"] and r["partition_key"] in wanted})
