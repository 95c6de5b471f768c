"""Great Expectations 1.x suites for the canonical tables, built in code, run on an ephemeral
context (no GE project folder), with Data Docs written as HTML to a folder of our choosing."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

CONTENT_COLUMNS = ["user_id", "item_id", "timestamp", "basket_id", "quantity", "price"]


@dataclass
class ExpectationResult:
    table: str
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int | None
    unexpected_percent: float | None


@dataclass
class ValidationReport:
    success: bool
    results: list[ExpectationResult] = field(default_factory=list)
    docs_index: str | None = None

    def failed(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([r.__dict__ for r in self.results])


def _interaction_expectations(df: pd.DataFrame, catalog_ids: pd.Series, max_quantity: float, max_price: float,
                              min_timestamp: str, max_timestamp: pd.Timestamp) -> list:
    import great_expectations.expectations as gxe

    exps: list = [gxe.ExpectTableColumnsToMatchSet(column_set=list(df.columns), exact_match=True)]
    for col in ["user_id", "item_id", "timestamp", "basket_id", "quantity", "price", "source_row"]:
        exps.append(gxe.ExpectColumnToExist(column=col))
    exps += [
        gxe.ExpectColumnValuesToNotBeNull(column="item_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="quantity"),
        gxe.ExpectColumnValuesToNotBeNull(column="source_row"),
        gxe.ExpectColumnValuesToBeBetween(column="quantity", min_value=0, max_value=max_quantity, strict_min=True),
        gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0, max_value=max_price, strict_min=True),
        gxe.ExpectColumnValuesToBeInSet(column="item_id", value_set=list(catalog_ids)),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=[c for c in df.columns if c not in ("source_row", "source_file")], ignore_row_if="never"),
    ]
    if df["timestamp"].notna().any():
        exps.append(gxe.ExpectColumnValuesToBeBetween(column="timestamp", min_value=pd.Timestamp(min_timestamp),
                                                      max_value=max_timestamp))
    if df["user_id"].isna().all() and df["basket_id"].isna().all():
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column="user_id"))
    return exps


def _item_expectations() -> list:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnToExist(column="item_id"),
        gxe.ExpectColumnToExist(column="title"),
        gxe.ExpectColumnValuesToNotBeNull(column="item_id"),
        gxe.ExpectColumnValuesToBeUnique(column="item_id"),
        gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0, strict_min=True),
    ]


def validate_tables(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    docs_dir: str | Path | None = None,
    max_quantity: float = 1e5,
    max_price: float = 1e5,
    min_timestamp: str = "1990-01-01",
) -> ValidationReport:
    """Run both suites; write Data Docs HTML under ``docs_dir`` when given."""
    import great_expectations as gx

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = {"globally": False}
    if docs_dir is not None:
        Path(docs_dir).mkdir(parents=True, exist_ok=True)
        ctx.add_data_docs_site(site_name="cobuy", site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    source = ctx.data_sources.add_pandas("canonical")
    max_ts = pd.Timestamp.now(tz="UTC").tz_localize(None) + pd.Timedelta(days=1)
    tables = {
        "interactions": (interactions, _interaction_expectations(interactions, items["item_id"], max_quantity,
                                                                 max_price, min_timestamp, max_ts)),
        "items": (items, _item_expectations()),
    }
    definitions, frames = [], {}
    for name, (df, exps) in tables.items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(f"{name}_all")
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"{name}_suite", expectations=exps))
        definitions.append(ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite)))
        frames[name] = df
    results = []
    for vd in definitions:
        # Ephemeral pandas assets take their dataframe as a batch parameter at run time.
        res = vd.run(batch_parameters={"dataframe": frames[vd.name]}, result_format="SUMMARY")
        for r in res.results:
            cfg = r.expectation_config
            results.append(ExpectationResult(
                table=vd.name, expectation=cfg.type, column=cfg.kwargs.get("column"), success=bool(r.success),
                unexpected_count=r.result.get("unexpected_count"), unexpected_percent=r.result.get("unexpected_percent")))
    index = None
    if docs_dir is not None:
        ctx.build_data_docs(site_names=["cobuy"])
        index = str(Path(docs_dir) / "index.html")
    return ValidationReport(all(r.success for r in results), results, index)
