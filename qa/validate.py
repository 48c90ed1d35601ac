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
    # a short JSON: the observed value (an aggregate's, or a column's range / values / nulls where all rows
    # passed), or {"unexpected": a few bad values, "at": the keys of their rows (chunk, clip, t0 / run, step)}
    observed: str


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


def _short(value: object, limit: int = 400) -> str:
    """`value` as JSON of at most ~limit characters, still valid JSON when cut (then a string)."""
    text = json.dumps(value, default=_plain)
    return text if len(text) <= limit else json.dumps(text[: limit - 20] + "...")


def _plain(value: object) -> object:
    """numpy scalars (GE hands back np.int64 keys) as their Python values, anything else as text."""
    return value.item() if hasattr(value, "item") else str(value)


def _key_columns(suite: Suite, frame: pd.DataFrame) -> list[str]:
    """The columns that name a row of this view: the chunk and the table's key, where the view has them."""
    return [c for c in dict.fromkeys(("chunk", *suite.table.key)) if c in frame.columns]


def _column_summary(frame: pd.DataFrame, column: str) -> dict[str, object]:
    """What a column held when every row passed: its range, or its few values, and its nulls."""
    s = frame[column]
    nulls = int(s.isna().sum())
    if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
        values = sorted(map(str, s.dropna().unique()))
        return {"values": values[:6] + (["..."] if len(values) > 6 else []), "distinct": len(values), "nulls": nulls}
    return {"min": None if s.dropna().empty else float(s.min()), "max": None if s.dropna().empty else float(s.max()),
            "nulls": nulls}


def _observed(r: dict, check: Check, frame: pd.DataFrame, keys: list[str], success: bool) -> str:
    if "observed_value" in r:
        return _short(r["observed_value"])
    column = check.kwargs.get("column")
    if success and isinstance(column, str) and column in frame.columns:
        return _short(_column_summary(frame, column))
    at = [{k: row.get(k) for k in keys} for row in r.get("partial_unexpected_index_list", []) or [] if isinstance(row, dict)]
    return _short({"unexpected": r.get("partial_unexpected_list", [])[:5], "at": at[:5]})


def _run_view(suite: Suite, view: str, frame: pd.DataFrame, checks: list[Check]) -> list[Outcome]:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    ctx = _context()
    name = f"{suite.table.name}_{view}_{uuid.uuid4().hex[:8]}"  # an ephemeral context keeps every name it saw
    batch = ctx.data_sources.add_pandas(name).add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    expectations = [getattr(gxe, c.expectation)(**c.kwargs) for c in checks]
    gsuite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    keys = _key_columns(suite, frame)
    # the keys of the offending rows come back with each failed column expectation
    fmt = {"result_format": "SUMMARY", "partial_unexpected_count": 5, **({"unexpected_index_column_names": keys}
                                                                         if keys else {})}
    result = gx.ValidationDefinition(name=name, data=batch, suite=gsuite).run(batch_parameters={"dataframe": frame},
                                                                              result_format=fmt)
    # results do not come back in the suite's order: match them by the ids the suite gave
    by_id = {e.id: c for e, c in zip(gsuite.expectations, checks, strict=True)}
    outcomes = []
    for res in result.results:
        check, r = by_id[res.expectation_config.id], res.result or {}
        if res.exception_info and res.exception_info.get("raised_exception"):
            observed = _short({"error": res.exception_info.get("exception_message")})
        else:
            observed = _observed(r, check, frame, keys, bool(res.success))
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
