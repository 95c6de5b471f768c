"""Great Expectations 1.x: the suites that decide which rows are kept and whether a run may go on.

Two kinds of suite, run on an ephemeral context (no GX project folder), with Data Docs written as HTML to a
folder of our choosing:

* **row-level** suites (``level="row"``) run on the rows *as read* (the readers' canonical tables, before any
  cleaning). Each expectation stands for one quarantine reason (``data_checks.cleaning.REASONS``); its
  unexpected rows (``result_format`` ``COMPLETE``: ``unexpected_index_list``) are what ``cleaning.clean`` sends
  to quarantine. Such a suite fails whenever one row violates one expectation; whether that stops the run is
  the quarantine-rate policy's call.
* **table-level** suites (``level="table"``) judge a table as a whole (row counts, shares, distributions,
  catalog text and time plausibility, see ``data_checks.catalog_text``); a failure blocks on its own
  (:attr:`ValidationReport.success`, the blocking check ``expectation_suites_pass``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from data_checks.catalog_text import TextAndTimeThresholds, time_expectations, title_expectations, why  # noqa: E402

CONTENT_COLUMNS = ["user_id", "item_id", "timestamp", "basket_id", "quantity", "price"]
ROW_RESULT_FORMAT = {"result_format": "COMPLETE", "return_unexpected_index_query": False,
                     "partial_unexpected_count": 20}
_HIDDEN_KWARGS = ("batch_id", "result_format", "catch_exceptions", "meta", "notes", "description")


@dataclass
class ExpectationResult:
    """One expectation's outcome on one table. ``level``: ``"row"`` (its failing rows are quarantined with
    ``reason``) or ``"table"`` (a failure blocks the run)."""

    table: str
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int | None
    unexpected_percent: float | None
    suite: str = ""
    level: str = "table"
    reason: str | None = None
    observed_value: Any = None
    kwargs: str = ""
    meaning: str | None = None

    def label(self) -> str:
        """``expect_x(column=..., ...)``: how a quarantined row's ``detail`` names this expectation."""
        return f"{self.expectation}({self.kwargs})"


@dataclass
class ValidationReport:
    """``success``: every table-level (blocking) expectation passed. Row-level failures are in ``results``
    (with their counts) but decide rows, not the run."""

    success: bool
    results: list[ExpectationResult] = field(default_factory=list)
    docs_index: str | None = None

    def failed(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success]

    def blocking_failures(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success and r.level == "table"]

    def suites(self) -> dict[str, bool]:
        """Each suite's outcome (a suite fails when any of its expectations does)."""
        out: dict[str, bool] = {}
        for r in self.results:
            out[r.suite] = out.get(r.suite, True) and r.success
        return out

    def to_frame(self) -> pd.DataFrame:
        cols = ["suite", "level", "table", "expectation", "column", "success", "unexpected_count",
                "unexpected_percent", "observed_value", "reason"]
        return pd.DataFrame([{c: getattr(r, c) for c in cols} for r in self.results], columns=cols)


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple, set)):
        items = list(value)
        if len(items) > 5:
            return f"[{', '.join(map(str, items[:5]))}, ...] ({len(items)} values)"
        return f"[{', '.join(map(str, items))}]"
    return str(value)


def _condition(value: Any) -> str:
    """A serialised row condition, e.g. ``{'column': {'name': 'basket_id'}, 'is_null': True, ...}``, as text."""
    if isinstance(value, dict) and isinstance(value.get("column"), dict) and "is_null" in value:
        return f"'{value['column'].get('name')} is {'' if value['is_null'] else 'not '}null'"
    return str(value)


def _kwargs_text(kwargs: dict) -> str:
    return ", ".join(f"{k}={_condition(v) if k == 'row_condition' else _short(v)}" for k, v in kwargs.items()
                     if k not in _HIDDEN_KWARGS and v is not None and not (k == "row_condition" and not v))


