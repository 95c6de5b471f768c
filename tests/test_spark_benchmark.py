"""The Spark engine benchmark on the shared datasets (marked ``benchmark``: excluded from ``make test``; it writes
``benchmarks/results/spark-engine.json``). Skips where a dataset, Java or pyspark is missing."""
import json

import pytest

from tests.conftest import DATASETS, need
from benchmarks.spark import OUT, main
from training.spark_counting import spark_unavailable

SOURCES = {"online_retail": DATASETS / "online_retail" / "online_retail.csv.gz",
           "instacart": DATASETS / "instacart" / "order_products__train.parquet"}


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("dataset", ["online_retail", "instacart"])
def test_spark_counts_what_the_local_path_counts(dataset):
    need(SOURCES[dataset])
    reason = spark_unavailable()
    if reason is not None:
        pytest.skip(f"Spark cannot start here: {reason}")
    assert main(["--dataset", dataset]) == 0
    rows = json.loads(OUT.read_text())["datasets"][dataset]["rows"]
    compared = [r for r in rows if r["identical"] is not None]  # scale rows past --spark-max-scale: local only
    assert compared and all(r["identical"] for r in compared), [(r["stage"], r.get("min_support"), r["identical"])
                                                                for r in compared]
