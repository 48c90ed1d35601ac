"""data_qa_report: the latest data-QA validation of every table and partition, as one HTML page."""

from pathlib import Path

import dagster as dg
import pyarrow.compute as pc

from dagster_project.resources import LakeResource
from lake import tables as T
from qa.report import failure_text, failures_markdown, summarize, summary_markdown, write_report


@dg.asset(group_name="qa", kinds={"html", "delta"})
def data_qa_report(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Renders `qa.qa_results` (what the asset checks last found) to `<lake>/qa_reports/<run_id>.html`, beside
    `latest.html` and `index.html` (every validation so far); the failures, with their rows' keys, are embedded.

    It has no upstream on purpose: a failed blocking check must not stop the report that shows it.
    """
    results = lake.read(T.QA_RESULTS)
    out = Path(lake.root).resolve() / "qa_reports"
    path = write_report(out, context.run_id, results, title="AV flywheel: data-QA report")
    failed = results.filter(pc.invert(results.column("success")))
    blocking = failed.filter(failed.column("blocking"))
    for r in failed.to_pylist():  # in the run's log too: what failed, and where
        (context.log.error if r["blocking"] else context.log.warning)(
            f"QA failed: {r['table_name']}[{r['partition_key']}] {r['check']}: {failure_text(r['observed'])}")
    # the report embedded (a browser blocks file:// links from the UI): the failures with their rows' keys
    # and the summary per table; the HTML page beside it also lists what every passing expectation observed
    return dg.MaterializeResult(metadata={
        "failures": dg.MetadataValue.md(failures_markdown(results)),
        "summary": dg.MetadataValue.md(summary_markdown(results) if results.num_rows else "*(nothing validated yet)*"),
        "report": dg.MetadataValue.path(str(path)), "index": dg.MetadataValue.path(str(out / "index.html")),
        "validations": len(summarize(results)),
        "expectations": results.num_rows, "failed": failed.num_rows, "failed_blocking": blocking.num_rows})