class GxSession:
    """One ephemeral GX context for one validation: every suite it runs is kept, so the Data Docs built at the
    end (:meth:`build_docs`) show the row-level and the table-level suites of the run together."""

    def __init__(self, docs_dir: str | Path | None = None):
        import great_expectations as gx

        self._gx = gx
        self.ctx = gx.get_context(mode="ephemeral")
        self.ctx.variables.progress_bars = {"globally": False}
        self.docs_dir = Path(docs_dir) if docs_dir is not None else None
        if self.docs_dir is not None:
            self.docs_dir.mkdir(parents=True, exist_ok=True)
            self.ctx.add_data_docs_site(site_name="cobuy", site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(self.docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            })
        self.source = self.ctx.data_sources.add_pandas("canonical")
        self.results: list[ExpectationResult] = []

    def run(self, suite: str, table: str, frame: pd.DataFrame, expectations: Iterable, level: str,
            reasons: list[str | None] | None = None) -> list[tuple[ExpectationResult, np.ndarray | None]]:
        """Validate ``frame`` against ``expectations`` as the suite ``suite``. Row-level suites return, per
        expectation, the positional indices of its unexpected rows (GX's ``result_format`` COMPLETE,
        ``unexpected_index_list``; ``frame`` must have a RangeIndex); table-level ones return None there. ``reasons``: the quarantine
        reason of each expectation (row-level)."""
        exps = list(expectations)
        if not exps:
            return []
        gx = self._gx
        for i, exp in enumerate(exps):  # GX does not return results in the suite's order: each carries its place
            exp.meta = {**(exp.meta or {}), "cobuy_position": i}
        batch = self.source.add_dataframe_asset(suite).add_batch_definition_whole_dataframe(f"{suite}_all")
        result_format = ROW_RESULT_FORMAT if level == "row" else "SUMMARY"
        # Ephemeral pandas assets take their dataframe as a batch parameter at run time.
        if self.docs_dir is None:  # nothing to publish: validate the batch directly, no stored suite or result
            found = self._validate_batch(batch.get_batch(batch_parameters={"dataframe": frame}), suite, exps, level)
        else:  # stored suite and validation definition: the Data Docs are built from the stored results
            gx_suite = self.ctx.suites.add(gx.ExpectationSuite(name=suite, expectations=exps))
            vd = self.ctx.validation_definitions.add(gx.ValidationDefinition(name=suite, data=batch, suite=gx_suite))
            found = vd.run(batch_parameters={"dataframe": frame}, result_format=result_format).results
        ordered = sorted(found, key=lambda r: r.expectation_config.meta["cobuy_position"])
        if len(ordered) != len(exps) or [r.expectation_config.type for r in ordered] != [e.expectation_type
                                                                                         for e in exps]:
            raise RuntimeError(f"suite {suite}: GX returned results that do not match its expectations")
        out = []
        for i, r in enumerate(ordered):
            cfg = r.expectation_config
            if r.exception_info and r.exception_info.get("raised_exception"):
                raise RuntimeError(f"expectation {cfg.type} on {table} could not run: "
                                   f"{r.exception_info.get('exception_message')}")
            summary = r.result or {}
            column = cfg.kwargs.get("column")
            result = ExpectationResult(
                table=table, expectation=cfg.type, column=column, success=bool(r.success),
                unexpected_count=summary.get("unexpected_count"),
                unexpected_percent=summary.get("unexpected_percent"),
                suite=suite, level=level, reason=reasons[i] if reasons else None,
                observed_value=_plain(summary.get("observed_value")), kwargs=_kwargs_text(cfg.kwargs),
                meaning=why(cfg.type, column))
            index = None
            if level == "row":
                if result.success and result.unexpected_count is None:  # passed in the BOOLEAN_ONLY pass
                    result.unexpected_count, result.unexpected_percent = 0, 0.0
                index = np.asarray(summary.get("unexpected_index_list") or [], dtype=np.int64)
                if result.unexpected_count and len(index) != result.unexpected_count:
                    raise RuntimeError(f"{cfg.type} on {table}: GX reported {result.unexpected_count} unexpected rows "
                                       f"but listed {len(index)}")
            self.results.append(result)
            out.append((result, index))
        return out

    def _validate_batch(self, batch, suite: str, exps: list, level: str) -> list:
        """Results of ``exps`` on ``batch`` without storing anything. Row-level: two passes, because GX's
        COMPLETE result costs ~3x BOOLEAN_ONLY per expectation even on a few rows: which expectations fail
        (BOOLEAN_ONLY), then the unexpected rows of those that do (COMPLETE)."""
        gx = self._gx
        if level != "row":
            return batch.validate(gx.ExpectationSuite(name=suite, expectations=exps), result_format="SUMMARY").results
        first = batch.validate(gx.ExpectationSuite(name=suite, expectations=exps), result_format="BOOLEAN_ONLY").results
        failing = [exps[r.expectation_config.meta["cobuy_position"]] for r in first if not r.success]
        if not failing:
            return first
        second = batch.validate(gx.ExpectationSuite(name=f"{suite}_failing", expectations=failing),
                                result_format=ROW_RESULT_FORMAT).results
        redone = {r.expectation_config.meta["cobuy_position"] for r in second}
        return [r for r in first if r.expectation_config.meta["cobuy_position"] not in redone] + second

    def build_docs(self) -> str | None:
        """Write the Data Docs site (all suites run so far); the path of its ``index.html``, or None."""
        if self.docs_dir is None:
            return None
        self.ctx.build_data_docs(site_names=["cobuy"])
        return str(self.docs_dir / "index.html")

    def report(self) -> ValidationReport:
        """Everything run so far; ``success`` counts table-level expectations only."""
        return ValidationReport(all(r.success for r in self.results if r.level == "table"), list(self.results),
                                self.build_docs())


