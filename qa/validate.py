"""Run a suite with great-expectations 1.x on one partition of a table; results as plain records."""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from lake.tables import QA_RESULTS
from qa.suites import SUITES, Check, Inputs, Suite, rows_view


@dataclass(frozen=True)
class Outcome:
    """One expectation's verdict."""

    check: str
    expectation: str
    column: str | None
    success: bool
    element_count: int | None
    unexpected_count: int | None
    observed: str  # a short JSON: the observed value or a few unexpected values


@dataclass(frozen=True)
class QAResult:
    table: str
    partition: str
    rows: int
    blocking: bool
    outcomes: tuple[Outcome, ...]
    validated_us: int

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if not o.success)

    def summary(self) -> str:
        if self.success:
            return f"{self.table}[{self.partition}]: {len(self.outcomes)} expectations met on {self.rows} rows"
        bad = "; ".join(f"{o.check} ({o.unexpected_count if o.unexpected_count is not None else '?'} bad, e.g. {o.observed})"
                        for o in self.failed)
        return f"{self.table}[{self.partition}]: {len(self.failed)}/{len(self.outcomes)} expectations failed: {bad}"

    def to_table(self, run_id: str | None = None) -> pa.Table:
        """Rows of `qa.qa_results` for this validation."""
        rows = [{"table_name": self.table, "partition_key": self.partition, "check": o.check, "expectation": o.expectation,
                 "column": o.column, "success": o.success, "element_count": o.element_count,
                 "unexpected_count": o.unexpected_count, "observed": o.observed, "blocking": self.blocking,
                 "rows": self.rows, "validated_us": self.validated_us, "run_id": run_id} for o in self.outcomes]
        return pa.Table.from_pylist(rows, schema=QA_RESULTS.schema)


@functools.cache
def _context():  # noqa: ANN202 (a GE EphemeralDataContext; GE is imported lazily: 5-15 s)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GE logs every datasource it adds at INFO and draws tqdm bars: neither belongs in run logs
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return ctx


def _short(value: object, limit: int = 300) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _run_view(suite: Suite, view: str, frame: pd.DataFrame, checks: list[Check]) -> list[Outcome]:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    ctx = _context()
    name = f"{suite.table.name}_{view}_{uuid.uuid4().hex[:8]}"  # an ephemeral context keeps every name it saw
    batch = ctx.data_sources.add_pandas(name).add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    expectations = [getattr(gxe, c.expectation)(**c.kwargs) for c in checks]
    gsuite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    result = gx.ValidationDefinition(name=name, data=batch, suite=gsuite).run(batch_parameters={"dataframe": frame})
    # results do not come back in the suite's order: match them by the ids the suite gave
    by_id = {e.id: c for e, c in zip(gsuite.expectations, checks, strict=True)}
    outcomes = []
    for res in result.results:
        check, r = by_id[res.expectation_config.id], res.result or {}
        if res.exception_info and res.exception_info.get("raised_exception"):
            observed = _short({"error": res.exception_info.get("exception_message")})
        elif "observed_value" in r:
            observed = _short(r["observed_value"])
        else:
            observed = _short(r.get("partial_unexpected_list", [])[:5])
        outcomes.append(Outcome(check.name, check.expectation, check.kwargs.get("column"),  # type: ignore[arg-type]
                                bool(res.success), r.get("element_count"), r.get("unexpected_count"), observed))
    assert len(outcomes) == len(checks), f"GE returned {len(outcomes)} results for {len(checks)} expectations"
    return outcomes


def validate(table: str, data: pa.Table, *, partition: str, inputs: Inputs | None = None) -> QAResult:
    """Validate `data` (one partition of lake table `table`) against its suite."""
    if table not in SUITES:
        raise KeyError(f"no QA suite for table {table!r}; suites exist for {sorted(SUITES)}")
    suite, inputs = SUITES[table], inputs or Inputs()
    # "table": the columns as stored (for the schema check); "rows" may add derived columns
    views = {"table": rows_view(data.slice(0, 1)),
             "rows": suite.views["rows"](data, inputs) if "rows" in suite.views else rows_view(data)}
    for view in {c.view for c in suite.checks} - {"rows", "table"}:
        views[view] = suite.views[view](data, inputs)
    outcomes: list[Outcome] = []
    for view, frame in views.items():
        checks = [c for c in suite.checks if c.view == view]
        if checks:
            outcomes += _run_view(suite, view, frame, checks)
    order = {c.name: i for i, c in enumerate(suite.checks)}
    outcomes.sort(key=lambda o: order[o.check])
    return QAResult(table, partition, data.num_rows, suite.blocking, tuple(outcomes), time.time_ns() // 1000)
