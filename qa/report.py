"""The data-QA report: one self-contained HTML page from `qa.qa_results` rows.

GE's own Data Docs load their CSS from CDNs and render unstyled offline; this page has no
external references, so it reads the same on an air-gapped cluster and as a CI artifact.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from collections import defaultdict
from pathlib import Path

import pyarrow as pa

from transforms.ids import inside

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


def _key_text(at: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in at.items())


def failure_text(observed: str | None) -> str:
    """A failed expectation's observed JSON (qa.validate) in words: the offending rows' keys and values."""
    try:
        obs = json.loads(observed or "")
    except json.JSONDecodeError:
        return observed or ""
    if isinstance(obs, dict) and "at" in obs:
        vals, at = obs.get("unexpected") or [], obs.get("at") or []
        if at:
            return "; ".join(f"{_key_text(a)}: {json.dumps(v, default=str)}" for a, v in zip(at, vals, strict=False))
        return f"e.g. {json.dumps(vals, default=str)}"
    return observed or ""


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
            f"<td><code>{e(failure_text(f['observed']))}</code></td></tr>" for f in g["failures"])
        details += (f"<h2>{e(g['table'])} [{e(g['partition'])}]: {g['failed']} failed</h2><table><tr><th>check</th>"
                    f"<th>expectation</th><th>column</th><th>unexpected</th><th>offending rows (keys: value)</th></tr>"
                    f"{items}</table>")
    if not groups:
        details = "<p>No validations recorded yet: materialize assets (their checks run with them).</p>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_CSS}</style></head>"
            f"<body>{head}<p><a href='index.html'>all past validations</a></p>{summary}{details}{_passed_html(results)}"
            "</body></html>")


def _passed_html(results: pa.Table) -> str:
    """Every expectation that held, with what was observed (ranges, values, nulls), folded per table."""
    e = html.escape
    by: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in results.to_pylist():
        if r["success"]:
            by[(r["table_name"], r["partition_key"])].append(r)
    parts = "".join(
        f"<details><summary>{e(t)} [{e(p)}]: {len(rs)} passed</summary><table><tr><th>check</th><th>column</th>"
        "<th>observed</th></tr>" + "".join(f"<tr><td>{e(r['check'])}</td><td>{e(r['column'] or '')}</td>"
                                           f"<td><code>{e(r['observed'] or '')}</code></td></tr>" for r in rs)
        + "</table></details>" for (t, p), rs in sorted(by.items()))
    return f"<h2>Expectations met, with what was observed</h2>{parts}" if parts else ""


def failures_markdown(results: pa.Table, limit: int = 30) -> str:
    """Every failed expectation with its offending rows' keys, as markdown (the report embedded in the UI)."""
    failed = [r for r in results.to_pylist() if not r["success"]]
    if not failed:
        return "none: every expectation held"
    lines = ["| table [partition] | check | rows | offending rows (keys: value) |", "|---|---|---:|---|"]
    lines += [f"| {r['table_name']} [{r['partition_key']}] | {r['check']}{' (blocking)' if r['blocking'] else ''} | "
              f"{r['unexpected_count'] if r['unexpected_count'] is not None else ''} | "
              f"{failure_text(r['observed']).replace('|', '/')[:300]} |" for r in failed[:limit]]
    return "\n".join(lines) + (f"\n\n... and {len(failed) - limit} more in the HTML report" if len(failed) > limit else "")


def write_report(out: Path, run_id: str, results: pa.Table, *, title: str) -> Path:
    """`<out>/<run_id>.html`, `latest.html` and the index of every validation so far, each replaced whole (a
    kill leaves the old page or the new one). Returns the run's page."""
    out.mkdir(parents=True, exist_ok=True)
    page = render_html(results, title=title, run_id=run_id)
    groups = summarize(results)
    entry = {"run_id": run_id, "written_us": int(dt.datetime.now(dt.UTC).timestamp() * 1e6),
             "partitions": len(groups), "expectations": results.num_rows,
             "failed": sum(g["failed"] for g in groups), "blocking": sum(g["failed"] for g in groups if g["blocking"])}
    log = out / "index.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    entries = [x for x in entries if x["run_id"] != run_id] + [entry]
    inside(out, f"{run_id}.html")  # a run id names a file only inside the reports folder
    for name, text in ((f"{run_id}.html", page), ("latest.html", page), ("index.html", render_index(entries)),
                       ("index.jsonl", "".join(json.dumps(x) + "\n" for x in entries))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    return inside(out, f"{run_id}.html")


def render_index(entries: list[dict]) -> str:
    """The index page of past validations, newest first, each linking its report."""
    e = html.escape
    rows = "".join(
        f"<tr><td><a href='{e(x['run_id'])}.html'>{e(x['run_id'])}</a></td>"
        f"<td>{dt.datetime.fromtimestamp(x['written_us'] / 1e6, dt.UTC).strftime('%Y-%m-%d %H:%M:%S')}</td>"
        f"<td>{x['partitions']}</td><td>{x['expectations']}</td><td>{_status(not x['failed'], bool(x['blocking']))} "
        f"{x['failed'] or ''}</td></tr>" for x in sorted(entries, key=lambda x: -x["written_us"]))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>data-QA validations</title><style>{_CSS}</style>"
            f"</head><body><h1>Data-QA validations</h1><p>{len(entries)} reports; the newest is "
            "<a href='latest.html'>latest.html</a>.</p><table><tr><th>run</th><th>written (UTC)</th><th>partitions</th>"
            f"<th>expectations</th><th>failed</th></tr>{rows}</table></body></html>")


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
