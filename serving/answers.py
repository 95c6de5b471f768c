"""The answers of a run, where a person looks for them: one folder per run and a stable ``latest`` copy, holding
titled CSV tables and a one-page HTML report.

Two kinds of "related item" are kept apart, because they answer different questions:

* **bought together** (:func:`bought_together`): basket evidence. Pairs found in the same basket at least
  ``min_count`` times, ranked per item by lift, then by the number of baskets: the columns shown are the ranking.
* **also liked** (:func:`also_liked`): taste. The served model's neighbours (``related_items``), learnt from
  customers' whole histories: people who bought one also bought the other, not necessarily together.

Everything here is plain pandas / numpy over tables the pipeline already made; ``orchestration/assets/answers.py``
only gathers them.
"""
from __future__ import annotations

import base64
import html
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cobuy_files.storage import write_bytes, write_parquet, write_text
from training.association import pair_rules


@dataclass(frozen=True)
class Answer:
    """One table of the answers folder: its file stem, the title a person reads, and what it means."""

    name: str
    title: str
    meaning: str


ANSWERS = (
    Answer("bought_together", "Bought together (basket evidence)",
           "Items found in the same basket as the item, at least `min_count` times. Ranked by lift (how many times "
           "more often than chance they share a basket), then by the number of baskets holding both."),
    Answer("also_liked", "Also liked (taste)",
           "Items the served model puts next to the item, learnt from customers' whole histories: people who bought "
           "one also bought the other, not necessarily in the same basket. Ranked by the model's score; "
           "`shared_customers_cosine` is the cosine of the two items' customer sets."),
    Answer("user_recommendations", "What each customer is likely to buy next",
           "Top items per customer from the served model (items they already bought left out), best first."),
    Answer("new_item_neighbours", "New items: their nearest known items by text",
           "Catalog items with no sales yet, placed by the text encoder: the known items with the closest titles "
           "(substitutes). `similarity` is the cosine of the two titles' embeddings."),
    Answer("new_item_partners", "New items: what they will likely be bought with",
           "What a new item's textual twins were bought with, plus a popularity prior (weights chosen on "
           "validation)."),
    Answer("model_metrics", "How well each model predicts held-out purchases",
           "Recall, NDCG, precision, hit rate and catalog coverage at K on the test split, one row per model and K."),
    Answer("data_quality", "Data quality: rows kept and quarantined",
           "Rows read, kept and quarantined by validation, and the reasons rows were set aside."),
)
TITLES = {a.name: a for a in ANSWERS}


def _titles(catalog: pd.DataFrame) -> pd.Series:
    """item_id (str) -> title; empty when the catalog has no titles."""
    if "title" not in catalog or "item_id" not in catalog:
        return pd.Series(dtype="string")
    return catalog.drop_duplicates("item_id").set_index(catalog["item_id"].drop_duplicates().astype(str))["title"]


def bought_together(baskets: sp.csr_matrix, item_ids: np.ndarray, catalog: pd.DataFrame, min_count: int = 3,
                    k: int = 10) -> pd.DataFrame:
    """Per item, up to ``k`` partners that share at least ``min_count`` baskets with it, by lift then baskets.

    ``baskets``: (n_baskets, n_items) CSR, nonzero where a basket holds an item; ``item_ids``: (n_items,) ids of
    its columns. Columns: item_id, item_title, rank, partner_id, partner_title, baskets_together, confidence
    (share of the item's baskets that hold the partner), lift. Only items bought in ``min_count`` baskets or more
    can have partners (a pair cannot be seen more often than either item)."""
    columns = ["item_id", "item_title", "rank", "partner_id", "partner_title", "baskets_together", "confidence",
               "lift"]
    n = baskets.shape[0]
    if n == 0 or min_count < 1:
        return pd.DataFrame(columns=columns)
    rules = pair_rules(baskets, min_support=min_count / n)  # both directions, pair_count >= min_count
    rules = rules[rules["pair_count"] >= min_count]
    rules = rules.sort_values(["antecedent", "lift", "pair_count", "consequent"],
                              ascending=[True, False, False, True], kind="mergesort")
    rules = rules.groupby("antecedent", sort=False).head(k)
    ids = np.asarray(item_ids).astype(str)
    titles = _titles(catalog)
    a, c = ids[rules["antecedent"].to_numpy()], ids[rules["consequent"].to_numpy()]
    table = pd.DataFrame({
        "item_id": a, "item_title": titles.reindex(a).astype("string").values,
        "rank": rules.groupby("antecedent", sort=False).cumcount().to_numpy() + 1,
        "partner_id": c, "partner_title": titles.reindex(c).astype("string").values,
        "baskets_together": rules["pair_count"].to_numpy(np.int64),
        "confidence": rules["confidence"].to_numpy(np.float64).round(4),
        "lift": rules["lift"].to_numpy(np.float64).round(3)})
    return table[columns].reset_index(drop=True)


