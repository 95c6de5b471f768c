"""Table-level checks that a column holds what it claims: catalog titles that are markup or boilerplate
rather than product names, and times that were mis-parsed (epoch values read in the wrong unit land on
1970-01-01; a default or constant fill puts every row on one instant).

Markup is Great Expectations' own ``expect_column_values_to_not_match_regex`` with ``mostly``. "One value
shared by a large share of rows" has no built-in expectation in GX 1.x (``expect_column_most_common_value_to_be_in_set``
asks *which* value is most common, not *how common* it is), so this module adds one, with its metric, the way GX
documents custom expectations: :class:`ExpectColumnMostCommonValueShareToBeBetween`
(``expect_column_most_common_value_share_to_be_between``), computed by GX on the column like any other aggregate.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar, Dict, Optional, Tuple, Union

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from great_expectations.compatibility import pydantic  # noqa: E402
from great_expectations.execution_engine import PandasExecutionEngine  # noqa: E402
from great_expectations.expectations.expectation import ColumnAggregateExpectation  # noqa: E402
from great_expectations.expectations.metrics.column_aggregate_metric_provider import (  # noqa: E402
    ColumnAggregateMetricProvider,
    column_aggregate_value,
)

# An HTML/XML tag: ``<span class=...``, ``<br>``, ``</b>``, ``<img src=...`` (a fragment cut before its ``>``
# counts). Plain text such as "size < 5" or "A<B" does not match. HTML entities (``&amp;``) are not markup here:
# they are escaped text, common in real exports, and harmless to the text encoder.
MARKUP_PATTERN = r"<\s*/?\s*[A-Za-z][A-Za-z0-9]*(?:\s+[A-Za-z_:][-A-Za-z0-9_:.]*\s*=|\s*/?\s*>)"


class ColumnMostCommonValueShare(ColumnAggregateMetricProvider):
    """``column.most_common_value_share``: rows holding the most common non-null value / non-null rows
    (0.0 for a column without values)."""

    metric_name = "column.most_common_value_share"

    @column_aggregate_value(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs) -> float:
        counts = column.value_counts(dropna=True, sort=True)
        return float(counts.iloc[0] / counts.sum()) if len(counts) else 0.0


class ExpectColumnMostCommonValueShareToBeBetween(ColumnAggregateExpectation):
    """Expect the share of non-null rows holding the single most common value to lie in
    [``min_value``, ``max_value``]; the result names the most common value(s) (``details``).

    Catches one title repeated over most of a catalog (a scraped HTML fragment, "N/A", a template) and one
    timestamp shared by most rows (a constant fill, a mis-parsed column)."""

    min_value: Optional[float] = pydantic.Field(default=None)
    max_value: Optional[float] = pydantic.Field(default=None)
    strict_min: bool = False
    strict_max: bool = False

    library_metadata: ClassVar[Dict[str, Union[str, list, bool]]] = {
        "maturity": "experimental", "tags": ["cobuy", "column aggregate expectation"], "contributors": ["cobuy"],
        "requirements": [], "has_full_test_suite": False, "manually_reviewed_code": True}
    _library_metadata = library_metadata

    metric_dependencies = ("column.most_common_value_share", "column.most_common_value")
    success_keys = ("min_value", "strict_min", "max_value", "strict_max")
    args_keys = ("column", "min_value", "max_value", "strict_min", "strict_max")

    def _validate(self, metrics: Dict, runtime_configuration: Optional[dict] = None, execution_engine=None):
        out = self._validate_metric_value_between(metric_name="column.most_common_value_share", metrics=metrics,
                                                  runtime_configuration=runtime_configuration,
                                                  execution_engine=execution_engine)
        modes = metrics.get("column.most_common_value") or []
        out["result"]["details"] = {"most_common_value": [str(v)[:200] for v in list(modes)[:3]]}
        return out


@dataclass
class TextAndTimeThresholds:
    """When a column is judged to hold something other than what it claims (each a blocking failure).

    ``max_markup_share``: at most this share of titles may contain an HTML tag.
    ``max_title_share``: at most this share of titled items may share one title.
    ``min_time_in_range_share``: at least this share of parsed timestamps lie between the cleaning rules'
    minimum and now (epoch values read in the wrong unit land in 1970, or far in the future).
    ``max_instant_share``: at most this share of timestamped rows may fall on one instant.
    ``min_rows``: share checks run only from this many values (tiny tables say little)."""

    max_markup_share: float = 0.01
    max_title_share: float = 0.5
    min_time_in_range_share: float = 0.9
    max_instant_share: float = 0.5
    min_rows: int = 20


def title_expectations(items: pd.DataFrame, limits: TextAndTimeThresholds) -> list:
    """Blocking expectations on catalog titles: markup, and one title over a large share of the items."""
    import great_expectations.expectations as gxe

    titled = int(items["title"].notna().sum()) if "title" in items else 0
    if titled < limits.min_rows:
        return []
    return [
        gxe.ExpectColumnValuesToNotMatchRegex(column="title", regex=MARKUP_PATTERN,
                                              mostly=1.0 - limits.max_markup_share),
        ExpectColumnMostCommonValueShareToBeBetween(column="title", max_value=limits.max_title_share),
    ]


def time_expectations(interactions: pd.DataFrame, min_timestamp: pd.Timestamp, max_timestamp: pd.Timestamp,
                      limits: TextAndTimeThresholds) -> list:
    """Blocking expectations that the timestamps as read are plausible: mostly within [min, max], and not
    mostly one instant. None for data without time (basket-only sources)."""
    import great_expectations.expectations as gxe

    timed = int(interactions["timestamp"].notna().sum()) if "timestamp" in interactions else 0
    if timed == 0:
        return []
    exps: list = [gxe.ExpectColumnValuesToBeBetween(column="timestamp", min_value=min_timestamp,
                                                    max_value=max_timestamp, mostly=limits.min_time_in_range_share)]
    if timed >= limits.min_rows:
        exps.append(ExpectColumnMostCommonValueShareToBeBetween(column="timestamp", max_value=limits.max_instant_share))
    return exps


REASONS: Dict[str, str] = {
    "expect_column_values_to_not_match_regex:title": "titles contain HTML markup, not product names",
    "expect_column_most_common_value_share_to_be_between:title":
        "one title is shared by a large share of the items (boilerplate or a scraped fragment, not product names)",
    "expect_column_values_to_be_between:timestamp":
        "most timestamps lie outside the plausible range: the time column was probably mis-parsed (e.g. epoch "
        "seconds read as nanoseconds land on 1970-01-01); set timestamp_unit / timestamp_format on the source",
    "expect_column_most_common_value_share_to_be_between:timestamp":
        "most rows share one single instant: the time column was probably mis-parsed or filled with a constant",
}


def why(expectation: str, column: Optional[str]) -> Optional[str]:
    """What a failed text/time expectation most likely means, for the check's metadata; None if not ours."""
    return REASONS.get(f"{expectation}:{column}")


__all__: Tuple[str, ...] = ("MARKUP_PATTERN", "ExpectColumnMostCommonValueShareToBeBetween", "TextAndTimeThresholds",
                            "title_expectations", "time_expectations", "why")
