"""Validation: clean tables, the quarantine, and the blocking checks that guard training.

Great Expectations decides: the row-level suites run on the rows as read and send rows to quarantine
(``data_checks.cleaning.clean``); the table-level suites block on their own (``expectation_suites_pass``).
The multi-asset is subsettable: a run that selects some of its outputs (e.g. only what ``association_rules``
needs) gets those outputs and the checks of those assets."""

from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from data_checks.cleaning import CleaningRules, clean
from data_checks.readers import RawTables
from orchestration.metadata import frame_preview, frame_table
from orchestration.resources import ArtifactStore, MLflowRegistry, ValidationPolicy

if TYPE_CHECKING:  # Great Expectations takes seconds to import: data_checks.expectations loads where it runs
    from data_checks.expectations import TableThresholds, ValidationReport

GROUP = "validation"


class CleaningConfig(dg.Config):
    """Row rules (source-specific ones, cancellations and non-product codes, follow the source) and the limits
    of the blocking table-level expectations (``data_checks.catalog_text.TextAndTimeThresholds``)."""

    min_timestamp: str = "1990-01-01"
    max_quantity: float = 1e5
    max_price: float = 1e5
    max_markup_share: float = 0.01  # titles containing an HTML tag
    max_title_share: float = 0.5  # items sharing the single most common title
    min_time_in_range_share: float = 0.9  # parsed timestamps between min_timestamp and now
    max_instant_share: float = 0.5  # rows on the single most common timestamp
    publish_data_docs: bool = True  # log the Data Docs to MLflow (the MLflow UI serves them over http)


CHECKS = [
    dg.AssetCheckSpec("rows_add_up", asset="quarantine", blocking=True,
                      description="Nothing lost: rows in = clean + quarantined."),
    dg.AssetCheckSpec("quarantine_rate_within_policy", asset="validated_interactions", blocking=True,
                      description="Fails when the share of quarantined rows passes the policy's threshold."),
    dg.AssetCheckSpec("expectation_suites_pass", asset="validated_interactions", blocking=True,
                      description="Great Expectations' table-level suites (row counts, time plausibility, catalog "
                                  "titles) on both tables; the row-level suites' results and the Data Docs (http, "
                                  "through MLflow) in metadata."),
]


def _limits(config: CleaningConfig) -> "TableThresholds":
    from data_checks.expectations import TableThresholds

    return TableThresholds(max_markup_share=config.max_markup_share, max_title_share=config.max_title_share,
                           min_time_in_range_share=config.min_time_in_range_share,
                           max_instant_share=config.max_instant_share)


def _data_docs_links(context: dg.AssetExecutionContext, report: "ValidationReport", docs: Path, mlflow: MLflowRegistry,
                     publish: bool) -> dict:
    """Links to the Data Docs: the local files, and (``publish``) http URLs of the same pages logged as an MLflow
    run's artifacts, which the MLflow UI (``mlflow.ui_url``) renders. MLflow being down costs the links, not
    the run."""
    # the local file as a path (a browser will not open file:// links from the UI's page); the link is the http one
    links: dict = {"data_docs": dg.MetadataValue.path(report.docs_index or "")}
    if not publish or report.docs_index is None:
        return links
    try:
        run_id, prefix = mlflow.log_folder(docs, "data_docs", run_name=f"data_docs {context.run.run_id[:8]}",
                                           tags={"dagster_run_id": context.run.run_id, "kind": "data_docs"})
    except Exception as err:  # noqa: BLE001 - any MLflow failure: keep the file link, say why there is no URL
        context.log.warning(f"Data Docs not logged to MLflow ({type(err).__name__}: {err}); file link only")
        links["data_docs_url_missing"] = f"{type(err).__name__}: {str(err)[:300]}"
        return links
    links["data_docs_url"] = dg.MetadataValue.url(f"{prefix}/index.html")
    links["data_docs_mlflow_run"] = run_id
    pages = sorted(p.relative_to(docs).as_posix() for p in (docs / "validations").rglob("*.html"))
    links["data_docs_pages"] = dg.MetadataValue.md("\n".join(f"- [{p.split('/')[1]}]({prefix}/{p})" for p in pages))
    return links