def _plain(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


@dataclass
class TableThresholds(TextAndTimeThresholds):
    """The blocking table-level limits: :class:`catalog_text.TextAndTimeThresholds` plus minimum sizes
    (``min_clean_rows`` clean interactions, ``min_items`` distinct items among them)."""

    min_clean_rows: int = 1
    min_items: int = 2


def table_suites(session: GxSession, raw_interactions: pd.DataFrame, interactions: pd.DataFrame,
                 items: pd.DataFrame, min_timestamp: str = "1990-01-01", max_future_days: float = 1.0,
                 limits: TableThresholds | None = None, now: pd.Timestamp | None = None) -> None:
    """Run the blocking table-level suites: on the interactions as read (rows, time plausibility), on the
    clean interactions (enough rows and items left) and on the catalog (ids, titles)."""
    import great_expectations.expectations as gxe

    limits = limits or TableThresholds()
    now = now or pd.Timestamp.now(tz="UTC").tz_localize(None)
    max_ts = now + pd.Timedelta(days=max_future_days)
    session.run("interactions_as_read", "interactions", raw_interactions.reset_index(drop=True), [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *time_expectations(raw_interactions, pd.Timestamp(min_timestamp), max_ts, limits),
    ], level="table")
    session.run("interactions_clean", "interactions", interactions.reset_index(drop=True), [
        gxe.ExpectTableRowCountToBeBetween(min_value=limits.min_clean_rows),
        gxe.ExpectColumnUniqueValueCountToBeBetween(column="item_id", min_value=limits.min_items),
        *[gxe.ExpectColumnToExist(column=c) for c in ("source_row", *CONTENT_COLUMNS)],
    ], level="table")
    session.run("items_clean", "items", items.reset_index(drop=True), [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="item_id"),
        gxe.ExpectColumnValuesToBeUnique(column="item_id"),
        *title_expectations(items, limits),
    ], level="table")


def validate_tables(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    docs_dir: str | Path | None = None,
    max_quantity: float = 1e5,
    max_price: float = 1e5,
    min_timestamp: str = "1990-01-01",
    raw_interactions: pd.DataFrame | None = None,
    session: GxSession | None = None,
    limits: TableThresholds | None = None,
) -> ValidationReport:
    """The table-level suites (blocking), plus whatever ``session`` already ran (``cleaning.clean``'s
    row-level suites on the rows as read); Data Docs under ``docs_dir`` (or the session's folder).

    ``raw_interactions``: the rows as read (default: ``interactions``). ``max_quantity``/``max_price`` are
    row-level rules (``cleaning.CleaningRules``), accepted here for the callers that pass them."""
    del max_quantity, max_price  # row-level: decided in cleaning.clean
    session = session or GxSession(docs_dir)
    table_suites(session, interactions if raw_interactions is None else raw_interactions, interactions, items,
                 min_timestamp=min_timestamp, limits=limits)
    return session.report()