def also_liked(related: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """``related_items`` (``serving.related.RELATED_COLUMNS``) as the taste table: per item, its first ``k``
    neighbours by the model's rank, with the model, its score and the cosine of the two items' customer sets."""
    columns = ["item_id", "item_title", "rank", "liked_item_id", "liked_title", "score", "shared_customers_cosine",
               "model"]
    if related.empty:
        return pd.DataFrame(columns=columns)
    t = related[related["rank"] <= k].sort_values(["item_id", "rank"])
    return pd.DataFrame({
        "item_id": t["item_id"].astype(str).values, "item_title": t["item_title"].values, "rank": t["rank"].values,
        "liked_item_id": t["related_item_id"].astype(str).values, "liked_title": t["related_title"].values,
        "score": t["score"].astype(np.float64).round(4).values,
        "shared_customers_cosine": t["cosine"].astype(np.float64).round(4).values,
        "model": t["model"].values})[columns]


def titled_recommendations(recommendations: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """The scored ``(user_id, rank, item_id, score)`` table with each item's title, sorted by user then rank."""
    titles = _titles(catalog)
    t = recommendations.sort_values(["user_id", "rank"], kind="mergesort")
    items = t["item_id"].astype(str)
    return pd.DataFrame({"user_id": t["user_id"].astype(str).values, "rank": t["rank"].astype(np.int64).values,
                         "item_id": items.values, "item_title": titles.reindex(items).astype("string").values,
                         "score": t["score"].astype(np.float64).round(4).values})


def new_item_tables(neighbours: pd.DataFrame, partners: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``cold_item_neighbours`` and ``cold_item_partners`` with readable column names and titles first."""
    nb = neighbours.rename(columns={"neighbour_item_id": "known_item_id", "neighbour_title": "known_title",
                                    "score": "similarity"})
    nb = nb[["item_id", "item_title", "rank", "known_item_id", "known_title", "similarity"]].round({"similarity": 4})
    pt = partners.rename(columns={"partner_item_id": "partner_id"})
    pt = pt[["item_id", "item_title", "rank", "partner_id", "partner_title", "score"]].round({"score": 4})
    return nb.reset_index(drop=True), pt.reset_index(drop=True)


def data_quality_table(rows_in: int, rows_clean: int, quarantine: pd.DataFrame) -> pd.DataFrame:
    """One row for the totals and one per (table, reason) of the quarantine (``quarantine``: its rows, with
    ``reason`` and, where present, ``table``)."""
    rows = [{"what": "rows read", "rows": int(rows_in)}, {"what": "rows kept", "rows": int(rows_clean)},
            {"what": "rows quarantined", "rows": int(len(quarantine))}]
    if len(quarantine) and "reason" in quarantine:
        keys = ["table", "reason"] if "table" in quarantine else ["reason"]
        for key, count in quarantine.groupby(keys).size().sort_values(ascending=False).items():
            label = " / ".join(map(str, key if isinstance(key, tuple) else (key,)))
            rows.append({"what": f"quarantined: {label}", "rows": int(count)})
    return pd.DataFrame(rows)


def _html_table(df: pd.DataFrame, n: int) -> str:
    if df.empty:
        return "<p><em>(empty this run)</em></p>"
    shown = df.head(n).to_html(index=False, escape=True, border=0, classes="t", na_rep="",
                               float_format=lambda v: f"{v:.4g}")
    more = f"<p class='more'>first {n} of {len(df):,} rows</p>" if len(df) > n else ""
    return shown + more


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
table.t{border-collapse:collapse;font-size:.85em}table.t td,table.t th{padding:2px 8px;border-bottom:1px solid #eee;
text-align:left}.more,.meaning{color:#666;font-size:.85em}img{max-width:100%}code{background:#f4f4f4}"""


def report_html(run_id: str, tables: dict[str, pd.DataFrame], metrics_png: bytes | None, facts: dict[str, str],
                rows: int = 15) -> str:
    """The one-page report: facts about the run, data quality, the metrics plot, the top bought-together pairs
    with their evidence, the taste neighbours, and new items; ``tables`` by :data:`ANSWERS` name."""
    def section(name: str, df: pd.DataFrame | None = None, n: int = rows) -> str:
        a = TITLES[name]
        df = tables.get(name, pd.DataFrame()) if df is None else df
        return (f"<h2 id='{a.name}'>{html.escape(a.title)}</h2><p class='meaning'>{html.escape(a.meaning)} "
                f"File: <code>{a.name}.csv</code>.</p>{_html_table(df, n)}")

    together = tables.get("bought_together", pd.DataFrame())
    top_pairs = (together[together["rank"] == 1].sort_values(["lift", "baskets_together"], ascending=False)
                 if len(together) else together)
    metrics = tables.get("model_metrics", pd.DataFrame())
    at20 = metrics[metrics["k"] == 20].sort_values("ndcg", ascending=False) if len(metrics) else metrics
    plot = (f"<img alt='metrics at K per model' src='data:image/png;base64,{base64.b64encode(metrics_png).decode()}'>"
            if metrics_png else "")
    facts_html = "".join(f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in facts.items())
    body = [f"<h1>cobuy answers, run <code>{html.escape(run_id)}</code></h1><ul>{facts_html}</ul>",
            section("data_quality", n=50),
            section("model_metrics", at20, n=50).replace("</p>", " Shown: K = 20, best NDCG first.</p>", 1) + plot,
            section("bought_together", top_pairs).replace("</p>", " Shown: each item's strongest partner, the "
                                                                 "strongest pairs first.</p>", 1),
            section("also_liked"), section("new_item_neighbours"), section("new_item_partners"),
            section("user_recommendations", n=20)]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>cobuy answers {html.escape(run_id)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")


def index_markdown(run_id: str, tables: dict[str, pd.DataFrame], facts: dict[str, str],
                   csv_max_rows: int) -> str:
    """``README.md`` of the folder: what each file answers, its title and its size."""
    lines = [f"# cobuy answers, run {run_id}", "", "Open `report.html` for the one-page report.", ""]
    lines += [f"- {k}: {v}" for k, v in facts.items()] + [""]
    for a in ANSWERS:
        if a.name in tables:
            n = len(tables[a.name])
            size = (f"`{a.name}.csv` ({n:,} rows)" if n <= csv_max_rows else
                    f"`{a.name}.csv` (the first {csv_max_rows:,} of {n:,} rows; all in `{a.name}.parquet`)")
            lines += [f"## {a.title}", "", f"{size}. {a.meaning}", ""]
    return "\n".join(lines)


def write_answers(folder: str | Path, run_id: str, tables: dict[str, pd.DataFrame], metrics_png: bytes | None,
                  facts: dict[str, str], csv_max_rows: int = 200_000) -> Path:
    """Write ``folder`` (one run's answers): ``<name>.csv`` per table (a table longer than ``csv_max_rows``: its
    first rows in the CSV and all of it in ``<name>.parquet``), ``metrics.png``, ``report.html`` and
    ``README.md``; each file written atomically. Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        write_text(df.head(csv_max_rows).to_csv(index=False), folder / f"{name}.csv")
        if len(df) > csv_max_rows:
            write_parquet(df, folder / f"{name}.parquet")
    if metrics_png:
        write_bytes(metrics_png, folder / "metrics.png")
    write_text(report_html(run_id, tables, metrics_png, facts), folder / "report.html")
    write_text(index_markdown(run_id, tables, facts, csv_max_rows), folder / "README.md")
    return folder


def publish_latest(run_folder: str | Path, latest: str | Path) -> Path:
    """Make ``latest`` a copy of ``run_folder``, swapped in by renames: a reader sees the previous answers or the
    new ones, and ``latest`` is missing only between two renames."""
    run_folder, latest = Path(run_folder), Path(latest)
    staging = latest.with_name(f".{latest.name}.new-{os.getpid()}")
    old = latest.with_name(f".{latest.name}.old-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(run_folder, staging)
    if latest.exists():
        latest.rename(old)
    staging.rename(latest)
    shutil.rmtree(old, ignore_errors=True)
    return latest
