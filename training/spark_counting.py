"""The counting stages on Apache Spark: itemset counts for association rules, co-occurrence counts for item-kNN.

:class:`SparkCounting` is a ``training.counting.Counting`` engine. It ships the (sparse) basket or history matrix
to Spark as ``(row, item)`` entries, counts there, and brings back only the counts the models keep; the rules and
the neighbours are then derived by the same functions as in process, so the models are identical:

* **itemsets** (``frequent_itemsets``): item counts, then either MLlib's ``FPGrowth`` (Han et al., SIGMOD 2000;
  Spark's parallel form is PFP, Li et al., RecSys 2008) for itemsets of any length (``max_len`` None: it has no
  length limit, so with one it mines every length and the longer ones are dropped), or Eclat's prefix-class joins
  (Zaki 2000) as Spark SQL, one self-join of the level's ``(basket, itemset)`` rows per length: two itemsets of a
  basket with the same first k - 1 items join into a (k + 1)-itemset, counted by ``group by``, and only the
  frequent ones' rows are kept for the next level. ``itemsets: auto`` takes FPGrowth without a length limit and the
  joins with one. The support threshold is the basket count :func:`training.itemsets.min_count` gives (FPGrowth is
  handed a fraction whose ``ceil(fraction * baskets)`` is that count), so the itemsets and their counts are those
  of ``training.itemsets.frequent_itemsets``; rules and metrics follow from them in this process
  (``association_rules``, ``pair_rules_from_itemsets``), as mlxtend's order of float operations has it.
* **co-occurrence** (``knn_similarity``): the entries self-joined on the user, grouped by item pair. Unweighted
  histories are counted (``count``: exact integers, like scipy's float32 sums of ones up to 2^24 users per pair);
  weighted ones (TF-IDF) are summed in float32 in ascending user order, the order of scipy's sparse product, so
  the sums equal ``X^T X`` bit for bit. Each block of items' co-occurrence rows then goes through
  ``training.models.itemknn.block_neighbours`` on the executors (``applyInPandas``), the very function the
  in-process path runs, and only each item's top k comes back.

pyspark is imported when an engine first starts a session, never by importing this module's callers
(``orchestration.definitions`` stays light). Local masters (``local[...]``) get small-machine defaults (driver
memory 2g, 8 shuffle partitions, no UI, loopback addresses; the Python workers run this interpreter unless
``PYSPARK_PYTHON`` says otherwise); a cluster master (``spark://host:7077``, ``k8s://https://...``) gets only what
``conf`` says (infra/spark/, docs/spark.md).
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.association import pair_rules_from_itemsets
from training.itemsets import (FrequentItemsets, ItemsetRules, association_rules, binary_csr, check_settings,
                               frequent_itemsets, min_count)
from training.models.itemknn import block_neighbours

ItemsetMethod = Literal["auto", "fpgrowth", "sql"]
# a local master on a small machine: bounded driver memory, few shuffle partitions, nothing listening off loopback
LOCAL_DEFAULTS = {
    "spark.driver.memory": "2g",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.enabled": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.showConsoleProgress": "false",
    # FPGrowth's tree recursion is as deep as a basket is long: Online Retail's overflowed the default stack
    # (StackOverflowError in an executor thread; local executors are the driver JVM's threads)
    "spark.driver.extraJavaOptions": "-Xss32m",
}
COMMON_DEFAULTS = {"spark.sql.execution.arrow.pyspark.enabled": "true"}
BLOCK_BYTES = 64 * 1024 * 1024  # one block of dense co-occurrence rows on an executor (float32)


def spark_unavailable() -> str | None:
    """Why a Spark session cannot start on this machine (None: it can): pyspark missing, or no Java runtime."""
    try:
        import pyspark  # noqa: F401
    except ImportError as e:
        return f"pyspark is not installed ({e}); install the spark extra: pip install -e '.[spark]'"
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and Path(java_home, "bin", "java").exists()) and shutil.which("java") is None:
        return ("no Java runtime (java not on PATH and JAVA_HOME unset); Spark 4 needs Java 17 or 21: "
                "apt-get install openjdk-17-jre-headless")
    return None


@dataclass
class SparkCounting:
    """Count on Spark at ``master`` (``local[2]``, ``spark://host:7077``, ``k8s://https://host:443``) with
    ``conf`` (``spark.*`` settings, over the local defaults for a local master). ``itemsets``: ``fpgrowth``,
    ``sql`` (prefix-class self-joins; honours ``max_len``) or ``auto`` (FPGrowth when there is no ``max_len``).
    Picklable: it holds settings only, and finds or starts its session when it counts."""

    master: str = "local[2]"
    conf: dict[str, str] = field(default_factory=dict)
    itemsets: ItemsetMethod = "auto"
    app_name: str = "cobuy-counting"
    name: ClassVar[str] = "spark"

    def settings(self) -> dict[str, str]:
        """The Spark settings the session starts with."""
        local = self.master.startswith("local")
        base = {**COMMON_DEFAULTS, **(LOCAL_DEFAULTS if local else {})}
        return {**base, **{str(k): str(v) for k, v in self.conf.items()}}

    def session(self) -> Any:
        """The active SparkSession, started with :meth:`settings` when there is none (driver settings such as
        ``spark.driver.memory`` apply only to a session started here)."""
        reason = spark_unavailable()
        if reason is not None:
            raise RuntimeError(f"counting engine 'spark' cannot start: {reason}")
        from pyspark.sql import SparkSession

        if self.master.startswith("local"):  # the Python workers: this interpreter (cobuy and its packages)
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.master(self.master).appName(self.app_name)
        for key, value in self.settings().items():
            builder = builder.config(key, value)
        return builder.getOrCreate()

    def stop(self) -> None:
        """Stop the active session, if any (its JVM goes with it)."""
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()

    # --- itemsets and rules -------------------------------------------------------------------------------------

    def frequent_itemsets(self, baskets: sp.spmatrix, min_support: float,
                          max_len: int | None = None) -> FrequentItemsets:
        """As ``training.itemsets.frequent_itemsets``, counted on Spark."""
        check_settings(min_support, max_len)
        b = binary_csr(baskets)
        n = int(b.shape[0])
        if n == 0 or b.nnz == 0:  # nothing to count: the in-process answer is immediate
            return frequent_itemsets(b, min_support, max_len)
        entries = _entries(self.session(), b, "basket", "item")
        return self.itemsets_of_frame(entries, n, min_support, max_len,
                                      non_empty=int(np.count_nonzero(np.diff(b.indptr))))

    def itemsets_of_frame(self, entries: Any, n_baskets: int, min_support: float, max_len: int | None = None,
                          non_empty: int | None = None) -> FrequentItemsets:
        """Frequent itemsets of baskets given as a Spark DataFrame of distinct ``(basket, item)`` int rows (e.g.
        read from Parquet by the cluster, never through this process); ``n_baskets``: the count supports divide
        by (empty baskets included); ``non_empty``: baskets with an item (counted when None)."""
        from pyspark.sql import functions as F

        check_settings(min_support, max_len)
        threshold = min_count(n_baskets, min_support)
        entries = entries.select(F.col("basket"), F.col("item").alias("i1"))
        method = self.itemsets if self.itemsets != "auto" else ("fpgrowth" if max_len is None else "sql")
        if method == "fpgrowth":
            baskets = non_empty if non_empty is not None else entries.select("basket").distinct().count()
            items, counts = _fpgrowth_levels(entries, baskets, threshold, max_len)
        elif method == "sql":
            items, counts = _join_levels(self.session(), entries, threshold, max_len)
        else:
            raise ValueError(f"itemsets = {self.itemsets!r}: choose auto, fpgrowth or sql")
        return FrequentItemsets(n_baskets, items, counts)

    def pair_rules(self, baskets: sp.spmatrix, min_support: float, min_confidence: float = 0.0) -> pd.DataFrame:
        """As ``training.association.pair_rules``: items and pairs counted on Spark."""
        return pair_rules_from_itemsets(self.frequent_itemsets(baskets, min_support, 2), baskets.shape[1],
                                        min_confidence)

    def itemset_rules(self, baskets: sp.spmatrix, min_support: float, min_confidence: float = 0.0,
                      max_len: int | None = None, max_consequent_len: int | None = None) -> ItemsetRules:
        """As ``training.itemsets.itemset_rules``: itemsets counted on Spark, rules derived from the counts."""
        check_settings(min_support, max_len, min_confidence)
        return association_rules(self.frequent_itemsets(baskets, min_support, max_len), min_confidence,
                                 max_consequent_len)

    # --- co-occurrence and item-kNN -----------------------------------------------------------------------------

    def cooccurrence_frame(self, x: sp.csr_matrix) -> Any:
        """A Spark DataFrame ``(i, j, c)``: for every pair of distinct items held by a common row of ``x`` ((n_rows,
        n_items) float32), ``c`` = sum over those rows of ``x[u, i] * x[u, j]`` in float32, in ascending row order
        (``X^T X`` off the diagonal, as scipy's sparse product sums it); a count when every weight is 1."""
        from pyspark.sql import functions as F

        m = x.tocsr()
        entries = _entries(self.session(), m, "u", "i", weights=m.data.astype(np.float32))
        a, b = entries.alias("a"), entries.alias("b")
        # a sort-merge join, never a broadcast one: the entries are the event log, not a small table
        pairs = a.join(b.hint("merge"), (F.col("a.u") == F.col("b.u")) & (F.col("a.i") != F.col("b.i")))
        if np.all(m.data == 1):
            return pairs.groupBy(F.col("a.i").alias("i"), F.col("b.i").alias("j")).agg(
                F.count(F.lit(1)).cast("float").alias("c"))
        terms = pairs.select(F.col("a.i").alias("i"), F.col("b.i").alias("j"),
                             F.struct(F.col("a.u").alias("u"), (F.col("a.w") * F.col("b.w")).alias("p")).alias("t"))
        return terms.groupBy("i", "j").agg(
            F.expr("aggregate(array_sort(collect_list(t)), CAST(0 AS FLOAT), (acc, e) -> acc + e.p)").alias("c"))

    def cooccurrence(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """(n_items, n_items) float32 CSR of :meth:`cooccurrence_frame` collected (diagonal left out): for checks
        and small catalogues; item-kNN keeps only each item's top k (:meth:`knn_similarity`)."""
        co = self.cooccurrence_frame(x).toPandas()
        n = x.shape[1]
        return sp.csr_matrix((co["c"].to_numpy(np.float32), (co["i"].to_numpy(), co["j"].to_numpy())), shape=(n, n),
                             dtype=np.float32)

    def knn_similarity(self, x: sp.csr_matrix, norm_a: np.ndarray, norm_b: np.ndarray, shrink: float,
                       k: int) -> sp.csr_matrix:
        """As ``training.models.itemknn.knn_similarity``: co-occurrence on Spark, each block of items' rows cut
        to its top ``k`` on the executors by the same ``block_neighbours``; only the neighbours come back."""
        from pyspark.sql import functions as F

        n_items = x.shape[1]
        empty = sp.csr_matrix((n_items, n_items), dtype=np.float32)
        if k <= 0 or x.nnz == 0:
            return empty
        rows = max(1, min(1024, BLOCK_BYTES // (4 * n_items)))
        co = self.cooccurrence_frame(x).withColumn("blk", F.floor(F.col("i") / rows).cast("long"))
        run = _neighbour_block(n_items, rows, np.asarray(norm_a), np.asarray(norm_b), float(shrink), int(k))
        out = co.groupBy("blk").applyInPandas(run, schema="row long, col long, val float").toPandas()
        if out.empty:
            return empty
        return sp.csr_matrix((out["val"].to_numpy(np.float32), (out["row"].to_numpy(), out["col"].to_numpy())),
                             shape=(n_items, n_items), dtype=np.float32)


def _entries(spark: Any, m: sp.csr_matrix, row: str, item: str, weights: np.ndarray | None = None) -> Any:
    """``m``'s nonzero entries as a Spark DataFrame (``row``, ``item``[, ``w`` float32]), through Arrow."""
    frame = pd.DataFrame({row: np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr)),
                          item: m.indices.astype(np.int32)})
    schema = f"{row} int, {item} int"
    if weights is not None:
        frame["w"] = weights
        schema += ", w float"
    return spark.createDataFrame(frame, schema=schema)


def _sorted_level(rows: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n_k, k) int64 itemsets (ascending within a row) in lexicographic order, with their (n_k,) int64 counts."""
    rows = np.sort(np.asarray(rows, dtype=np.int64), axis=1)
    order = np.lexsort(rows.T[::-1]) if len(rows) else np.zeros(0, np.int64)
    return rows[order], np.asarray(counts, dtype=np.int64)[order]


def _join_levels(spark: Any, entries: Any, threshold: int,
                 max_len: int | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frequent itemsets level by level with Spark SQL: item counts, then one prefix-class self-join per length."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    singles = entries.groupBy("i1").count().where(F.col("count") >= threshold).toPandas()
    first, first_counts = _sorted_level(singles[["i1"]].to_numpy(), singles["count"].to_numpy())
    items, counts = [first], [first_counts]
    if (max_len is not None and max_len < 2) or len(first) < 2:
        return items, counts
    frequent = spark.createDataFrame(pd.DataFrame({"i1": first[:, 0].astype(np.int32)}), schema="i1 int")
    level = entries.join(F.broadcast(frequent), "i1", "left_semi")  # (basket, i1) of frequent items only
    held: list[Any] = []
    k = 1
    while (max_len is None or k < max_len) and len(items[-1]) > 1:
        names = [f"i{j}" for j in range(1, k + 2)]
        a, b = level.alias("a"), level.alias("b")
        same_class = [F.col("a.basket") == F.col("b.basket")] + [F.col(f"a.i{j}") == F.col(f"b.i{j}")
                                                                 for j in range(1, k)]
        joined = a.join(b, same_class + [F.col(f"a.i{k}") < F.col(f"b.i{k}")]).select(
            F.col("a.basket").alias("basket"), *[F.col(f"a.i{j}").alias(f"i{j}") for j in range(1, k + 1)],
            F.col(f"b.i{k}").alias(f"i{k + 1}"))
        longer = max_len is None or k + 1 < max_len
        if longer:  # its rows seed the next level: computed once
            joined = joined.persist(StorageLevel.MEMORY_AND_DISK)
            held.append(joined)
        found = joined.groupBy(*names).count().where(F.col("count") >= threshold).toPandas()
        if found.empty:
            break
        level_items, level_counts = _sorted_level(found[names].to_numpy(), found["count"].to_numpy())
        items.append(level_items)
        counts.append(level_counts)
        k += 1
        if longer:
            kept = spark.createDataFrame(found[names].astype(np.int32), schema=", ".join(f"{c} int" for c in names))
            level = joined.join(F.broadcast(kept), names, "left_semi")
    for frame in held:
        frame.unpersist()
    return items, counts


def _fpgrowth_levels(entries: Any, n_nonempty: int, threshold: int,
                     max_len: int | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frequent itemsets with MLlib's FPGrowth, grouped by length (longer than ``max_len`` dropped). FPGrowth keeps
    itemsets in ``ceil(minSupport * baskets)`` baskets, baskets being the non-empty ones it is given; the fraction
    handed to it makes that ``threshold``."""
    from pyspark.ml.fpm import FPGrowth
    from pyspark.sql import functions as F

    if n_nonempty == 0:
        return [np.zeros((0, 1), np.int64)], [np.zeros(0, np.int64)]
    baskets = entries.groupBy("basket").agg(F.collect_list("i1").alias("items"))
    model = FPGrowth(itemsCol="items", minSupport=(threshold - 0.5) / n_nonempty, minConfidence=1.0).fit(baskets)
    found = model.freqItemsets.where(F.col("freq") >= threshold)
    if max_len is not None:
        found = found.where(F.size("items") <= max_len)
    frame = found.select(F.size("items").alias("k"), "items", "freq").toPandas()
    items, counts = [], []
    for k in range(1, int(frame["k"].max()) + 1 if len(frame) else 2):
        at = frame[frame["k"] == k]
        if k > 1 and at.empty:
            break
        rows = np.array(at["items"].tolist(), dtype=np.int64).reshape(len(at), k)
        level_items, level_counts = _sorted_level(rows, at["freq"].to_numpy())
        items.append(level_items)
        counts.append(level_counts)
    return items, counts


def _neighbour_block(n_items: int, rows: int, norm_a: np.ndarray, norm_b: np.ndarray, shrink: float,
                     k: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The ``applyInPandas`` step: one block's ``(i, j, c)`` co-occurrences as the dense (rows, n_items) float32
    block the in-process path builds, cut to each item's top ``k`` by ``block_neighbours``."""

    def run(group: pd.DataFrame) -> pd.DataFrame:
        start = int(group["blk"].iloc[0]) * rows
        stop = min(start + rows, n_items)
        co = np.zeros((stop - start, n_items), np.float32)
        co[group["i"].to_numpy() - start, group["j"].to_numpy()] = group["c"].to_numpy(np.float32)
        r, c, v = block_neighbours(co, start, norm_a, norm_b, shrink, k)
        return pd.DataFrame({"row": r.astype(np.int64), "col": c.astype(np.int64), "val": v.astype(np.float32)})

    return run
