"""Validation: clean tables, the quarantine, and the blocking checks that guard training."""

import dagster as dg
import pandas as pd

from data_checks.cleaning import CleaningRules, clean
from data_checks.expectations import validate_tables
from data_checks.readers import RawTables
from orchestration.metadata import frame_preview, markdown_table
from orchestration.resources import ArtifactStore, ValidationPolicy

GROUP = "validation"


class CleaningConfig(dg.Config):
    """Row rules; source-specific ones (cancellations, non-product codes) follow the source."""

    min_timestamp: str = "1990-01-01"
    max_quantity: float = 1e5
    max_price: float = 1e5


CHECKS = [
    dg.AssetCheckSpec("rows_add_up", asset="quarantine", blocking=True,
                      description="Nothing lost: rows in = clean + quarantined."),
    dg.AssetCheckSpec("quarantine_rate_within_policy", asset="validated_interactions", blocking=True,
                      description="Fails when the share of quarantined rows passes the policy's threshold."),
    dg.AssetCheckSpec("expectation_suites_pass", asset="validated_interactions", blocking=True,
                      description="Great Expectations suites on both canonical tables; Data Docs in metadata."),
]


@dg.multi_asset(
    outs={
        "validated_interactions": dg.AssetOut(description="Interactions that passed every cleaning rule."),
        "validated_items": dg.AssetOut(description="The catalog (given, or derived from clean rows)."),
        "quarantine": dg.AssetOut(description="Every rejected row with a machine-readable reason."),
    },
    group_name=GROUP,
    check_specs=CHECKS,
)
def validated_tables(context: dg.AssetExecutionContext, config: CleaningConfig, raw_interactions: pd.DataFrame,
                     raw_items: pd.DataFrame, policy: ValidationPolicy, artifacts: ArtifactStore):
    """Clean rows, quarantine the rest with reasons, then check the result (blocking)."""
    source = raw_interactions.attrs.get("source", "generic")
    rules = CleaningRules.for_source(source)
    rules.min_timestamp, rules.max_quantity, rules.max_price = config.min_timestamp, config.max_quantity, config.max_price
    result = clean(RawTables(raw_interactions, raw_items, source), rules)
    s = result.summary
    reasons = pd.DataFrame([{"table": k.split(":")[0], "reason": k.split(":")[1], "rows": v}
                            for k, v in sorted(s["reasons"].items(), key=lambda kv: -kv[1])])
    context.log.info(f"{s['interactions_clean']:,} clean, {s['interactions_quarantined']:,} quarantined "
                     f"({s['interactions_quarantine_rate']:.2%})")
    yield dg.Output(result.interactions, output_name="validated_interactions", metadata={
        "rows_in": s["interactions_in"], "rows_clean": s["interactions_clean"],
        "rows_quarantined": s["interactions_quarantined"],
        "quarantine_rate": float(s["interactions_quarantine_rate"]),
        "anonymous_rows (basket analysis only)": s["anonymous_rows"],
        "users": int(result.interactions["user_id"].nunique()),
        "items": int(result.interactions["item_id"].nunique()),
        "quarantine_by_reason": dg.MetadataValue.md(markdown_table(reasons)),
        "preview": frame_preview(result.interactions)})
    yield dg.Output(result.items, output_name="validated_items", metadata={
        "rows": len(result.items), "items_with_several_titles": s["items_with_several_titles"],
        "preview": frame_preview(result.items)})
    yield dg.Output(result.quarantine, output_name="quarantine", metadata={
        "rows": len(result.quarantine), "by_reason": dg.MetadataValue.md(markdown_table(reasons)),
        "summary": dg.MetadataValue.json(s), "preview": frame_preview(result.quarantine)})

    n_in, n_clean, n_q = len(raw_interactions), len(result.interactions), s["interactions_quarantined"]
    yield dg.AssetCheckResult(check_name="rows_add_up", asset_key="quarantine", passed=n_in == n_clean + n_q,
                              metadata={"rows_in": n_in, "clean": n_clean, "quarantined": n_q})
    rate = s["interactions_quarantine_rate"]
    yield dg.AssetCheckResult(
        check_name="quarantine_rate_within_policy", asset_key="validated_interactions",
        passed=rate <= policy.max_quarantine_rate,
        metadata={"quarantine_rate": float(rate), "max_quarantine_rate": policy.max_quarantine_rate})
    docs = artifacts.run_dir(context.run, "data_docs")
    report = validate_tables(result.interactions, result.items, docs_dir=docs, max_quantity=config.max_quantity,
                             max_price=config.max_price, min_timestamp=config.min_timestamp)
    yield dg.AssetCheckResult(
        check_name="expectation_suites_pass", asset_key="validated_interactions", passed=report.success,
        metadata={"expectations": len(report.results), "failed": len(report.failed()),
                  "results": dg.MetadataValue.md(markdown_table(report.to_frame())),
                  "data_docs": dg.MetadataValue.path(report.docs_index or ""),
                  "data_docs_url": dg.MetadataValue.url(f"file://{report.docs_index}")})