@dg.multi_asset(
    outs={
        "validated_interactions": dg.AssetOut(description="Interactions that passed every row-level expectation.",
                                              is_required=False),
        "validated_items": dg.AssetOut(description="The catalog (given, or derived from clean rows).",
                                       is_required=False),
        "quarantine": dg.AssetOut(description="Every rejected row with a machine-readable reason and the "
                                              "expectation it failed.", is_required=False),
    },
    group_name=GROUP,
    check_specs=CHECKS,
    can_subset=True,
)
def validated_tables(context: dg.AssetExecutionContext, config: CleaningConfig, raw_interactions: pd.DataFrame,
                     raw_items: pd.DataFrame, policy: ValidationPolicy, artifacts: ArtifactStore,
                     mlflow: MLflowRegistry):
    """Row-level expectations on the rows as read decide clean vs quarantine; table-level ones block. Yields only
    the selected outputs and the checks of the selected assets."""
    from data_checks.expectations import GxSession, validate_tables

    selected = set(context.selected_output_names)
    checks = {key.name for key in context.selected_asset_check_keys}
    source = raw_interactions.attrs.get("source", "generic")
    rules = CleaningRules.for_source(source)
    rules.min_timestamp, rules.max_quantity, rules.max_price = config.min_timestamp, config.max_quantity, config.max_price
    docs = artifacts.run_dir(context.run, "data_docs")
    session = GxSession(docs)
    result = clean(RawTables(raw_interactions, raw_items, source), rules, gx=session)
    report = validate_tables(result.interactions, result.items, raw_interactions=raw_interactions, session=session,
                             min_timestamp=config.min_timestamp, limits=_limits(config))
    s = result.summary
    reasons = pd.DataFrame([{"table": k.split(":")[0], "reason": k.split(":")[1], "rows": v}
                            for k, v in sorted(s["reasons"].items(), key=lambda kv: -kv[1])])
    context.log.info(f"{s['interactions_clean']:,} clean, {s['interactions_quarantined']:,} quarantined "
                     f"({s['interactions_quarantine_rate']:.2%})")
    if "validated_interactions" in selected:
        yield dg.Output(result.interactions, output_name="validated_interactions", metadata={
            "rows_in": s["interactions_in"], "rows_clean": s["interactions_clean"],
            "rows_quarantined": s["interactions_quarantined"],
            "quarantine_rate": float(s["interactions_quarantine_rate"]),
            "anonymous_rows (basket analysis only)": s["anonymous_rows"],
            "users": int(result.interactions["user_id"].nunique()),
            "items": int(result.interactions["item_id"].nunique()),
            "quarantine_by_reason": frame_table(reasons, 100),
            "preview": frame_preview(result.interactions)})
    if "validated_items" in selected:
        yield dg.Output(result.items, output_name="validated_items", metadata={
            "rows": len(result.items), "items_with_several_titles": s["items_with_several_titles"],
            "preview": frame_preview(result.items)})
    if "quarantine" in selected:
        yield dg.Output(result.quarantine, output_name="quarantine", metadata={
            "rows": len(result.quarantine), "by_reason": frame_table(reasons, 100),
            "summary": dg.MetadataValue.json(s), "preview": frame_preview(result.quarantine)})

    n_in, n_clean, n_q = len(raw_interactions), len(result.interactions), s["interactions_quarantined"]
    if "rows_add_up" in checks:
        yield dg.AssetCheckResult(check_name="rows_add_up", asset_key="quarantine", passed=n_in == n_clean + n_q,
                                  metadata={"rows_in": n_in, "clean": n_clean, "quarantined": n_q})
    rate = s["interactions_quarantine_rate"]
    if "quarantine_rate_within_policy" in checks:
        yield dg.AssetCheckResult(
            check_name="quarantine_rate_within_policy", asset_key="validated_interactions",
            passed=rate <= policy.max_quarantine_rate,
            metadata={"quarantine_rate": float(rate), "max_quarantine_rate": policy.max_quarantine_rate,
                      "quarantine_by_reason": frame_table(reasons, 100)})
    if "expectation_suites_pass" in checks:
        frame = report.to_frame()
        blocking = report.blocking_failures()
        yield dg.AssetCheckResult(
            check_name="expectation_suites_pass", asset_key="validated_interactions", passed=report.success,
            description=("; ".join(f"{r.table}: {r.meaning or r.label()}" for r in blocking) or None),
            metadata={"expectations": len(report.results), "failed_table_level (blocking)": len(blocking),
                      "failed_row_level (rows quarantined)": sum(not r.success and r.level == "row"
                                                                 for r in report.results),
                      "suites": dg.MetadataValue.json(report.suites()),
                      "results": frame_table(frame, 100),
                      **_data_docs_links(context, report, docs, mlflow, config.publish_data_docs)})
