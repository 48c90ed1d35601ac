"""data_qa_report: the latest data-QA validation of every table and partition, as one HTML page."""

from pathlib import Path

import dagster as dg
import pyarrow.compute as pc

from dagster_project.resources import LakeResource
from lake import tables as T
from qa.report import render_html, summarize, summary_markdown


@dg.asset(group_name="qa", kinds={"html", "delta"})
def data_qa_report(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Renders `qa.qa_results` (what the asset checks last found) to `<lake>/qa_reports/<run_id>.html`.

    It has no upstream on purpose: a failed blocking check must not stop the report that shows it.
    """
    results = lake.read(T.QA_RESULTS)
    page = render_html(results, title="AV flywheel: data-QA report", run_id=context.run_id)
    out = Path(lake.root).resolve() / "qa_reports"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{context.run_id}.html"
    path.write_text(page)
    (out / "latest.html").write_text(page)
    failed = results.filter(pc.invert(results.column("success")))
    blocking = failed.filter(failed.column("blocking"))
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.path(str(path)), "report_url": dg.MetadataValue.url(path.as_uri()),
        "validations": len(summarize(results)),
        "expectations": results.num_rows, "failed": failed.num_rows, "failed_blocking": blocking.num_rows,
        "summary": dg.MetadataValue.md(summary_markdown(results) if results.num_rows else "*(nothing validated yet)*")})
